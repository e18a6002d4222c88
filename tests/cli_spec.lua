-- Differential test of `ct-lua conntrack` against /usr/sbin/conntrack 1.4.7 (issue 5 §5).
--
-- The cases are in tests/cli/*.cases, one invocation per line in the `ARGS ; OK|BAD` format
-- of conntrack-tools' test suite; the directives each file may carry are documented at the
-- top of every .cases file and in parse_file() below. For each case, both programs run on
-- the same table (the file's fixture, re-created before each run of a case that changes the
-- table), each through `sh -c` with the args as written, and their stdout, stderr and exit
-- status are compared after normalise(), which only touches what legitimately differs
-- between two runs. After a case that changes the table, the table left behind by each
-- program is compared too.
--
-- tests/run gives this file its own network namespace (unshare -rn): the host's table is
-- never read or changed. Environment variables:
--   CLI_SELF_CHECK=1   both sides run /usr/sbin/conntrack (checks the normalisation and
--                      the fixtures: every case must pass)
--   CLI_CASES=a,b      only these case files (names without .cases)
--   CLI_REPORT=PATH    appends one tab-separated line per case: file:line, result,
--                      what differed, args, time taken
--   CLI_DUMP=DIR       writes both programs' raw results of each case to DIR/FILE.LINE

local H = require "helpers"
local ftp = require "helpers.ftp"
local busted = require "busted"
local has_luv, uv = pcall(require, "luv")

local ROOT = (H.must("pwd"):gsub("%s+$", ""))
local SELF_CHECK = os.getenv("CLI_SELF_CHECK") == "1"
local CONNTRACK = H.CONNTRACK
local TMP = (H.must("mktemp -d /tmp/ct-cli.XXXXXX"):gsub("%s+$", ""))
H.must("chmod 755 " .. TMP)   -- the unprivileged user reads -R files from here

-- ct-lua is copied once (it carries its bundled scripts): a rebuild while the suite runs
-- then changes nothing half-way through.
local CT_LUA = ROOT .. "/ct-lua"
if not SELF_CHECK then
  H.run("mkdir -p " .. TMP .. "/bin && cp " .. CT_LUA .. " " .. TMP .. "/bin/ct-lua")
  local _, status = H.run(TMP .. "/bin/ct-lua -v")
  if status == 0 then CT_LUA = TMP .. "/bin/ct-lua" end
end
local PROGRAMS = {
  { name = "conntrack", cmd = CONNTRACK },
  { name = SELF_CHECK and "conntrack (again)" or "ct-lua",
    cmd = SELF_CHECK and CONNTRACK or CT_LUA .. " conntrack" },
}
local RUN_TIMEOUT = 20          -- seconds; a hung program is killed and reported
local CONNLABEL_CONF = "0 blue\n1 green\n5 red\n"

---------------------------------------------------------------------------------------
-- small helpers

local function sleep(ms)
  if has_luv then uv.sleep(ms) else H.run("sleep " .. ms / 1000) end
end

local function now_ms()
  if has_luv then return uv.hrtime() / 1e6 end
  return os.time() * 1000
end

local read_file = H.file_text

--- Runs a shell command; returns its exit status (128+N when killed by signal N).
local function sh(cmd)
  local _, kind, code = os.execute(cmd)
  if kind == "signal" then return 128 + code end
  return code
end

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

local function split_lines(text)
  local t = {}
  for line in (text .. "\n"):gmatch("(.-)\n") do t[#t + 1] = line end
  if t[#t] == "" then t[#t] = nil end
  return t
end

---------------------------------------------------------------------------------------
-- normalisation: only what differs between two runs on the same table

local function normalise_line(l)
  -- the time an event or expectation was read: [1795777568.928259] / [1795775321.12614 ]
  l = l:gsub("^%[%d+%.%d+%s*%]", "[TS]")
  -- the requester's program name, looked up racily in /proc by the listener
  l = l:gsub(" progname=%S*", "")
  -- the countdown timeout: the number after the protocol number, before the first src=
  local head, rest = l:match("^(.-)(src=.*)$")
  if head then
    head = head:gsub("(%a[%w%-]*%s+%d+ )%d+ ", "%1T ", 1)      -- "tcp      6 99 "
    head = head:gsub("%d+( proto=%d+ )$", "T%1")                -- expectations: "296 proto=6 "
    l = head .. rest
  end
  l = l:gsub("(%-[AUDI] %-t )%d+", "%1T")                       -- -o save
  l = l:gsub("delta%-time=%d+", "delta-time=D")
  l = l:gsub("%[start=[^%]]*%]", "[start=S]")
  l = l:gsub("%[stop=[^%]]*%]", "[stop=S]")
  -- -o id (an ICMP id follows code=, and is kept)
  l = l:gsub("(%S*) id=%d+", function(before)
    if before:match("^code=") then return nil end
    return before .. " id=I"
  end)
  l = l:gsub("<timeout>%d+</timeout>", "<timeout>T</timeout>")
  l = l:gsub("<deltatime>%d+</deltatime>", "<deltatime>D</deltatime>")
  l = l:gsub("<id>%d+</id>", "<id>I</id>")
  l = l:gsub("<start>%d+</start>", "<start>S</start>")
  l = l:gsub("<stop>%d+</stop>", "<stop>S</stop>")
  l = l:gsub("<when>.-</when>", "<when>W</when>")
  -- argv[0] in the usage line: /usr/sbin/conntrack vs how ct-lua was started
  l = l:gsub("^Usage: %S+", "Usage: PROG")
  return l
end

local function normalise(text)
  local out = {}
  for i, line in ipairs(split_lines(text)) do out[i] = normalise_line(line) end
  return out
end

---------------------------------------------------------------------------------------
-- case files

-- Directives (`# KEY: VALUE`, exactly one space after the #; other comment lines are free
-- text):
--   # env: NAME...          prepared environments:
--                             traffic       nft makes this namespace track its traffic;
--                                           counters and timestamps on (H.track_traffic)
--                             peer          a peer namespace joined by veth (H.peer)
--                             labels        each program (and the fixture) runs in a mount
--                                           namespace whose /etc has xtables/connlabel.conf
--                             ftp           the ftp helper, a server and two control
--                                           connections; re-creating the fixture flushes
--                                           only the expectations
--                             events        the cases are -E listeners run at the same time
--                                           while the `during` sequence plays
--                             unprivileged  each program runs in a nested user namespace
--   # sysctl: NAME=VALUE    a net.netfilter sysctl for the file (default: acct 0,
--                           timestamp 0, events 1)
--   # nft: COMMAND          one nft command (e.g. `add rule ...`), applied at file start
--   # file NAME: LINE       appends LINE to $T/NAME (an -R file); $T is exported to cases
--   # setup: ARGS           fixture step: conntrack ARGS
--   # setup-sh: CMD         fixture step: a shell command
--   # setup-traffic: PROTO ADDR PORT SPORT [LISTEN]   fixture step: one exchange with the
--                           peer (PROTO tcp|udp), from source port SPORT to ADDR:PORT; the
--                           peer listens on LISTEN (default PORT), for DNAT
--   # setup-ftp: N CMD      fixture step: client N (1: IPv4, 2: IPv6) of the ftp env
--                           sends CMD on its control connection and reads the reply
--   # during[-sh|-traffic|-ftp]: ...   the same steps, run while -E listeners listen
--                           (a block of these after a case starts a new sequence)
--   # deviation: WHY        the next case is a known, intended deviation from 1.4.7
--   # like: ARGS            for the next case: conntrack runs ARGS instead (the 1.4.7
--                           invocation whose result ct-lua's must equal); repeated, the
--                           calls run in turn: stdout and stderr are concatenated, the
--                           status is the last one's
--   # check: K=V ...        for the next case, what is compared instead of everything:
--                           status=N|same  stdout=same|superset|empty|ipv4-first
--                           (conntrack's lines with the IPv4 entries before the IPv6 ones,
--                           each family in its order)  stderr=same|empty
--                           lines=summary (stdout has as many lines as the summary's N)
--                           table=same (the table after the run)
--   # expect-stderr: LINE   (repeatable) for the next case: ct-lua's stderr, exactly
--   # expect-stdout: LINE   (repeatable) for the next case: ct-lua's stdout, exactly
--   # expect-table: +|- LINE  (repeatable) for the next case: ct-lua's table afterwards is
--                           conntrack's with each `- LINE` taken out and each `+ LINE`
--                           added (LINE as table=same prints it: `DUMP: LINE`)
local function parse_file(path, name)
  local file = { name = name, path = path, env = {}, sysctl = {}, nft = {}, files = {},
                 setup = {}, cases = {} }
  local pending = {}
  local during, during_open = {}, false
  local lineno = 0
  for line in io.lines(path) do
    lineno = lineno + 1
    if line:match("^%s*#") then
      -- a directive is `# key: value` with one space after the #; indented comment
      -- lines (documentation) are never directives
      local key, value = line:match("^# ([%w%-]+):%s?(.*)$")
      local fname, fline = line:match("^# file ([%w%._%-]+):%s?(.*)$")
      if fname then
        file.files[fname] = file.files[fname] or {}
        table.insert(file.files[fname], fline)
      elseif key == "env" then
        for word in value:gmatch("%S+") do file.env[word] = true end
      elseif key == "sysctl" then
        local k, v = value:match("^%s*([%w_]+)=(%S+)")
        file.sysctl[#file.sysctl + 1] = { k, v }
      elseif key == "nft" then
        file.nft[#file.nft + 1] = value
      elseif key and (key:match("^setup") or key:match("^during")) then
        local list_name, kind = key:match("^(%a+)%-?(%a*)$")
        local step = { kind = kind == "" and "ct" or kind, arg = trim(value) }
        assert(({ ct = 1, sh = 1, traffic = 1, ftp = 1 })[step.kind],
               path .. ":" .. lineno .. ": unknown directive " .. key)
        if list_name == "setup" then
          file.setup[#file.setup + 1] = step
        else
          if not during_open then during, during_open = {}, true end
          during[#during + 1] = step
        end
      elseif key == "deviation" then
        pending.deviation = value
      elseif key == "like" then
        pending.like = pending.like or {}
        table.insert(pending.like, trim(value))
      elseif key == "expect-stdout" then
        pending.expect_stdout = pending.expect_stdout or {}
        table.insert(pending.expect_stdout, value)
      elseif key == "expect-table" then
        pending.expect_table = pending.expect_table or {}
        table.insert(pending.expect_table, value)
      elseif key == "expect-stderr" then
        pending.expect_stderr = pending.expect_stderr or {}
        table.insert(pending.expect_stderr, value)
      elseif key == "check" then
        pending.check = {}
        for k, v in value:gmatch("(%w+)=(%S+)") do pending.check[k] = v end
      end
    elseif line:match("%S") then
      local args, verdict = line:match("^(.-)%s*;%s*(%u+)%s*$")
      assert(args and (verdict == "OK" or verdict == "BAD"),
             path .. ":" .. lineno .. ": expected `ARGS ; OK|BAD`: " .. line)
      during_open = false
      local case = { file = file, line = lineno, args = trim(args), verdict = verdict,
                     deviation = pending.deviation, like = pending.like,
                     check = pending.check, expect_stderr = pending.expect_stderr,
                     expect_stdout = pending.expect_stdout, expect_table = pending.expect_table,
                     during = during }
      file.cases[#file.cases + 1] = case
      pending = {}
    end
  end
  return file
end

--- Whether a case changes the table (or its counters): the fixture is then re-created
-- before each program's run, and the table each leaves behind is compared.
local MUTATING_SHORT = "[DUFIAR]"
local MUTATING_LONG = { "delete", "update", "flush", "create", "add", "load-file", "zero" }
local function mutates(args)
  for word in args:gmatch("%S+") do
    word = word:gsub("^[\"']", "")
    if word:match("^%-" .. MUTATING_SHORT) or word:match("^%-%a*z") then return true end
    local long = word:match("^%-%-([%w%-]+)")
    if long and #long >= 2 then
      for _, name in ipairs(MUTATING_LONG) do
        if name:sub(1, #long) == long then return true end
      end
    end
  end
  return false
end

---------------------------------------------------------------------------------------
-- environments: wrappers around a shell command, and what a file needs set up

--- Wraps a shell command string for a side ("a", "b", or "root" for fixtures and the
-- table dumps) according to the file's environment.
local function wrapper(file, side)
  return function(cmd)
    if file.env.labels then
      -- conntrack 1.4.7 reads only /etc/xtables/connlabel.conf; the host has none and must
      -- keep none: a private mount namespace with an overlay on /etc adds it
      local dir = TMP .. "/ovl-" .. side
      cmd = "unshare -m sh -c " .. H.quote(
        "mount -t overlay overlay -o lowerdir=/etc,upperdir=" .. dir .. "/upper,workdir=" ..
        dir .. "/work /etc && exec sh -c " .. H.quote(cmd))
    end
    if file.env.unprivileged and side ~= "root" then
      -- a nested user namespace: no CAP_NET_ADMIN over this network namespace
      cmd = "unshare -U sh -c " .. H.quote(cmd)
    end
    return cmd
  end
end

local function prepare_overlays()
  for _, side in ipairs{ "a", "b", "root" } do
    local dir = TMP .. "/ovl-" .. side
    H.must("mkdir -p " .. dir .. "/upper/xtables " .. dir .. "/work")
    H.write_file(dir .. "/upper/xtables/connlabel.conf", CONNLABEL_CONF)
  end
end

--- Runs conntrack ARGS as root for a fixture (in the file's overlay if it has one).
local function root_conntrack(file, args)
  local cmd = wrapper(file, "root")(CONNTRACK .. " " .. args)
  local out, status, err = H.run("cd " .. ROOT .. " && T=" .. TMP .. " sh -c " ..
                                 H.quote(cmd) .. " </dev/null")
  return out, status, err
end

-- the peer namespace, made once and shared by every file that needs traffic
local peer
local function get_peer()
  if not peer then
    peer = H.peer()
    H.must("echo 1 > /proc/sys/net/ipv4/tcp_tw_reuse")   -- fixed source ports, again
  end
  return peer
end

local function wait_until(pred, ms)
  local deadline = now_ms() + (ms or 2000)
  while now_ms() < deadline do
    if pred() then return true end
    sleep(10)
  end
  return pred()
end

--- Sends "ping" from source port sport to addr:port over UDP; returns the answer or nil.
local function udp_exchange(addr, port, sport)
  local v6 = addr:find(":") ~= nil
  local udp = uv.new_udp(v6 and "inet6" or "inet")
  assert(udp:bind(v6 and "::" or "0.0.0.0", sport, { reuseaddr = true }))
  local answer
  udp:recv_start(function(_, data)
    if data then
      answer = data
      udp:recv_stop()
    end
  end)
  udp:send("ping\n", addr, port, function() end)
  local timer = uv.new_timer()
  uv.update_time()   -- the loop's clock is cached since its last run, maybe long ago
  timer:start(3000, 0, function() end)
  while not answer and timer:is_active() do uv.run("once") end
  timer:close()
  udp:close()
  uv.run("nowait")
  return answer
end

--- One request and answer with the peer, from a fixed source port, so that a re-created
-- fixture has the same tuples.
local function traffic(arg)
  local proto, addr, port, sport, listen = arg:match("^(%a+)%s+(%S+)%s+(%d+)%s+(%d+)%s*(%d*)$")
  assert(proto == "tcp" or proto == "udp", "setup-traffic: bad step: " .. arg)
  listen = listen ~= "" and listen or port
  local p = get_peer()
  local server = proto == "tcp"
    and "socat -T3 TCP6-LISTEN:" .. listen .. ",reuseaddr,ipv6only=0 SYSTEM:'read l; echo pong'"
    or "socat -T3 UDP6-RECVFROM:" .. listen .. ",reuseaddr,ipv6only=0 SYSTEM:'read l; echo pong'"
  local pid = p:spawn(server)
  local ss = "nsenter -t " .. p.pid .. " -n ss -Hln" .. (proto == "tcp" and "t" or "u") ..
             " 'sport = :" .. listen .. "'"
  assert(wait_until(function() return H.run(ss) ~= "" end), "peer server did not listen")
  local out, status, err
  if proto == "udp" and has_luv then
    -- in-process: socat's UDP client always waits its -t timeout (0.5 s) after EOF
    out = udp_exchange(addr, tonumber(port), tonumber(sport)) or ""
    status, err = out ~= "" and 0 or 1, "no answer"
  else
    local target = addr:find(":") and ("[" .. addr .. "]") or addr
    out, status, err = H.run("echo ping | socat -T3 - " .. (proto == "tcp" and "TCP" or "UDP") ..
                             ":" .. target .. ":" .. port .. ",sourceport=" .. sport ..
                             ",reuseaddr")
  end
  H.run("kill " .. pid .. " 2>/dev/null")
  assert(status == 0 and out:match("pong"),
         ("setup-traffic %s: no answer (%d): %s"):format(arg, status, err))
end

-- the ftp environment (tests/helpers/ftp.lua), while a file that needs it runs
local ftp_env

local function ftp_send(arg)
  local n, cmd = arg:match("^(%d)%s+(.+)$")
  assert(ftp_env and n, "setup-ftp: needs env ftp and `N COMMAND`, got " .. arg)
  ftp_env:send(tonumber(n), cmd)
end

--- Runs fixture or sequence steps; consecutive conntrack steps of a fixture go through one
-- -R file (except expectation commands, which -R does not take).
local function run_steps(file, steps, one_by_one, flush_first)
  -- conntrack 1.4.7 -R crashes at exit after two lines that use labels: no batch there
  one_by_one = one_by_one or file.env.labels
  local batch = {}
  if flush_first then
    if one_by_one then
      root_conntrack(file, "-F")
    else
      batch[1] = "-F"   -- in the same -R file: one process fewer per re-creation
    end
  end
  local function flush_batch()
    if #batch == 0 then return end
    local path = TMP .. "/fixture.R"
    H.write_file(path, table.concat(batch, "\n") .. "\n")
    batch = {}
    local _, status, err = root_conntrack(file, "-R " .. path)
    assert(status == 0, "fixture of " .. file.name .. " failed: " .. err)
  end
  for _, step in ipairs(steps) do
    if step.kind == "ct" and not one_by_one and not step.arg:match("expect") then
      batch[#batch + 1] = step.arg
    else
      flush_batch()
      if step.kind == "ct" then
        local _, status, err = root_conntrack(file, step.arg)
        assert(status == 0, "step `" .. step.arg .. "` failed: " .. err)
      elseif step.kind == "sh" then
        local _, status, err = H.run("cd " .. ROOT .. " && export T=" .. TMP .. " && " .. step.arg)
        assert(status == 0, "step `" .. step.arg .. "` failed: " .. err)
      elseif step.kind == "traffic" then
        traffic(step.arg)
      elseif step.kind == "ftp" then
        ftp_send(step.arg)
      end
    end
  end
  flush_batch()
end

--- Re-creates the file's fixture: an empty table (only the expectations in the ftp env,
-- whose masters are live connections), then the setup steps.
local function reset_table(file)
  if file.env.ftp then
    root_conntrack(file, "-F expect")
    run_steps(file, file.setup)
  else
    -- expectations go with their masters
    run_steps(file, file.setup, false, true)
  end
end

local SYSCTL_DEFAULTS = { nf_conntrack_acct = 0, nf_conntrack_timestamp = 0,
                          nf_conntrack_events = 1 }

local function setup_file(file)
  H.must("nft flush ruleset")
  for k, v in pairs(SYSCTL_DEFAULTS) do H.sysctl(k, v) end
  if file.env.labels then prepare_overlays() end
  if file.env.traffic then H.track_traffic() end
  if file.env.peer then get_peer() end
  if #file.nft > 0 then H.nft(table.concat(file.nft, "\n")) end
  for _, kv in ipairs(file.sysctl) do H.sysctl(kv[1], kv[2]) end
  for name, lines in pairs(file.files) do
    H.write_file(TMP .. "/" .. name, table.concat(lines, "\n") .. "\n")
  end
  if file.env.ftp then ftp_env = ftp.start(TMP .. "/ftp") end
  reset_table(file)
end

local function teardown_file(file)
  if file.env.ftp then
    ftp_env:stop()
    ftp_env = nil
  end
end

---------------------------------------------------------------------------------------
-- running one program

local run_count = 0

--- Runs PROG ARGS through sh -c in the file's environment; returns
-- { stdout =, stderr =, status = }.
local function run_program(file, side, prog, args)
  run_count = run_count + 1
  local out, err = TMP .. "/out." .. run_count, TMP .. "/err." .. run_count
  local cmd = wrapper(file, side)(prog .. " " .. args)
  local status = sh("cd " .. ROOT .. " && T=" .. TMP .. " timeout -k 2 " .. RUN_TIMEOUT ..
                    " sh -c " .. H.quote(cmd) .. " </dev/null >" .. out .. " 2>" .. err)
  local r = { stdout = read_file(out) or "", stderr = read_file(err) or "", status = status }
  os.remove(out)
  os.remove(err)
  return r
end

-- A line of a table compared after a case (and of an expect-table directive), normalised
-- also in its reference count: an expectation deleted by the run lets go of its master
-- after an RCU grace period, which a dump right after it may or may not see.
local function table_line(l)
  return (l:gsub("use=%d+", "use=U"))
end

--- The table as /usr/sbin/conntrack sees it (sorted, normalised), for comparing what two
-- runs left behind.
local function table_state(file)
  local parts = {}
  -- (save shows the status bits that extended does not, e.g. a NAT set up by the kernel)
  local dumps = { "-L -o extended" .. (file.env.labels and ",labels" or ""), "-L -o save" }
  if file.env.ftp then   -- elsewhere there are no expectations (no helper)
    dumps[3], dumps[4] = "-L expect", "-L expect -f ipv6"
  end
  for _, args in ipairs(dumps) do
    local out = root_conntrack(file, args)
    local lines = normalise(out)
    for i, l in ipairs(lines) do lines[i] = table_line(l) end
    table.sort(lines)
    for _, l in ipairs(lines) do parts[#parts + 1] = args .. ": " .. l end
  end
  -- no conntrack output shows the TCP window-tracking flags; the library reads the ones
  -- a command writes (the others follow the packets of live connections)
  local flags, h = {}, H.open()
  local function written(set)
    local names = {}
    for _, name in ipairs{ "BE_LIBERAL", "CLOSE_INIT", "SACK_PERM" } do
      if set[name] then names[#names + 1] = name end
    end
    return table.concat(names, ",")
  end
  for f in h:dump{ proto = "tcp" } do
    flags[#flags + 1] = ("tcp_flags: %s %s %s %s %s | %s"):format(f.src, f.dst, f.sport, f.dport,
      written(f.tcp_flags), written(f.reply_tcp_flags))
  end
  h:close()
  table.sort(flags)
  table.move(flags, 1, #flags, #parts + 1, parts)
  return table.concat(parts, "\n")
end

--- Runs both programs' -E ARGS at the same time, plays the case's sequence, stops both with
-- SIGINT once their output is quiet; returns both results.
local function run_listeners(file, case)
  local base = H.subscribed_sockets()
  local started = {}
  for i, p in ipairs(PROGRAMS) do
    run_count = run_count + 1
    local s = { out = TMP .. "/out." .. run_count, err = TMP .. "/err." .. run_count,
                pidf = TMP .. "/pid." .. run_count, rcf = TMP .. "/rc." .. run_count }
    local side = i == 1 and "a" or "b"
    local cmd = wrapper(file, side)("exec " .. p.cmd .. " " .. case.args)
    -- a background job of a non-interactive shell ignores SIGINT: env restores it. pid
    -- and status files are renamed into place, so a reader never sees them half-written.
    H.must("cd " .. ROOT .. " && (T=" .. TMP .. " env --default-signal=INT sh -c " ..
           H.quote(cmd) .. " </dev/null >" .. s.out .. " 2>" .. s.err .. " & echo $! >" ..
           s.pidf .. ".tmp; mv " .. s.pidf .. ".tmp " .. s.pidf .. "; wait $!; echo $? >" ..
           s.rcf .. ".tmp; mv " .. s.rcf .. ".tmp " .. s.rcf .. ") >/dev/null 2>&1 &")
    started[i] = s
  end
  local function exited(s) return read_file(s.rcf) ~= nil end
  for _, s in ipairs(started) do
    wait_until(function() return read_file(s.pidf) ~= nil end, 2000)
    s.pid = trim(read_file(s.pidf) or "")
  end
  -- subscribed (or already gone, after an error)
  wait_until(function()
    local gone = 0
    for _, s in ipairs(started) do if exited(s) then gone = gone + 1 end end
    return H.subscribed_sockets() >= base + #started - gone
  end, 1500)
  run_steps(file, case.during, true)   -- each change by its own process (requester)
  -- until both outputs are quiet for 150 ms and have as many lines (or are quiet for 1 s:
  -- they differ), so that a listener slower to be scheduled is not stopped early
  local sizes, quiet = "", 0
  local deadline = now_ms() + 4000
  while now_ms() < deadline do
    sleep(50)
    local s, lines = "", {}
    for i, st in ipairs(started) do
      local text = read_file(st.out) or ""
      s = s .. #text .. ","
      lines[i] = select(2, text:gsub("\n", ""))
    end
    if s == sizes then quiet = quiet + 1 else quiet, sizes = 0, s end
    if (quiet >= 3 and lines[1] == lines[2]) or quiet >= 20 then break end
  end
  local results = {}
  for i, s in ipairs(started) do
    if not exited(s) and s.pid ~= "" then H.run("kill -INT " .. s.pid) end
    if not wait_until(function() return exited(s) end, 3000) then
      H.run("kill -KILL " .. s.pid)
      wait_until(function() return exited(s) end, 1000)
    end
    results[i] = { stdout = read_file(s.out) or "", stderr = read_file(s.err) or "",
                   status = tonumber(trim(read_file(s.rcf) or "")) or -1 }
    for _, f in pairs{ s.out, s.err, s.pidf, s.rcf } do os.remove(f) end
  end
  return results[1], results[2]
end

---------------------------------------------------------------------------------------
-- comparing

local MAX_DIFF_LINES = 3

--- A short description of how two normalised texts differ, or nil.
local function diff(what, a_lines, b_lines, a_name, b_name)
  local msgs = {}
  local n = math.max(#a_lines, #b_lines)
  for i = 1, n do
    if a_lines[i] ~= b_lines[i] then
      if #msgs >= MAX_DIFF_LINES then
        msgs[#msgs + 1] = "  ..."
        break
      end
      msgs[#msgs + 1] = ("  %s line %d:\n    %-9s %s\n    %-9s %s"):format(what, i,
        a_name .. ":", a_lines[i] and ("%q"):format(a_lines[i]) or "(none)",
        b_name .. ":", b_lines[i] and ("%q"):format(b_lines[i]) or "(none)")
    end
  end
  if #msgs == 0 then return nil end
  if #a_lines ~= #b_lines then
    table.insert(msgs, 1, ("  %s: %d lines vs %d"):format(what, #a_lines, #b_lines))
  end
  return table.concat(msgs, "\n")
end

local function verdict_of(status) return status == 0 and "OK" or "BAD" end

--- The listing lines with the IPv4 entries first, then the IPv6 ones, each in their order
-- (the family is read from the line: -o extended's first word, -o xml's layer3 element,
-- else the first address).
local function ipv4_first(lines)
  local v4, v6 = {}, {}
  for _, line in ipairs(lines) do
    local family = line:match("^(ipv[46]) ") or line:match('<layer3 [^>]*protoname="(ipv[46])"')
    local v6_line = family == "ipv6" or
                    (not family and (line:match("src=(%S+)") or ""):find(":", 1, true))
    table.insert(v6_line and v6 or v4, line)
  end
  table.move(v6, 1, #v6, #v4 + 1, v4)
  return v4
end

local function summary_count(stderr)
  for line in stderr:gmatch("[^\n]+") do
    local n = line:match("(%d+) flow entries have been") or
              line:match("(%d+) expectations have been")
    if n then return tonumber(n) end
  end
end

--- Compares results a (conntrack) and b (ct-lua) of a case; returns a list of problems and
-- the kinds of difference ({ status = true, stdout = true, ... }).
local function compare(case, a, b)
  local problems, kinds = {}, {}
  local an, bn = PROGRAMS[1].name, PROGRAMS[2].name
  local function add(kind, msg)
    problems[#problems + 1] = msg
    kinds[kind] = true
  end
  local check = case.check
  local deviation = case.deviation and not SELF_CHECK
  if deviation and not check then
    check = case.like and { status = "same", stdout = "same", stderr = "same" } or {}
  end
  if SELF_CHECK or not deviation then
    check = { status = "same", stdout = "same", stderr = "same", table = "same" }
    if not case.deviation and verdict_of(a.status) ~= case.verdict then
      add("verdict", ("  case verdict %s, but %s exited %d: %q"):format(case.verdict, an,
        a.status, (a.stderr:gsub("\n$", ""):sub(1, 240))))
    end
  end
  if deviation and verdict_of(b.status) ~= case.verdict then
    add("verdict", ("  deviation: case verdict %s for %s, but it exited %d"):format(
      case.verdict, bn, b.status))
  end
  if check.status == "same" and a.status ~= b.status then
    add("status", ("  exit status: %s %d, %s %d"):format(an, a.status, bn, b.status))
  elseif check.status and check.status ~= "same" and tonumber(check.status) ~= b.status then
    add("status", ("  exit status: %s %d, expected %s"):format(bn, b.status, check.status))
  end
  if check.stderr == "same" then
    local d = diff("stderr", normalise(a.stderr), normalise(b.stderr), an, bn)
    if d then add("stderr", d) end
  elseif check.stderr == "empty" and b.stderr ~= "" then
    add("stderr", ("  stderr: %s printed %q"):format(bn, b.stderr:sub(1, 200)))
  end
  if deviation and case.expect_stdout then
    local d = diff("stdout", case.expect_stdout, normalise(b.stdout), "expected", bn)
    if d then add("stdout", d) end
  end
  if deviation and case.expect_stderr then
    local d = diff("stderr", case.expect_stderr, normalise(b.stderr), "expected", bn)
    if d then add("stderr", d) end
  end
  local a_out, b_out = normalise(a.stdout), normalise(b.stdout)
  if check.stdout == "same" or check.stdout == "ipv4-first" then
    local d = diff("stdout", check.stdout == "same" and a_out or ipv4_first(a_out), b_out, an, bn)
    if d then add("stdout", d) end
  elseif check.stdout == "superset" then
    local have = {}
    for _, l in ipairs(b_out) do have[l] = (have[l] or 0) + 1 end
    for _, l in ipairs(a_out) do
      if not have[l] or have[l] == 0 then
        add("stdout", ("  stdout: %s lacks %s's line %q"):format(bn, an, l))
        break
      end
      have[l] = have[l] - 1
    end
  elseif check.stdout == "empty" and b.stdout ~= "" then
    add("stdout", ("  stdout: %s printed %q"):format(bn, b.stdout:sub(1, 200)))
  end
  if check.lines == "summary" then
    local n = summary_count(b.stderr)
    if n ~= #b_out then
      add("stdout", ("  %s printed %d entries, its summary says %s"):format(bn, #b_out,
                                                                           tostring(n)))
    end
  end
  if check.table == "same" and a.table and b.table and a.table ~= b.table then
    add("table", "  table afterwards:\n" .. (diff("table", split_lines(a.table),
                                                 split_lines(b.table), an, bn) or ""))
  end
  if deviation and case.expect_table then
    -- conntrack's table afterwards, with the `- LINE`s taken out and the `+ LINE`s added
    local want = a.table and split_lines(a.table) or {}
    for _, l in ipairs(case.expect_table) do
      local op, line = l:match("^([+-]) (.*)$")
      line = table_line(line)
      if op == "+" then
        want[#want + 1] = line
      else
        local found
        for j, w in ipairs(want) do
          if w == line then found = j break end
        end
        if found then
          table.remove(want, found)
        else
          add("table", ("  table: %s's table lacks the line to take out: %q"):format(an, l))
        end
      end
    end
    local have = b.table and split_lines(b.table) or {}
    table.sort(want)
    table.sort(have)
    local d = diff("table", want, have, "expected", bn)
    if d then add("table", "  table afterwards:\n" .. d) end
  end
  return problems, kinds
end

---------------------------------------------------------------------------------------
-- the report file

local report = os.getenv("CLI_REPORT")
local function log_result(case, problems, kinds)
  if not report then return end
  local f = assert(io.open(report, "a"))
  local k = {}
  for name in pairs(kinds or {}) do k[#k + 1] = name end
  table.sort(k)
  f:write(("%s:%d\t%s\t%s\t%s\t%dms\n"):format(case.file.name, case.line,
    (#problems == 0) and "pass" or "FAIL", table.concat(k, ","), case.args,
    math.floor(now_ms() - (case.started or now_ms()))))
  if #problems > 0 then
    f:write("\t", (table.concat(problems, "\n"):gsub("\n", "\n\t")), "\n")
  end
  f:close()
end

---------------------------------------------------------------------------------------
-- the tests

local wanted
if os.getenv("CLI_CASES") and os.getenv("CLI_CASES") ~= "" then
  wanted = {}
  for name in os.getenv("CLI_CASES"):gmatch("[^,%s]+") do wanted[name:gsub("%.cases$", "")] = true end
end

local files = {}
for path in H.must("ls " .. ROOT .. "/tests/cli/*.cases"):gmatch("[^\n]+") do
  local name = path:match("([^/]+)%.cases$")
  if not wanted or wanted[name] then files[#files + 1] = parse_file(path, name) end
end

for _, file in ipairs(files) do
  describe("cli", function()
    local dirty = false
    local setup_error

    lazy_setup(function()
      local ok, err = pcall(setup_file, file)
      if not ok then setup_error = tostring(err) end
    end)

    lazy_teardown(function()
      teardown_file(file)
    end)

    for _, case in ipairs(file.cases) do
      local name = ("%s.cases:%d: %s"):format(file.name, case.line, case.args)
      it(name, function()
        case.started = now_ms()
        if setup_error then
          log_result(case, { setup_error }, { setup = true })
          busted.fail("fixture: " .. setup_error, 0)
        end
        local changes = mutates(case.args) or file.env.events or false
        local a, b
        if file.env.events then
          reset_table(file)
          a, b = run_listeners(file, case)
          -- what each listener saw is the result; the table is the same for both
          dirty = true
        else
          local results = {}
          for i, p in ipairs(PROGRAMS) do
            if dirty then
              reset_table(file)
              dirty = false
            end
            if i == 1 and case.like and not SELF_CHECK then
              local r = { stdout = "", stderr = "", status = 0 }
              for _, args in ipairs(case.like) do
                local ri = run_program(file, "a", p.cmd, args)
                r.stdout, r.stderr, r.status = r.stdout .. ri.stdout, r.stderr .. ri.stderr,
                                               ri.status
              end
              results[i] = r
            else
              results[i] = run_program(file, i == 1 and "a" or "b", p.cmd, case.args)
            end
            -- exit status 2 is a parameter problem, found before anything is done: the
            -- table is as it was (each dump walks the kernel's whole hash table, ~40 ms)
            if changes and results[i].status ~= 2 then
              results[i].table = table_state(file)
              dirty = true
            end
          end
          a, b = results[1], results[2]
        end
        local dump = os.getenv("CLI_DUMP")
        if dump then   -- every case's raw results, for reading
          local f = assert(io.open(("%s/%s.%d"):format(dump, file.name, case.line), "w"))
          for i, r in ipairs{ a, b } do
            f:write(("== %s %s\n-- status %d\n-- stdout\n%s-- stderr\n%s"):format(
              PROGRAMS[i].name, case.args, r.status, r.stdout, r.stderr))
          end
          f:close()
        end
        local problems, kinds = compare(case, a, b)
        log_result(case, problems, kinds)
        if #problems > 0 then
          local head = case.deviation and not SELF_CHECK
            and ("deviation (%s):\n"):format(case.deviation) or ""
          busted.fail(head .. table.concat(problems, "\n"), 0)
        end
      end)
    end
  end)
end

teardown(function()
  if peer then peer:close() end
  H.run("rm -rf " .. TMP)
end)
