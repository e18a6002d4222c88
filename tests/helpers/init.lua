--- Test helpers: shell commands, the conntrack oracle, traffic through a
-- peer namespace. Every spec file already runs in its own private network
-- namespace (tests/run), as root of a user namespace.
local H = {}

H.CONNTRACK = "/usr/sbin/conntrack"

function H.quote(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

--- Runs a shell command; returns stdout, the exit status and stderr.
function H.run(cmd)
  local errfile = os.tmpname()
  local p = assert(io.popen(cmd .. " 2>" .. errfile))
  local out = p:read("a")
  local _, _, status = p:close()
  local f = assert(io.open(errfile))
  local err = f:read("a")
  f:close()
  os.remove(errfile)
  return out, status, err
end

--- Runs a shell command that must succeed; returns its stdout.
function H.must(cmd)
  local out, status, err = H.run(cmd)
  if status ~= 0 then
    error(string.format("command failed (%d): %s\n%s", status, cmd, err), 2)
  end
  return out
end

function H.lines(text)
  local t = {}
  for line in text:gmatch("[^\n]+") do t[#t + 1] = line end
  return t
end

--- Runs /usr/sbin/conntrack ARGS; returns its stdout lines, exit status, stderr.
function H.conntrack(args)
  local out, status, err = H.run(H.CONNTRACK .. " " .. args)
  return H.lines(out), status, err
end

--- Opens a handle on this namespace's table, failing the test if it cannot.
function H.open(opts)
  local conntrack = require "conntrack"
  return assert(conntrack.open(opts))
end

--- Empties the table and removes every nft rule of this namespace.
function H.reset()
  H.must("nft flush ruleset")
  H.run(H.CONNTRACK .. " -F")
end

function H.sysctl(name, value)
  local f = assert(io.open("/proc/sys/net/netfilter/" .. name, "w"))
  f:write(tostring(value), "\n")
  f:close()
end

--- Loads an nft ruleset given as text.
function H.nft(ruleset)
  local path = os.tmpname()
  H.write_file(path, ruleset .. "\n")
  local _, status, err = H.run("nft -f " .. path)
  os.remove(path)
  assert(status == 0, err)
end

--- Makes the namespace track traffic (a ct expression registers the
-- conntrack hooks) and turns on counters and timestamps.
function H.track_traffic()
  H.sysctl("nf_conntrack_acct", 1)
  H.sysctl("nf_conntrack_timestamp", 1)
  H.nft([[
table inet ct_lua_test {
  chain out {
    type filter hook output priority 0;
    ct state new counter
  }
  chain inp {
    type filter hook input priority 0;
    ct state new counter
  }
}]])
end

--- Replaces volatile parts of a conntrack line: the countdown timeout,
-- delta-time and the reference count, which change between two reads.
function H.normalize(line)
  line = line:gsub("^(%s*%S+%s+%d+%s+)%d+", "%1T", 1)  -- "tcp      6 99" (default)
  line = line:gsub("^(ipv%d%s+%d+%s+%S+%s+%d+%s+)%d+", "%1T", 1)  -- extended
  line = line:gsub("^(%s*%[%u+%]%s+ipv%d%s+%d+%s+%S+%s+%d+%s+)%d+", "%1T", 1)  -- an event's
  line = line:gsub("delta%-time=%d+", "delta-time=D")
  line = line:gsub("use=%d+", "use=U")
  line = line:gsub("<timeout>%d+</timeout>", "<timeout>T</timeout>")  -- xml
  line = line:gsub("<deltatime>%d+</deltatime>", "<deltatime>D</deltatime>")
  line = line:gsub("<use>%d+</use>", "<use>U</use>")
  return line
end

--- Sorted, normalised lines: tables listed in hash order compare equal.
function H.sorted(lines)
  local t = {}
  for i, line in ipairs(lines) do t[i] = H.normalize(line) end
  table.sort(t)
  return t
end

--- tostring() of every flow a dump returns.
function H.dump_lines(h, filter)
  local t = {}
  for f in h:dump(filter) do t[#t + 1] = tostring(f) end
  return t
end

--- A second network namespace joined to this one by a veth pair:
-- 10.7.0.1 / fd07::1 here, 10.7.0.2 / fd07::2 there.
-- peer:exec(cmd) runs a shell command inside it; peer:close() ends it.
function H.peer()
  local pid = H.must("unshare -n sleep 600 >/dev/null 2>&1 & echo $!"):match("%d+")
  local peer = { pid = pid, addr = "10.7.0.2", addr6 = "fd07::2", local_addr = "10.7.0.1",
                 local_addr6 = "fd07::1" }
  function peer:exec(cmd)
    return H.must("nsenter -t " .. pid .. " -n sh -c " .. H.quote(cmd))
  end
  -- the returned pid is the command itself (sh execs it), so killing it ends the server
  function peer:spawn(cmd)
    return H.must("nsenter -t " .. pid .. " -n sh -c " .. H.quote("exec " .. cmd) ..
                  " >/dev/null 2>&1 & echo $!"):match("%d+")
  end
  function peer:close()
    H.run("kill " .. pid)
  end
  -- the namespace exists once the forked unshare has entered it
  for _ = 1, 100 do
    if H.run("readlink /proc/" .. pid .. "/ns/net"):match("net") and
       H.run("readlink /proc/" .. pid .. "/ns/net") ~= H.run("readlink /proc/self/ns/net") then
      break
    end
    H.run("sleep 0.02")
  end
  H.must("ip link add ctl0 type veth peer name ctl1 netns /proc/" .. pid .. "/ns/net")
  H.must("ip link set lo up && ip addr add 10.7.0.1/24 dev ctl0 && " ..
         "ip addr add fd07::1/64 dev ctl0 nodad && ip link set ctl0 up")
  peer:exec("ip link set lo up && ip addr add 10.7.0.2/24 dev ctl1 && " ..
            "ip addr add fd07::2/64 dev ctl1 nodad && ip link set ctl1 up")
  return peer
end

-- How each protocol's exchange is made: the peer's one-shot server and
-- the client (socat) that sends "ping" and reads the answer.
local EXCHANGE = {
  tcp = { server = "socat -T5 TCP6-LISTEN:%d,reuseaddr,ipv6only=0 SYSTEM:'read line; echo pong'",
          client = "echo ping | socat -T5 - TCP:%s:%d" },
  udp = { server = "socat -T2 UDP6-RECVFROM:%d,reuseaddr,ipv6only=0 SYSTEM:'read line; echo pong'",
          client = "echo ping | socat -T1 - UDP:%s:%d" },
}

--- One request and answer from here to the peer over proto ("tcp" or
-- "udp"). The server listens on port; the client connects to addr:to_port
-- (default peer.addr:port), so a DNAT rule can map one onto the other.
-- Returns the answer ("pong\n"), or nil if none came.
function H.exchange(proto, peer, port, addr, to_port)
  local how = assert(EXCHANGE[proto], proto)
  addr = addr or peer.addr
  local server = peer:spawn(how.server:format(port))
  local target = addr:find(":") and ("[" .. addr .. "]") or addr
  local answer
  for _ = 1, 50 do  -- until the server listens
    local out, status = H.run(how.client:format(target, to_port or port))
    if status == 0 and out ~= "" then answer = out break end
    H.run("sleep 0.05")
  end
  H.run("kill " .. server)
  return answer
end

function H.tcp_exchange(...) return H.exchange("tcp", ...) end
function H.udp_exchange(...) return H.exchange("udp", ...) end

--- Every flow of a dump, by id.
function H.flows_by_id(h, filter)
  local by_id = {}
  for f in h:dump(filter) do by_id[f.id] = f end
  return by_id
end

function H.write_file(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- Any `ct label` expression in the ruleset gives conntracks created afterwards label
-- storage (the match is enough, no `ct label set`); entries made before it have none.
H.LABEL_RULESET = [[
table inet ct_lua_labels {
  chain out {
    type filter hook output priority 0;
    ct label 1 counter
  }
}]]
H.CONNLABEL_CONF = "0 blue\n1 green\n5 red\n"

--- Runs conntrack ARGS with the connlabel.conf at path conf (dir: a scratch directory).
-- conntrack 1.4.7 reads labels only from /etc/xtables/connlabel.conf (no --labelmap
-- before 1.4.9); the host has none and must keep none, so conntrack runs in a private
-- mount namespace with an overlay on /etc. Returns its stdout lines.
function H.conntrack_with_labelmap(dir, conf, args)
  local script = table.concat({
    "mkdir -p " .. dir .. "/upper " .. dir .. "/work",
    "mount -t overlay overlay -o lowerdir=/etc,upperdir=" .. dir .. "/upper,workdir=" ..
      dir .. "/work /etc",
    "mkdir -p /etc/xtables",
    "cp " .. conf .. " /etc/xtables/connlabel.conf",
    H.CONNTRACK .. " " .. args,
  }, " && ")
  local out, status, err = H.run("unshare -m sh -c " .. H.quote(script))
  assert(status == 0, err)
  return H.lines(out)
end

--- An error message without the "file:line: " that luaL_error adds for the Lua caller,
-- so assertions compare the library's own text exactly.
function H.without_position(err)
  return (tostring(err):gsub("^[^:\n]+:%d+: ", "", 1))
end

--- The message of the error fn(...) raises, without its position.
function H.raised(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error, but the call succeeded")
  return H.without_position(err)
end

--- The keys of t, sorted.
function H.sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

--- Seconds on a monotonic clock (os.time counts whole seconds of the wall clock).
function H.now()
  return require("conntrack").monotonic()
end

--- Polls fn every 20 ms until it returns a true value, which it returns; after
-- seconds it fails, naming what it waited for and what describe() (if given) says.
function H.eventually(seconds, what, fn, describe)
  local deadline = H.now() + seconds
  while true do
    local value = fn()
    if value then return value end
    if H.now() > deadline then
      error(string.format("timed out after %gs waiting for %s%s", seconds, what,
                          describe and ("\n" .. describe()) or ""), 2)
    end
    H.run("sleep 0.02")
  end
end

--- Netlink sockets of the netfilter family (12) in some multicast group, from this
-- namespace's /proc/net/netlink: an event listener is subscribed once its socket counts.
function H.subscribed_sockets()
  local n = 0
  for line in io.lines("/proc/net/netlink") do
    local eth, groups = line:match("^%x+%s+(%d+)%s+%d+%s+(%x+)")
    if eth == "12" and tonumber(groups, 16) ~= 0 then n = n + 1 end
  end
  return n
end

--- The content of a file, or "" when it cannot be read.
function H.read_file(path)
  return H.file_text(path) or ""
end

--- The content of a file, or nil when it cannot be read (it does not exist yet).
function H.file_text(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end

--- A group of background processes that one test starts in its scratch directory dir
-- and that end with it: group:spawn(command) starts a shell command with its output in
-- files and returns a process (below); group:kill() ends those still running, by pid.
function H.processes(dir)
  local group = {}
  --- The process: .pid, :stdout(), :stderr(), :lines(), :status() (nil while it runs),
  -- :describe(), :signal(NAME), :wait([seconds]) (its exit status), :stop() (SIGTERM,
  -- then its exit status), :fds(), :last_line_is(line), :stderr_has(plain).
  function group.spawn(_, command)
    local n = #group + 1
    local p = { out = dir .. "/out" .. n, err = dir .. "/err" .. n,
                pidfile = dir .. "/pid" .. n, statusfile = dir .. "/status" .. n }
    -- the inner shell knows the pid and waits for the exit status; both go to files
    local inner = string.format("%s >%s 2>%s & echo $! >%s; wait $!; echo $? >%s",
                                command, p.out, p.err, p.pidfile, p.statusfile)
    H.must("(sh -c " .. H.quote(inner) .. " </dev/null >/dev/null 2>&1 &)")
    group[n] = p
    function p:stdout() return H.read_file(self.out) end
    function p:stderr() return H.read_file(self.err) end
    function p:lines() return H.lines(self:stdout()) end
    function p:status()
      return math.tointeger(tonumber(H.read_file(self.statusfile):match("%d+")))
    end
    function p:describe() return "stdout:\n" .. self:stdout() .. "stderr:\n" .. self:stderr() end
    function p:signal(name) H.must("kill -" .. name .. " " .. self.pid) end
    function p:wait(seconds)
      return H.eventually(seconds or 10, "the process to exit", function() return self:status() end,
                          function() return self:describe() end)
    end
    function p:stop()
      self:signal("TERM")
      return self:wait()
    end
    function p:fds() return #H.lines(H.run("ls /proc/" .. self.pid .. "/fd")) end
    function p:last_line_is(line, seconds)
      H.eventually(seconds or 5, "the line '" .. line .. "'", function()
        local lines = self:lines()
        return lines[#lines] == line
      end, function() return self:describe() end)
    end
    function p:stderr_has(plain, seconds)
      H.eventually(seconds or 5, "'" .. plain .. "' on stderr", function()
        return self:stderr():find(plain, 1, true)
      end, function() return self:describe() end)
    end
    p.pid = H.eventually(5, "the pid of " .. command, function()
      return H.read_file(p.pidfile):match("%d+")
    end)
    return p
  end
  function group.kill()
    for _, p in ipairs(group) do
      if not p:status() then H.run("kill -9 " .. p.pid) end
    end
  end
  return group
end

--- Open file descriptors of this process. ls runs from popen, whose pipe
-- may not yet be closed on our side when ls looks: take the least of a few.
function H.fd_count()
  local least = math.huge
  for _ = 1, 3 do
    least = math.min(least, #H.lines(H.must("ls /proc/" .. H.pid() .. "/fd")))
  end
  return least
end

--- Resident set size of this process in KiB.
function H.rss_kib()
  for line in io.lines("/proc/self/status") do
    local kib = line:match("^VmRSS:%s+(%d+)")
    if kib then return tonumber(kib) end
  end
end

function H.pid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("l"):match("^%d+")
  f:close()
  return pid
end

--- The lines of a listing, sorted and normalised as H.sorted does, and also in what
-- differs between two tables made alike: -o save's timeouts, an expectation's countdown
-- and the ids.
function H.listing(text)
  local lines = H.lines(text)
  for i, line in ipairs(lines) do
    lines[i] = line:gsub("^(%-%u) %-t %d+", "%1 -t T"):gsub("^%d+ proto=", "T proto=")
                   :gsub("id=%d+", "id=N"):gsub("<id>%d+</id>", "<id>N</id>")
  end
  return H.sorted(lines)
end

--- An output handle for `ct-lua conntrack`'s main in process: it keeps what is written,
-- and s:text() gives it.
function H.sink()
  local s = { parts = {} }
  function s:write(...)
    for _, v in ipairs({ ... }) do self.parts[#self.parts + 1] = v end
    return self
  end
  function s:flush() end
  function s:text() return table.concat(self.parts) end
  return s
end

--- Runs the words of a conntrack command line with /usr/sbin/conntrack (who is
-- "conntrack") or with `ct-lua conntrack`'s main in process (any other who); returns
-- stdout, the exit status and stderr.
function H.run_words(who, words)
  if who == "conntrack" then
    local quoted = {}
    for i, w in ipairs(words) do quoted[i] = H.quote(w) end
    return H.run(H.CONNTRACK .. " " .. table.concat(quoted, " "))
  end
  local argv, out, err = { [0] = "conntrack" }, H.sink(), H.sink()
  for i, w in ipairs(words) do argv[i] = w end
  local status = require("conntrack.cli").main(argv, out, err)
  return out:text(), status, err:text()
end

return H
