-- Complete table access (issue 4): expectations (made by the real ftp helper, by
-- `conntrack -I expect` and by expect_create), per-CPU statistics and the table size, the
-- dying and unconfirmed tables, zeroing counters, labels added and deleted bit by bit,
-- zones in every operation, and other network namespaces (by path, by name, and every
-- namespace at once with all_netns). Each is checked against /usr/sbin/conntrack (1.4.7)
-- on the same table.
--
-- tests/run gives this file its own network namespace (unshare -rn). Expectation lines
-- are compared without their first word (the countdown timeout), flow lines through
-- H.normalize. conntrack's expectation commands default to IPv4 (conntrack-cli.md §3.1),
-- so IPv6 expectations are listed with `-f ipv6`.

local H = require "helpers"
local ftp = require "helpers.ftp"
local conntrack = require "conntrack"

local ENOENT, EEXIST, EINVAL, ENOSPC = 2, 17, 22, 28

---------------------------------------------------------------------------------------
-- helpers

local function sleep(seconds)
  H.must("sleep " .. seconds)
end

local function tmpdir()
  return (H.must("mktemp -d"):gsub("%s+$", ""))
end

--- conntrack ARGS, which must exit 0; its stdout lines.
local function ct(args)
  local lines, status, err = H.conntrack(args)
  assert(status == 0, ("conntrack %s failed (%d): %s"):format(args, status, err))
  return lines
end

--- conntrack ARGS run inside the namespace of process pid.
local function ct_in(pid, args)
  return H.lines(H.must("nsenter -t " .. pid .. " -n " .. H.CONNTRACK .. " " .. args))
end

--- A copy of t with the fields of extra.
local function with(t, extra)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

--- An expectation line without its countdown timeout (its first word).
local function exp_normalize(line)
  return (line:gsub("^%d+ ", "T ", 1))
end

local function exp_sorted(lines)
  local t = {}
  for i, line in ipairs(lines) do t[i] = exp_normalize(line) end
  table.sort(t)
  return t
end

--- tostring of every expectation expect_dump returns.
local function expect_lines(h, filter)
  local t = {}
  for e in h:expect_dump(filter) do t[#t + 1] = tostring(e) end
  return t
end

--- tostring of every flow h:dump(filter, opts) returns.
local function dump_lines(h, filter, opts)
  local t = {}
  for f in h:dump(filter, opts) do t[#t + 1] = tostring(f) end
  return t
end

--- Events of ev until done(events) holds or `seconds` pass.
local function collect(ev, seconds, done, into)
  local got = into or {}
  for _ = 1, math.ceil(seconds * 20) do
    local batch = assert(ev:recv())
    table.move(batch, 1, #batch, #got + 1, got)
    if done(got) then break end
    if #batch == 0 then ev:wait(0.05) end
  end
  return got
end

--- The events of a kind whose object's line (normalized) is `line`.
local function events_like(events, kind, line)
  local found = {}
  for _, e in ipairs(events) do
    local obj = e.expect or e.flow
    if e.kind == kind and obj and exp_normalize(tostring(obj)) == exp_normalize(line) then
      found[#found + 1] = e
    end
  end
  return found
end

local TUPLE = { "proto", "src", "dst", "sport", "dport" }

--- The five-tuple fields of a flow (or of an expectation's tuple).
local function tuple_of(f)
  local t = {}
  for _, k in ipairs(TUPLE) do t[k] = f[k] end
  return t
end

local function sum(cpus, name)
  local total = 0
  for _, c in ipairs(cpus) do total = total + c[name] end
  return total
end

--- conntrack -S [expect] as { { cpu = N, name = value, ... }, ... }, by cpu.
local function conntrack_stats(args)
  local cpus = {}
  for _, line in ipairs(ct("-S " .. (args or ""))) do
    local t = { cpu = assert(tonumber(line:match("^cpu=(%d+)%s")), line) }
    for name, value in line:gmatch("(%S+)=(%d+)") do
      if name ~= "cpu" then t[name] = tonumber(value) end
    end
    cpus[#cpus + 1] = t
  end
  table.sort(cpus, function(a, b) return a.cpu < b.cpu end)
  return cpus
end

--- The number of possible CPUs (the kernel reports each of them), from "0-1" or "0,2-3".
local function possible_cpus()
  local f = assert(io.open("/sys/devices/system/cpu/possible"))
  local text = f:read("l")
  f:close()
  local n = 0
  for first, last in text:gmatch("(%d+)%-?(%d*)") do
    n = n + (last ~= "" and tonumber(last) - tonumber(first) + 1 or 1)
  end
  return n
end

local function by_cpu(list)
  table.sort(list, function(a, b) return a.cpu < b.cpu end)
  return list
end

--- A master conntrack entry that carries a helper, for expectations to hang on.
local function master(h, spec)
  local ok, msg = h:create(with({ timeout = 300 }, spec))
  assert(ok, msg)
  return tuple_of(spec)
end

---------------------------------------------------------------------------------------
-- 1. expectations made by the ftp helper from a real FTP control conversation

-- The helper is assigned explicitly, and the server answers PASV with $FTP_PASV (the
-- ruleset and the server of tests/helpers/ftp.lua). On loopback the helper sees each
-- segment twice (output and input), so an announcement is made, replaced and made again:
-- events are counted as "at least one". The client sends USER first (the helper ignores
-- the first data segment in each direction), then PORT or PASV, then QUIT.
local FTP_CLIENT = [[
read -r banner
printf 'USER anonymous\r\n'; read -r reply
printf '%s\r\n' "$FTP_CMD"; read -r reply
printf '%s\n' "$reply" >&2
printf 'QUIT\r\n'; read -r reply
]]

-- Active mode: the client's PORT makes the helper expect the server's data connection to
-- 39*256+16; passive mode: the server's 227 makes it expect the client's to 40*256+10.
local FTP_CASES = {
  { name = "PORT (active mode)", command = "PORT 127,0,0,1,39,16", reply = "^200 ", x = 39, y = 16 },
  { name = "227 to PASV (passive mode)", command = "PASV", reply = "^227 ", x = 40, y = 10 },
}

describe("expectations made by the ftp helper", function()
  local h, ev, dir, server
  local events = {}
  local found = {}    -- case name -> expectation from expect_dump
  local lines = {}    -- case name -> its line

  lazy_setup(function()
    H.reset()
    H.must("ip link set lo up")
    H.sysctl("nf_conntrack_events", 1)
    H.track_traffic()
    H.nft(ftp.RULESET)
    dir = tmpdir()
    H.write_file(dir .. "/server.sh", ftp.SERVER)
    H.write_file(dir .. "/client.sh", FTP_CLIENT)
    h = H.open()
    ev = assert(h:listen{ events = { "expect_new", "expect_destroy" } })
    server = H.must("socat -T10 TCP-LISTEN:21,reuseaddr,fork " ..
                    "EXEC:" .. H.quote("sh " .. dir .. "/server.sh") ..
                    " >/dev/null 2>&1 & echo $!"):match("%d+")
    H.eventually(2, "the ftp server", function() return H.run("ss -Hltn 'sport = :21'") ~= "" end)
    for _, case in ipairs(FTP_CASES) do
      local _, status, err = H.run("FTP_CMD=" .. H.quote(case.command) ..
                                   " socat -T5 TCP:127.0.0.1:21 EXEC:" ..
                                   H.quote("sh " .. dir .. "/client.sh"))
      assert(status == 0 and err:match(case.reply), "ftp session failed: " .. err)
    end
    for e in h:expect_dump() do
      for _, case in ipairs(FTP_CASES) do
        if e.expected.dport == case.x * 256 + case.y then
          found[case.name], lines[case.name] = e, tostring(e)
        end
      end
    end
    collect(ev, 2, function(got)
      for _, case in ipairs(FTP_CASES) do
        if not lines[case.name] or #events_like(got, "expect_new", lines[case.name]) == 0 then
          return false
        end
      end
      return true
    end, events)
  end)

  lazy_teardown(function()
    if server then H.run("kill " .. server) end
    if ev then ev:close() end
    if h then h:close() end
    if dir then H.run("rm -rf " .. H.quote(dir)) end
  end)

  it("expect_dump lists exactly what conntrack -L expect lists", function()
    local theirs = ct("-L expect")
    assert.equal(#FTP_CASES, #theirs)
    assert.same(exp_sorted(theirs), exp_sorted(expect_lines(h)))
    assert.same(exp_sorted(theirs), exp_sorted(expect_lines(h, { family = "ipv4" })))
    assert.same({}, expect_lines(h, { family = "ipv6" }))
  end)

  for _, case in ipairs(FTP_CASES) do
    it(case.name .. ": helper, master tuple, expected port, mask and the other fields",
       function()
      local e = assert(found[case.name], "no expectation for dport " .. case.x * 256 + case.y)
      assert.equal("ftp", e.helper)
      assert.equal(0, e.class)
      assert.equal("ipv4", e.family)
      assert.equal("tcp", e.proto)
      assert.is_true(e.timeout > 0 and e.timeout <= 300, tostring(e.timeout))
      assert.same({}, e.flags)
      assert.is_nil(e.nat)
      -- the data connection: any source port, to x*256+y
      assert.same({ proto = "tcp", src = "127.0.0.1", dst = "127.0.0.1", sport = 0,
                    dport = case.x * 256 + case.y }, tuple_of(e.expected))
      assert.same({ proto = "tcp", src = "255.255.255.255", dst = "255.255.255.255",
                    sport = 0, dport = 65535 }, tuple_of(e.mask))
      -- the master is the control connection as h:dump shows it
      local control
      for f in h:dump{ proto = "tcp", dport = 21 } do
        if f.sport == e.master.sport then control = f end
      end
      assert(control, "no control connection with sport " .. tostring(e.master.sport))
      assert.equal("ftp", control.helper)
      assert.same(tuple_of(control), tuple_of(e.master))
      -- totable and pairs give the same fields as indexing
      local t = e:totable()
      local keys = {}
      for k, v in pairs(e) do
        keys[k] = true
        if type(v) == "table" then assert.same(t[k], v, k)
        else assert.equal(tostring(t[k]), tostring(v), k) end
      end
      for k in pairs(t) do assert.is_true(keys[k], k) end
      for _, k in ipairs{ "expected", "mask", "master", "helper", "class", "timeout" } do
        assert.is_true(keys[k], k)
      end
      assert.equal(tostring(e.expected), tostring(t.expected))
    end)

    it(case.name .. ": expect_get by the expected tuple, and by the object, returns it",
       function()
      local e = assert(found[case.name])
      local by_tuple, msg = h:expect_get{ expected = tuple_of(e.expected) }
      assert(by_tuple, msg)
      assert.equal(exp_normalize(lines[case.name]), exp_normalize(tostring(by_tuple)))
      local by_object = assert(h:expect_get(e))
      assert.equal(exp_normalize(lines[case.name]), exp_normalize(tostring(by_object)))
    end)

    it(case.name .. ": an expect_new event came from the kernel with that expectation",
       function()
      local new = events_like(events, "expect_new", assert(lines[case.name]))
      assert.is_true(#new >= 1, "no expect_new event for " .. lines[case.name])
      assert.is_nil(new[1].portid)  -- made by a packet, not through ctnetlink
      assert.equal("number", type(new[1].time))
      assert.equal("ftp", new[1].expect.helper)
    end)
  end

  it("expect_delete (by object and by tuple) removes them, and expect_destroy events arrive",
     function()
    local first, second = found[FTP_CASES[1].name], found[FTP_CASES[2].name]
    assert.is_true(h:expect_delete(first))
    assert.is_true(h:expect_delete{ expected = tuple_of(second.expected) })
    assert.same({}, ct("-L expect"))
    assert.same({}, expect_lines(h))
    local got = {}
    local function destroyed(list)
      for _, case in ipairs(FTP_CASES) do
        local mine = 0
        for _, e in ipairs(events_like(list, "expect_destroy", lines[case.name])) do
          if e.portid then mine = mine + 1 end
        end
        if mine == 0 then return false end
      end
      return true
    end
    collect(ev, 2, destroyed, got)
    assert.is_true(destroyed(got), "missing expect_destroy events with our portid")
    local again, _, errno = h:expect_delete(first)
    assert.is_nil(again)
    assert.equal(ENOENT, errno)
  end)
end)

---------------------------------------------------------------------------------------
-- 2. expectations made by conntrack -I expect and by expect_create

describe("expectations made by conntrack -I expect and by expect_create", function()
  local h
  -- masters: the ftp and tftp helpers allow one expectation per master, so one each
  local TFTP = { proto = "udp", src = "10.4.0.1", dst = "10.4.0.2", sport = 1000, dport = 69,
                 helper = "tftp" }
  local FTP = { proto = "tcp", src = "10.4.1.1", dst = "10.4.1.2", sport = 1001, dport = 21,
                state = "ESTABLISHED", helper = "ftp" }
  local FTP6 = { proto = "tcp", src = "fd04::1", dst = "fd04::2", sport = 1002, dport = 21,
                 state = "ESTABLISHED", helper = "ftp" }
  local EXPECTED = { proto = "tcp", src = "10.4.1.2", dst = "10.4.1.1", sport = 0, dport = 6000 }
  local EXPECTED6 = { proto = "tcp", src = "fd04::2", dst = "fd04::1", sport = 0, dport = 6001 }
  -- udp: conntrack 1.4.7 stores --tuple-port-* as the L4 protocol for tcp (§3.2), not udp
  local CLI = "-I expect -s 10.4.0.1 -d 10.4.0.2 -p udp --sport 1000 --dport 69 " ..
              "--tuple-src 10.4.0.2 --tuple-dst 10.4.0.1 --tuple-port-src 0 " ..
              "--tuple-port-dst 5000 --mask-src 255.255.255.255 --mask-dst 255.255.255.255 " ..
              "--mask-port-src 0 --mask-port-dst 65535 -t 100"

  local function ours()
    return assert(h:expect_create{ master = master(h, FTP), expected = EXPECTED, timeout = 100 })
  end

  lazy_setup(function() h = H.open() end)
  lazy_teardown(function() h:close() end)
  before_each(function()
    H.reset()
    assert(h:expect_flush())
  end)

  it("conntrack -I expect's expectation: expect_dump and expect_get give its line and fields",
     function()
    master(h, TFTP)
    ct(CLI)
    local theirs = ct("-L expect")
    assert.equal(1, #theirs)
    assert.same(exp_sorted(theirs), exp_sorted(expect_lines(h)))
    local e, msg = h:expect_get{ expected = { proto = "udp", src = "10.4.0.2", dst = "10.4.0.1",
                                              sport = 0, dport = 5000 } }
    assert(e, msg)
    assert.equal(exp_normalize(theirs[1]), exp_normalize(tostring(e)))
    assert.equal("tftp", e.helper)
    assert.same(tuple_of(TFTP), tuple_of(e.master))
    assert.same({ proto = "udp", src = "255.255.255.255", dst = "255.255.255.255", sport = 0,
                  dport = 65535 }, tuple_of(e.mask))
  end)

  it("expect_create's expectation: conntrack -L expect prints our line, -D expect deletes it",
     function()
    ours()
    local theirs = ct("-L expect")
    local mine = expect_lines(h)
    assert.equal(1, #mine)
    assert.same(exp_sorted(theirs), exp_sorted(mine))
    -- the default mask is exact: every address and port bit
    local e = assert(h:expect_get{ expected = EXPECTED })
    assert.same({ proto = "tcp", src = "255.255.255.255", dst = "255.255.255.255",
                  sport = 65535, dport = 65535 }, tuple_of(e.mask))
    assert.same(tuple_of(FTP), tuple_of(e.master))
    assert.same(EXPECTED, tuple_of(e.expected))
    -- -D expect names the expected tuple (the reply ports are mandatory, and unused) and
    -- always exits 1 in 1.4.7 (§12.5)
    H.conntrack("-D expect -s 10.4.1.2 -d 10.4.1.1 -p tcp --sport 0 --dport 6000 " ..
                "--reply-port-src 6000 --reply-port-dst 0")
    local gone, _, errno = h:expect_get{ expected = EXPECTED }
    assert.is_nil(gone)
    assert.equal(ENOENT, errno)
  end)

  -- (the kernel keeps only the source half of a mask: the destination is always exact)
  it("flags, class and the mask given to expect_create read back as conntrack prints them",
     function()
    local m = master(h, FTP)
    assert(h:expect_create{ master = m, expected = EXPECTED, timeout = 100, class = 0,
                            flags = "PERMANENT,INACTIVE",
                            mask = { src = "255.255.0.0", dst = "255.255.255.255", sport = 0,
                                     dport = 65535 } })
    local e = assert(h:expect_get{ expected = EXPECTED })
    assert.same({ PERMANENT = true, INACTIVE = true }, e.flags)
    assert.equal(0, e.class)
    assert.equal("255.255.0.0", e.mask.src)
    assert.equal(0, e.mask.sport)
    local theirs = ct("-L expect")
    assert.equal(1, #theirs)
    assert.truthy(theirs[1]:find(" mask-src=255.255.0.0 ", 1, true), theirs[1])
    assert.truthy(theirs[1]:find(" PERMANENT,INACTIVE ", 1, true), theirs[1])
    assert.equal(exp_normalize(theirs[1]), exp_normalize(tostring(e)))
  end)

  it("each side sees the other's: conntrack's and ours listed together", function()
    master(h, TFTP)
    ct(CLI)
    ours()
    local mine = expect_lines(h)
    assert.equal(2, #mine)
    assert.same(exp_sorted(ct("-L expect")), exp_sorted(mine))
    assert.equal("2", ct("-C expect")[1])
  end)

  it("a duplicate expect_create returns nil, message, EEXIST", function()
    ours()
    local ok, msg, errno = h:expect_create{ master = tuple_of(FTP), expected = EXPECTED,
                                            timeout = 100 }
    assert.is_nil(ok)
    assert.equal(EEXIST, errno)
    assert.equal("conntrack.expect_create: File exists", msg)
    assert.equal(1, #ct("-L expect"))
  end)

  it("expect_get and expect_delete of a missing expectation return nil, message, ENOENT",
     function()
    ours()
    local missing = with(EXPECTED, { dport = 6999 })
    local cases = {
      { "expect_get", function() return h:expect_get{ expected = missing } end },
      { "expect_delete", function() return h:expect_delete{ expected = missing } end },
    }
    for _, case in ipairs(cases) do
      local ok, msg, errno = case[2]()
      assert.is_nil(ok, case[1])
      assert.equal(ENOENT, errno, case[1])
      assert.equal("conntrack." .. case[1] .. ": No such file or directory", msg)
    end
    assert.equal(1, #ct("-L expect"))  -- the real one is untouched
  end)

  it("expect_create without a master conntrack returns ENOENT, as conntrack -I expect fails",
     function()
    local ok, _, errno = h:expect_create{ master = tuple_of(FTP), expected = EXPECTED,
                                          timeout = 100 }
    assert.is_nil(ok)
    assert.equal(ENOENT, errno)
    local _, status, err = H.conntrack(CLI)
    assert.equal(1, status)
    assert.truthy(err:find("master conntrack not found", 1, true), err)
  end)

  it("expect_delete of { master = ... } without expected raises, and deletes nothing",
     function()
    ours()
    local ok, err = pcall(h.expect_delete, h, { master = tuple_of(FTP) })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("field 'expected' is required", 1, true), tostring(err))
    assert.equal(1, #ct("-L expect"))
  end)

  it("expect_dump's filter takes a family and a predicate, nothing else", function()
    master(h, TFTP)
    ct(CLI)
    ours()
    local tcp_only = expect_lines(h, { function(e) return e.proto == "tcp" end })
    assert.equal(1, #tcp_only)
    assert.truthy(tcp_only[1]:find(" dport=6000 ", 1, true), tcp_only[1])
    local ok, err = pcall(h.expect_dump, h, { proto = "tcp" })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("takes 'family' and a predicate, not 'proto'", 1, true),
                  tostring(err))
  end)

  it("an IPv6 expectation: listed by conntrack -L expect -f ipv6 only, as expect_dump shows",
     function()
    master(h, FTP6)
    assert(h:expect_create{ master = tuple_of(FTP6), expected = EXPECTED6, timeout = 100 })
    ours()
    local v6 = ct("-L expect -f ipv6")
    assert.equal(1, #v6)
    assert.same(exp_sorted(v6), exp_sorted(expect_lines(h, { family = "ipv6" })))
    assert.same(exp_sorted(ct("-L expect")), exp_sorted(expect_lines(h, { family = "ipv4" })))
    assert.equal(2, #expect_lines(h))
    local e = assert(h:expect_get{ expected = EXPECTED6 })
    assert.equal("ipv6", e.family)
    assert.equal(exp_normalize(v6[1]), exp_normalize(tostring(e)))
    assert.equal("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", e.mask.src)
    assert.same(tuple_of(FTP6), tuple_of(e.master))
    assert.is_true(h:expect_delete(e))
    assert.same({}, ct("-L expect -f ipv6"))
    assert.equal(1, #ct("-L expect"))
  end)

  it("expect_flush empties both families: conntrack -L expect and -C expect show 0", function()
    master(h, TFTP)
    ct(CLI)
    ours()
    master(h, FTP6)
    assert(h:expect_create{ master = tuple_of(FTP6), expected = EXPECTED6, timeout = 100 })
    assert.equal(3, #expect_lines(h))
    assert.is_true(h:expect_flush())
    assert.same({}, ct("-L expect"))
    assert.same({}, ct("-L expect -f ipv6"))
    assert.equal("0", ct("-C expect")[1])
    assert.same({}, expect_lines(h))
  end)

  it("zones: expect_get and expect_delete with zone = 7 find the zone 7 expectation only",
     function()
    master(h, with(FTP, { zone = 7 }))
    assert(h:expect_create{ zone = 7, master = tuple_of(FTP), expected = EXPECTED,
                            timeout = 100 })
    -- the master is looked up in the expectation's zone
    local ok, _, errno = h:expect_create{ master = tuple_of(FTP),
                                          expected = with(EXPECTED, { dport = 6002 }),
                                          timeout = 100 }
    assert.is_nil(ok)
    assert.equal(ENOENT, errno)
    local none, _, e0 = h:expect_get{ expected = EXPECTED }
    assert.is_nil(none)
    assert.equal(ENOENT, e0)
    local e = assert(h:expect_get{ zone = 7, expected = EXPECTED })
    assert.same(EXPECTED, tuple_of(e.expected))
    local missed, _, e1 = h:expect_delete{ zone = 0, expected = EXPECTED }
    assert.is_nil(missed)
    assert.equal(ENOENT, e1)
    assert.equal(1, #ct("-L expect"))
    assert.is_true(h:expect_delete{ zone = 7, expected = EXPECTED })
    assert.same({}, ct("-L expect"))
  end)

  it("zones: an expectation object read from zone 7 names that expectation", function()
    master(h, with(FTP, { zone = 7 }))
    assert(h:expect_create{ zone = 7, master = tuple_of(FTP), expected = EXPECTED,
                            timeout = 100 })
    -- the kernel does not report an expectation's zone: the object keeps the one of
    -- the lookup that found it
    local e = assert(h:expect_get{ zone = 7, expected = EXPECTED })
    assert.equal(7, e.zone)
    local again, msg = h:expect_get(e)
    assert(again, msg)
    assert.is_true(h:expect_delete(e))
  end)
end)

---------------------------------------------------------------------------------------
-- 3. statistics

describe("statistics", function()
  local h
  lazy_setup(function() h = H.open() end)
  lazy_teardown(function() h:close() end)
  before_each(function()
    H.reset()
    assert(h:expect_flush())
  end)

  it("h:stats() has one table per CPU with the counters of conntrack -S", function()
    local before = by_cpu(assert(h:stats()))
    for i = 1, 3 do
      master(h, { proto = "udp", src = "10.5.0.1", dst = "10.5.0.2", sport = i, dport = 9 })
    end
    -- no traffic here: two readings around conntrack -S agree, and agree with it
    local ours = by_cpu(assert(h:stats()))
    local theirs = conntrack_stats()
    local again = by_cpu(assert(h:stats()))
    assert.same(ours, again)
    assert.same(theirs, ours)
    assert.equal(possible_cpus(), #ours)
    for i, c in ipairs(ours) do
      for _, name in ipairs{ "found", "invalid", "insert", "insert_failed", "drop",
                             "early_drop", "error", "search_restart", "clash_resolve",
                             "chaintoolong" } do
        assert.equal("number", type(c[name]), ("cpu %d: %s"):format(c.cpu, name))
      end
      assert.equal(before[i].cpu, c.cpu)
    end
    assert.equal(3, sum(ours, "insert") - sum(before, "insert"))
  end)

  it("h:expect_stats() equals conntrack -S expect; expect_create counts what we create",
     function()
    local before = by_cpu(assert(h:expect_stats()))
    assert.same(conntrack_stats("expect"), before)
    for i = 1, 3 do
      local m = master(h, { proto = "tcp", src = "10.5.1.1", dst = "10.5.1.2", sport = i,
                            dport = 21, state = "ESTABLISHED", helper = "ftp" })
      assert(h:expect_create{ master = m, timeout = 100,
                              expected = { proto = "tcp", src = "10.5.1.2", dst = "10.5.1.1",
                                           sport = 0, dport = 7000 + i } })
    end
    assert(h:expect_delete{ expected = { proto = "tcp", src = "10.5.1.2", dst = "10.5.1.1",
                                         sport = 0, dport = 7001 } })
    local after = by_cpu(assert(h:expect_stats()))
    assert.same(conntrack_stats("expect"), after)
    assert.equal(#before, #after)
    for _, c in ipairs(after) do
      local keys = {}
      for k in pairs(c) do keys[#keys + 1] = k end
      table.sort(keys)
      assert.same({ "cpu", "expect_create", "expect_delete", "expect_new" }, keys)
    end
    assert.equal(3, sum(after, "expect_create") - sum(before, "expect_create"))
    assert.equal(1, sum(after, "expect_delete") - sum(before, "expect_delete"))
  end)

  it("h:count() equals conntrack -C, and its max is nf_conntrack_max", function()
    for n = 0, 2 do
      local entries, max = h:count()
      assert.equal(n * 4, entries)
      assert.equal(tonumber(ct("-C")[1]), entries)
      local f = assert(io.open("/proc/sys/net/netfilter/nf_conntrack_max"))
      assert.equal(tonumber(f:read("l")), max)
      f:close()
      for i = 1, 4 do
        master(h, { proto = "udp", src = "10.5.2.1", dst = "10.5.2.2", sport = n * 4 + i,
                    dport = 9 })
      end
    end
  end)
end)

---------------------------------------------------------------------------------------
-- 4. the dying and unconfirmed tables, and zeroing counters

describe("other tables", function()
  local h
  lazy_setup(function() h = H.open() end)
  lazy_teardown(function() h:close() end)
  before_each(function() H.reset() end)

  local TABLES = { "dying", "unconfirmed" }

  for _, name in ipairs(TABLES) do
    it("table = '" .. name .. "' equals conntrack -L " .. name .. " (empty at rest)", function()
      master(h, { proto = "udp", src = "10.6.9.1", dst = "10.6.9.2", sport = 1, dport = 2 })
      local mine = dump_lines(h, nil, { table = name })
      assert.same({}, mine)
      assert.same(H.sorted(ct("-L " .. name)), H.sorted(mine))
    end)
  end

  it("entries whose destroy event cannot be delivered wait in 'dying', as conntrack lists",
     function()
    H.sysctl("nf_conntrack_events", 1)
    -- a reliable listener with the smallest buffer that is never read: the kernel keeps
    -- the entries whose DESTROY it could not deliver on its dying list
    local ev = assert(h:listen{ events = { "destroy" }, reliable = true, bufsize = 1,
                                bufsize_max = 1 })
    for i = 1, 40 do
      master(h, { proto = "udp", src = "10.6.8.1", dst = "10.6.8.2", sport = i, dport = 2 })
    end
    assert.equal(40, h:delete{ src = "10.6.8.1" })
    local mine = dump_lines(h, nil, { table = "dying" })
    assert.is_true(#mine > 0 and #mine <= 40, tostring(#mine))
    assert.same(H.sorted(ct("-L dying")), H.sorted(mine))
    assert.same({}, dump_lines(h))  -- not in the main table
    ev:close()
    -- without the listener they are let go
    for _ = 1, 100 do
      if #ct("-L dying") == 0 then break end
      sleep(0.05)
    end
    assert.same({}, ct("-L dying"))
    assert.same({}, dump_lines(h, nil, { table = "dying" }))
  end)

  it("zero = true works on the conntrack table only", function()
    local ok, err = pcall(h.dump, h, nil, { table = "dying", zero = true })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("'zero' works on the conntrack table only", 1, true),
                  tostring(err))
  end)
end)

describe("zeroing counters", function()
  local h, peer

  --- The line of the answered flow to the peer's port (H.exchange's client retries until
  -- the server listens, so unanswered attempts may be listed too), and whether the
  -- counters of a line are all zero.
  local function to_port(lines, port)
    local t = {}
    for _, line in ipairs(lines) do
      if line:find(" dport=" .. port .. " ", 1, true) and not line:find("UNREPLIED", 1, true) then
        t[#t + 1] = line
      end
    end
    return t
  end
  local function zeroed(line)
    local n = 0
    for packets, bytes in line:gmatch("packets=(%d+) bytes=(%d+)") do
      if packets ~= "0" or bytes ~= "0" then return false end
      n = n + 1
    end
    return n == 2
  end

  --- Traffic to the peer on a TCP and a UDP port; waits until nothing is in flight.
  local function traffic(tcp_port, udp_port)
    assert.equal("pong\n", H.exchange("tcp", peer, tcp_port))
    assert.equal("pong\n", H.exchange("udp", peer, udp_port))
    sleep(0.3)
  end

  lazy_setup(function()
    H.reset()
    H.track_traffic()  -- acct on
    peer = H.peer()
    h = H.open()
  end)
  lazy_teardown(function()
    h:close()
    peer:close()
  end)

  it("dump with zero = true returns the counters, then conntrack -L shows packets=0 bytes=0",
     function()
    traffic(7101, 7102)
    local before = ct("-L")
    local mine = {}
    for f in h:dump(nil, { zero = true }) do
      mine[#mine + 1] = tostring(f)
      if (f.dport == 7101 or f.dport == 7102) and f.status.SEEN_REPLY then
        assert.is_true(f.packets > 0 and f.bytes > 0 and f.reply_packets > 0, tostring(f))
      end
    end
    assert.same(H.sorted(before), H.sorted(mine))
    local after = ct("-L")
    for _, port in ipairs{ 7101, 7102 } do
      local lines = to_port(after, port)
      assert.equal(1, #lines, "port " .. port)
      assert.is_true(zeroed(lines[1]), lines[1])
      assert.is_false(zeroed(to_port(before, port)[1]), to_port(before, port)[1])
    end
    for f in h:dump() do
      assert.equal(0, f.packets + f.bytes + f.reply_packets + f.reply_bytes, tostring(f))
    end
  end)

  it("conntrack -L -z does the same to new entries: what it shows is what we read", function()
    traffic(7103, 7104)
    local mine = dump_lines(h)
    assert.is_false(zeroed(to_port(mine, 7103)[1]))
    assert.is_false(zeroed(to_port(mine, 7104)[1]))
    local theirs = ct("-L -z")
    assert.same(H.sorted(mine), H.sorted(theirs))
    for f in h:dump() do
      assert.equal(0, f.packets + f.bytes + f.reply_packets + f.reply_bytes, tostring(f))
    end
    local after = ct("-L")
    assert.is_true(#after >= 4, tostring(#after))
    for _, line in ipairs(after) do assert.is_true(zeroed(line), line) end
  end)
end)

---------------------------------------------------------------------------------------
-- 5. labels

local LABEL_RULESET, CONNLABEL_CONF = H.LABEL_RULESET, H.CONNLABEL_CONF
local conntrack_with_labelmap = H.conntrack_with_labelmap

describe("labels", function()
  local h, dir, conf
  local BASE = { proto = "udp", src = "10.6.0.1", dst = "10.6.0.2", sport = 1 }
  local function tuple(dport) return with(BASE, { dport = dport }) end
  -- dport 1: made before the rule (no label storage); 2 and 3: after it

  --- The labels conntrack -L -o labels shows for each of our entries, by dport.
  local function their_labels()
    local by_port = {}
    for _, line in ipairs(conntrack_with_labelmap(dir, conf, "-L -o labels")) do
      local dport = line:match(" src=10%.6%.0%.1 dst=10%.6%.0%.2 sport=1 dport=(%d+) ")
      if dport then
        local set = {}
        for name in (line:match(" labels=(%S+)$") or ""):gmatch("[^,]+") do set[name] = true end
        by_port[tonumber(dport)] = set
      end
    end
    return by_port
  end

  lazy_setup(function()
    H.reset()
    dir = tmpdir()
    conf = dir .. "/connlabel.conf"
    H.write_file(conf, CONNLABEL_CONF)
    h = H.open{ labelmap = conf }
    master(h, tuple(1))
    H.nft(LABEL_RULESET)
    master(h, tuple(2))
    master(h, tuple(3))
  end)
  lazy_teardown(function()
    h:close()
    H.run("rm -rf " .. H.quote(dir))
  end)

  -- Applied in order; each step's result is the next one's start.
  local STEPS = {
    { "labels_add on a flow sets the named bits",
      function() return h:update(assert(h:get(tuple(2))), { labels_add = { "blue", "green" } }) end,
      { [2] = { blue = true, green = true }, [3] = {} } },
    { "labels_add of one more keeps the others",
      function() return h:update(assert(h:get(tuple(2))), { labels_add = "red" }) end,
      { [2] = { blue = true, green = true, red = true }, [3] = {} } },
    { "labels_del on a flow clears only the named bit",
      function() return h:update(assert(h:get(tuple(2))), { labels_del = { "green" } }) end,
      { [2] = { blue = true, red = true }, [3] = {} } },
    { "labels_add on a filter changes only its matches",
      function() return h:update({ dst = "10.6.0.2", dport = 3 }, { labels_add = { "green", "red" } }) end,
      { [2] = { blue = true, red = true }, [3] = { green = true, red = true } } },
    { "labels_del on a filter clears only the named bit of its matches",
      function() return h:update({ dst = "10.6.0.2", dport = 3 }, { labels_del = "red" }) end,
      { [2] = { blue = true, red = true }, [3] = { green = true } } },
    { "labels_del of a bit that is not set changes nothing else",
      function() return h:update(assert(h:get(tuple(3))), { labels_del = { "blue" } }) end,
      { [2] = { blue = true, red = true }, [3] = { green = true } } },
  }

  for _, step in ipairs(STEPS) do
    it(step[1] .. ", as conntrack -L -o labels shows", function()
      assert.equal(1, step[2]())
      local theirs = their_labels()
      for port, want in pairs(step[3]) do
        assert.same(want, theirs[port], "conntrack, dport " .. port)
        local f = assert(h:get(tuple(port)))
        assert.same(next(want) and want or nil, f.labels, "ours, dport " .. port)
      end
      assert.same({}, theirs[1])
    end)
  end

  it("labels_add and labels_del in one update change both sets of bits", function()
    -- dport 3 holds { green }: add blue, delete green
    local n = h:update(assert(h:get(tuple(3))), { labels_add = "blue", labels_del = { "green" } })
    assert.equal(1, n)
    assert.same({ blue = true }, their_labels()[3])
  end)

  it("an entry made before the rule has no label storage: nil, message, ENOSPC", function()
    for _, change in ipairs{ { labels_add = "blue" }, { labels_del = "green" } } do
      local ok, msg, errno = h:update(assert(h:get(tuple(1))), change)
      assert.is_nil(ok)
      assert.equal(ENOSPC, errno)
      assert.truthy(msg:find("label storage", 1, true), msg)
      assert.truthy(msg:find("ct label", 1, true), msg)
    end
    assert.same({}, their_labels()[1])
    assert.is_nil(h:get(tuple(1)).labels)
  end)
end)

---------------------------------------------------------------------------------------
-- 6. zones

describe("zones", function()
  local h
  local T = { proto = "udp", src = "10.8.0.1", dst = "10.8.0.2", sport = 4000, dport = 53 }

  --- The marks of the entries conntrack -L -w zone lists.
  local function marks(zone)
    local t = {}
    for _, line in ipairs(ct("-L -w " .. zone)) do
      t[#t + 1] = tonumber(line:match(" mark=(%d+)"))
    end
    table.sort(t)
    return t
  end
  local function get(zone)
    return assert(h:get(with(T, { zone = zone })))
  end

  lazy_setup(function() h = H.open() end)
  lazy_teardown(function() h:close() end)
  before_each(function()
    H.reset()
    master(h, with(T, { mark = 100 }))
    master(h, with(T, { mark = 107, zone = 7 }))
  end)

  -- { name, operation (returns the count it reports, or nil), marks left in 7, in 0 }
  local CASES = {
    { "update of the flow from zone 7", function() return h:update(get(7), { mark = 7 }) end,
      { 7 }, { 100 } },
    { "update of the flow from zone 0", function() return h:update(get(0), { mark = 1 }) end,
      { 107 }, { 1 } },
    { "update of a filter with zone = 7",
      function() return h:update({ dport = 53, zone = 7 }, { mark = 7 }) end, { 7 }, { 100 } },
    { "update of a filter with zone = 0",
      function() return h:update({ dport = 53, zone = 0 }, { mark = 1 }) end, { 107 }, { 1 } },
    { "delete of the flow from zone 7", function() return h:delete(get(7)) end, {}, { 100 } },
    { "delete of the flow from zone 0", function() return h:delete(get(0)) end, { 107 }, {} },
    { "delete of a filter with zone = 7",
      function() return h:delete{ dport = 53, zone = 7 } end, {}, { 100 } },
    { "delete of a filter with zone = 0",
      function() return h:delete{ dport = 53, zone = 0 } end, { 107 }, {} },
  }

  it("get finds the entry of the zone asked for; zone 9 has none", function()
    assert.equal(107, get(7).mark)
    assert.equal(7, get(7).zone)
    assert.equal(100, get(0).mark)
    assert.equal(100, assert(h:get(T)).mark)  -- no zone: zone 0
    assert.equal(0, assert(h:get(T)).zone)
    local none, _, errno = h:get(with(T, { zone = 9 }))
    assert.is_nil(none)
    assert.equal(ENOENT, errno)
    for _, zone in ipairs{ 0, 7 } do
      assert.same(H.sorted(ct("-L -w " .. zone)), H.sorted(dump_lines(h, { zone = zone })))
    end
  end)

  for _, case in ipairs(CASES) do
    it(case[1] .. " touches only that zone's entry (conntrack -L -w 7 / -w 0)", function()
      assert.equal(1, case[2]())
      assert.same(case[3], marks(7))
      assert.same(case[4], marks(0))
    end)
  end
end)

---------------------------------------------------------------------------------------
-- 7. other network namespaces

--- The network namespace of this process and of each of its threads.
local function own_namespaces()
  local pid = H.pid()
  return H.must("readlink /proc/" .. pid .. "/ns/net; for t in /proc/" .. pid ..
                "/task/*; do readlink $t/ns/net; done")
end

describe("namespaces", function()
  local h, pid, path, before
  local A = { proto = "udp", src = "10.9.0.1", dst = "10.9.0.2", sport = 1, dport = 2 }
  local function entry(n) return with(A, { sport = n }) end

  lazy_setup(function()
    H.reset()
    h = H.open()
    before = own_namespaces()
    pid = H.must("unshare -n sleep 120 >/dev/null 2>&1 & echo $!"):match("%d+")
    local ours = H.must("readlink /proc/self/ns/net")
    for _ = 1, 100 do
      local theirs = H.run("readlink /proc/" .. pid .. "/ns/net")
      if theirs ~= "" and theirs ~= ours then break end
      sleep(0.02)
    end
    path = "/proc/" .. pid .. "/ns/net"
  end)
  lazy_teardown(function()
    h:close()
    H.run("kill " .. pid)
  end)
  before_each(function() H.reset() end)

  it("open{ netns = path } sees only that namespace's table", function()
    H.must("nsenter -t " .. pid .. " -n " .. H.CONNTRACK ..
           " -I -p udp -s 10.9.1.1 -d 10.9.1.2 --sport 1 --dport 2 -t 100 2>/dev/null")
    master(h, entry(11))
    local other <close> = assert(conntrack.open{ netns = path })
    local theirs = ct_in(pid, "-L")
    assert.equal(1, #theirs)
    assert.same(H.sorted(theirs), H.sorted(dump_lines(other)))
    assert.equal(1, (other:count()))
    assert.same(H.sorted(ct("-L")), H.sorted(dump_lines(h)))
    assert.equal(1, #dump_lines(h))
  end)

  it("create, get and delete act there; our table is unchanged", function()
    local other <close> = assert(conntrack.open{ netns = path })
    local mine = ct("-L")
    assert(other:create(with(entry(21), { timeout = 100 })))
    assert.truthy(table.concat(ct_in(pid, "-L"), "\n"):find("sport=21 ", 1, true))
    assert.equal(21, assert(other:get(entry(21))).sport)
    local none, _, errno = h:get(entry(21))
    assert.is_nil(none)
    assert.equal(ENOENT, errno)
    assert.same(H.sorted(mine), H.sorted(ct("-L")))
    assert.equal(1, other:delete(assert(other:get(entry(21)))))
    assert.is_nil(table.concat(ct_in(pid, "-L"), "\n"):find("sport=21 ", 1, true))
    assert.same(H.sorted(mine), H.sorted(ct("-L")))
  end)

  it("expectations there are listed by conntrack -L expect there, and not here", function()
    local other <close> = assert(conntrack.open{ netns = path })
    local m = master(other, { proto = "tcp", src = "10.9.2.1", dst = "10.9.2.2", sport = 5,
                              dport = 21, state = "ESTABLISHED", helper = "ftp" })
    assert(other:expect_create{ master = m, timeout = 100,
                                expected = { proto = "tcp", src = "10.9.2.2", dst = "10.9.2.1",
                                             sport = 0, dport = 7777 } })
    local theirs = ct_in(pid, "-L expect")
    assert.equal(1, #theirs)
    assert.same(exp_sorted(theirs), exp_sorted(expect_lines(other)))
    assert.same({}, ct("-L expect"))
    assert.same({}, expect_lines(h))
    assert.is_true(other:expect_flush())
    assert.same({}, ct_in(pid, "-L expect"))
  end)

  it("listen{} on it gets that namespace's events only", function()
    local other <close> = assert(conntrack.open{ netns = path })
    local ev <close> = assert(other:listen{ events = { "new" } })
    H.must("nsenter -t " .. pid .. " -n " .. H.CONNTRACK ..
           " -I -p udp -s 10.9.3.1 -d 10.9.3.2 --sport 1 --dport 2 -t 100 2>/dev/null")
    master(h, entry(31))                 -- here: not for ev
    assert(other:create(with(entry(32), { timeout = 100 })))  -- there, through the handle
    local got = collect(ev, 2, function(list) return #list >= 2 end)
    sleep(0.1)
    collect(ev, 0.1, function() return false end, got)
    local lines = {}
    for _, e in ipairs(got) do
      assert.equal("new", e.kind)
      assert.is_nil(e.nsid)
      lines[#lines + 1] = tostring(e.flow)
    end
    table.sort(lines)
    assert.equal(2, #lines)
    assert.truthy(lines[1]:find("src=10.9.0.1 dst=10.9.0.2 sport=32 ", 1, true), lines[1])
    assert.truthy(lines[2]:find("src=10.9.3.1 dst=10.9.3.2 ", 1, true), lines[2])
  end)

  it("the program stays in its own namespace (every thread)", function()
    local other <close> = assert(conntrack.open{ netns = path })
    for _ in other:dump() do end
    assert.equal(before, own_namespaces())
    assert.equal(H.must("readlink /proc/self/ns/net"), H.must("readlink /proc/" .. H.pid() ..
                                                             "/ns/net"))
  end)

  local BAD = {
    { "a name that /run/netns does not hold", "ct-lua-no-such-netns", ENOENT },
    { "a path that does not exist", "/proc/0/ns/net", ENOENT },
    { "a file that is not a network namespace", "/etc/hostname", EINVAL },
  }
  for _, case in ipairs(BAD) do
    it("open{ netns = " .. case[1] .. " } returns nil, message, " .. case[3], function()
      local ok, msg, errno = conntrack.open{ netns = case[2] }
      assert.is_nil(ok)
      assert.equal(case[3], errno)
      assert.truthy(msg:match("^conntrack%.open: "), msg)
      assert.equal(before, own_namespaces())
    end)
  end

  -- A named namespace needs /run/netns, which the host's mount namespace must not get:
  -- a child lua5.4 runs in a private mount namespace with a tmpfs on /run, where
  -- `ip netns add blue` made it and `ip netns set blue 5` gave it id 5 here. The child
  -- reports what it saw as JSON; entries in blue get events (nf_conntrack_events=1 there).
  local CHILD = [=[
local conntrack = require "conntrack"
local H = require "helpers"
local cjson = require "cjson"
local facts = {}
local function lines_of(h) local t = {} for f in h:dump() do t[#t + 1] = tostring(f) end return t end
local function drain(ev, want)
  local t = {}
  for _ = 1, 40 do
    for _, e in ipairs(assert(ev:recv())) do
      t[#t + 1] = { kind = e.kind, line = tostring(e.flow), nsid = e.nsid }
    end
    if #t >= want then break end
    ev:wait(0.05)
  end
  return t
end
local own = assert(conntrack.open())
local blue = assert(conntrack.open{ netns = "blue" })
local by_path = assert(conntrack.open{ netns = "/run/netns/blue" })
local all = assert(own:listen{ all_netns = true, events = { "new" } })
local plain = assert(own:listen{ events = { "new" } })
facts.ns_before = H.must("readlink /proc/" .. H.pid() .. "/ns/net")
assert(blue:create{ proto = "udp", src = "10.31.0.1", dst = "10.31.0.2", sport = 1, dport = 2, timeout = 100 })
assert(own:create{ proto = "udp", src = "10.32.0.1", dst = "10.32.0.2", sport = 1, dport = 2, timeout = 100 })
H.must("nsenter --net=/run/netns/blue " .. H.CONNTRACK ..
       " -I -p udp -s 10.31.0.3 -d 10.31.0.4 --sport 1 --dport 2 -t 100 2>/dev/null")
facts.blue_dump = lines_of(blue)
facts.by_path_dump = lines_of(by_path)
facts.blue_conntrack = H.lines(H.must("nsenter --net=/run/netns/blue " .. H.CONNTRACK .. " -L 2>/dev/null"))
facts.own_dump = lines_of(own)
facts.own_conntrack = H.lines(H.must(H.CONNTRACK .. " -L 2>/dev/null"))
facts.all = drain(all, 3)
facts.plain = drain(plain, 1)
facts.ns_after = H.must("readlink /proc/" .. H.pid() .. "/ns/net")
assert(own:delete{ src = "10.32.0.1" } == 1)
io.write(cjson.encode(facts))
]=]

  it("open{ netns = name } and all_netns: events of blue come tagged nsid = 5", function()
    local cjson = require "cjson"
    local tmp = tmpdir()
    H.write_file(tmp .. "/child.lua", CHILD)
    H.sysctl("nf_conntrack_events", 1)
    local script = table.concat({
      "mount -t tmpfs tmpfs /run",
      "ip netns add blue",
      "ip netns set blue 5",
      "nsenter --net=/run/netns/blue sh -c 'echo 1 > /proc/sys/net/netfilter/nf_conntrack_events'",
      "LUA_PATH=" .. H.quote(package.path .. ";;") .. " LUA_CPATH=" ..
        H.quote(package.cpath .. ";;") .. " lua5.4 " .. tmp .. "/child.lua",
    }, " && ")
    local out, status, err = H.run("unshare -m sh -c " .. H.quote(script))
    H.run("rm -rf " .. H.quote(tmp))
    assert(status == 0, err)
    local facts = cjson.decode(out)
    -- the named namespace (and its /run/netns path) is blue's table, not ours
    assert.equal(2, #facts.blue_dump)
    assert.same(H.sorted(facts.blue_conntrack), H.sorted(facts.blue_dump))
    assert.same(H.sorted(facts.blue_conntrack), H.sorted(facts.by_path_dump))
    assert.same(H.sorted(facts.own_conntrack), H.sorted(facts.own_dump))
    assert.is_nil(table.concat(facts.own_dump, "\n"):find("10.31.0.", 1, true))
    assert.equal(facts.ns_before, facts.ns_after)
    -- all_netns: blue's two events with nsid 5, ours without nsid
    local tagged, untagged = {}, {}
    for _, e in ipairs(facts.all) do
      assert.equal("new", e.kind)
      if e.nsid == nil then untagged[#untagged + 1] = e.line
      else
        assert.equal(5, e.nsid, e.line)
        tagged[#tagged + 1] = e.line
      end
    end
    assert.equal(2, #tagged)
    for _, line in ipairs(tagged) do assert.truthy(line:find("src=10.31.0.", 1, true), line) end
    assert.equal(1, #untagged)
    assert.truthy(untagged[1]:find("src=10.32.0.1 ", 1, true), untagged[1])
    -- without all_netns only our own namespace's event arrives
    assert.equal(1, #facts.plain)
    assert.is_nil(facts.plain[1].nsid)
    assert.truthy(facts.plain[1].line:find("src=10.32.0.1 ", 1, true), facts.plain[1].line)
    assert.same({}, ct("-L"))  -- the child removed what it made here
  end)
end)
