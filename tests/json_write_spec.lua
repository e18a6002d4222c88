-- h:write(file, { json = true }) and `ct-lua conntrack -L -o json`: the JSON lines that C
-- writes (core/json_print.c) against json.flow, the Lua reference, on a table with every
-- kind of entry this kernel keeps: real TCP and UDP traffic over IPv4 and IPv6 (counters,
-- timestamps, TIME_WAIT, an ftp helper, an nft DNAT), and made ones (each TCP state, udplite,
-- sctp with tags, dccp, gre, icmp, icmpv6, an unknown protocol, marks, zones, NAT set up by
-- the kernel, labels named by a labelmap and unnamed, TCP window flags).
--
-- Two dumps of a table that does not change list it in the same order, and their lines
-- differ only in the countdown timeout; through a predicate, json.flow and the written line
-- come from the very same parsed entry and must be equal byte for byte. The kernel no longer
-- dumps a secmark (CTA_SECMARK is obsolete) and gives a security context only under an
-- active LSM, so no entry here has either; the fuzz target fuzz_dump compares the two
-- encoders on such entries, and on strings that need escapes, which no kernel entry here has.
local H = require "helpers"
local conntrack = require "conntrack"
local json = require "conntrack.json"
local cjson = require "cjson"
local cli = require "conntrack.cli"

-- label storage for the entries made after it, an ftp helper on port 21, a DNAT
local RULES = [[
table inet ct_lua_json_write {
  ct helper ftp-21 {
    type "ftp" protocol tcp
  }
  chain out {
    type filter hook output priority 0;
    ct label 1 counter
    tcp dport 21 ct helper set "ftp-21"
  }
}
table ip ct_lua_json_nat {
  chain out {
    type nat hook output priority -100;
    ip daddr 10.7.0.99 tcp dport 80 dnat to 10.7.0.2:8080
  }
}]]

-- proto, address and port of each exchange with the peer; to_port: where the client sends
local EXCHANGES = {
  { "tcp", "10.7.0.2", 8080 }, { "udp", "10.7.0.2", 5353 },
  { "tcp", "fd07::2", 8081 }, { "udp", "fd07::2", 5354 },
  { "tcp", "10.7.0.2", 21 },                      -- the ftp helper
  { "tcp", "10.7.0.99", 8080, 80 },               -- DNAT to 10.7.0.2:8080
}

--- Labels 0..127: the first 100 named (the long names make that entry's line longer than
-- the 8 KiB buffer that C starts with; their order by name is not their bits' order), the
-- last 28 without a name.
local function labelmap_text()
  local lines = { "0 blue", "1 green", "5 red" }
  for bit = 2, 99 do
    if bit ~= 5 then
      lines[#lines + 1] = ("%d l%03dx%s"):format(bit, bit * 37 % 100, ("x"):rep(90))
    end
  end
  return table.concat(lines, "\n") .. "\n"
end

local function all_labels()
  local bits = {}
  for bit = 0, 127 do bits[#bits + 1] = bit end
  return bits
end

local function tcp(n, state, extra)
  local spec = { proto = "tcp", src = "10.3.0.1", dst = "10.3.0.2", sport = 1000 + n,
                 dport = 443, state = state, timeout = 3600 }
  for k, v in pairs(extra or {}) do spec[k] = v end
  return spec
end

local SPECS = {
  tcp(1, "ESTABLISHED", { status = "ASSURED,SEEN_REPLY", mark = 7,
                          tcp_flags = { SACK_PERM = true, BE_LIBERAL = true } }),
  tcp(2, "SYN_SENT"), tcp(3, "SYN_RECV"), tcp(4, "FIN_WAIT"), tcp(5, "CLOSE_WAIT"),
  tcp(6, "LAST_ACK"), tcp(7, "TIME_WAIT"), tcp(8, "CLOSE"), tcp(9, "SYN_SENT2"),
  tcp(10, "ESTABLISHED", { src = "2001:db8::1", dst = "2001:db8::2", mark = 0xffffffff }),
  tcp(11, "ESTABLISHED", { snat = "10.9.0.1:4000", dnat = "10.9.0.2:8443" }),
  { proto = "udp", src = "10.3.1.1", dst = "10.3.1.2", sport = 53, dport = 53, timeout = 3600,
    zone = 3 },
  { proto = "udp", src = "10.3.1.1", dst = "10.3.1.2", sport = 54, dport = 53, timeout = 3600,
    orig_zone = 4 },
  { proto = "udp", src = "10.3.1.1", dst = "10.3.1.2", sport = 55, dport = 53, timeout = 3600,
    reply_zone = 5 },
  { proto = "udp", src = "fd00::1", dst = "fd00::2", sport = 56, dport = 53, timeout = 3600,
    snat = "[fd00::9]:5300" },
  { proto = "udp", src = "10.3.1.1", dst = "10.3.1.3", sport = 57, dport = 57, timeout = 3600,
    labels = { "red", 70, "blue", 3 } },
  { proto = "udp", src = "10.3.1.1", dst = "10.3.1.4", sport = 58, dport = 58, timeout = 3600,
    labels = all_labels() },
  { proto = "udplite", src = "10.3.2.1", dst = "10.3.2.2", sport = 1, dport = 2, timeout = 3600 },
  { proto = "sctp", src = "10.3.3.1", dst = "10.3.3.2", sport = 10, dport = 20,
    state = "ESTABLISHED", vtag = 10, reply_vtag = 11, timeout = 3600 },
  { proto = "dccp", src = "10.3.4.1", dst = "10.3.4.2", sport = 30, dport = 40, timeout = 3600 },
  { proto = "gre", src = "10.3.5.1", dst = "10.3.5.2", srckey = 0x10, dstkey = 0x20,
    timeout = 3600 },
  { proto = "icmp", src = "10.3.6.1", dst = "10.3.6.2", icmp_type = 8, icmp_code = 0,
    icmp_id = 77, timeout = 3600 },
  { proto = "icmpv6", src = "::ffff:1.2.3.4", dst = "fe80::1", icmp_type = 128, icmp_code = 0,
    icmp_id = 78, timeout = 3600 },
  { proto = 200, src = "10.3.7.1", dst = "10.3.7.2", timeout = 3600 },
}

--- A JSON line with its countdown timeout replaced: what two dumps of one table share.
local function steady(line)
  return (line:gsub('"timeout":%d+', '"timeout":T', 1))
end

local function steady_lines(text)
  local lines = {}
  for line in text:gmatch("[^\n]+") do lines[#lines + 1] = steady(line) end
  return lines
end

describe("h:write in JSON", function()
  local h, peer, dir, path

  --- h:write(file, format, filter, options) into a fresh file: its text, then what
  -- h:write returned.
  local function written(format, filter, options)
    local f = assert(io.open(path, "w"))
    local res = table.pack(h:write(f, format, filter, options))
    f:close()
    return H.read_file(path), table.unpack(res, 1, res.n)
  end

  --- json.flow of every entry of a dump, one line each.
  local function reference(filter, options)
    local lines = {}
    for f in h:dump(filter, options) do lines[#lines + 1] = json.flow(f) .. "\n" end
    return table.concat(lines), #lines
  end

  lazy_setup(function()
    H.reset()
    H.track_traffic()
    H.nft(RULES)
    dir = H.must("mktemp -d"):match("%S+")
    path = dir .. "/out.json"
    H.write_file(dir .. "/connlabel.conf", labelmap_text())
    h = assert(conntrack.open{ labelmap = dir .. "/connlabel.conf" })
    peer = H.peer()
    for _, x in ipairs(EXCHANGES) do
      assert.equal("pong\n", H.exchange(x[1], peer, x[3], x[2], x[4]))
    end
    for i, spec in ipairs(SPECS) do assert(h:create(spec), "spec " .. i) end
    -- nothing expires while the spec runs
    assert(h:update({}, { timeout = 3600 }))
  end)

  lazy_teardown(function()
    if h then h:close() end
    if peer then peer:close() end
    if dir then H.run("rm -rf " .. H.quote(dir)) end
    H.reset()
  end)

  it("has every kind of entry the spec is about", function()
    local text, n = written{ json = true }
    local have = { proto = {}, family = {}, state = {} }
    local longest = 0
    for line in text:gmatch("[^\n]+") do
      local t = cjson.decode(line)
      longest = math.max(longest, #line)
      have.proto[t.proto] = true
      have.family[t.family] = true
      if t.state then have.state[t.state] = true end
      for _, k in ipairs{ "helper", "labels", "start", "vtag", "srckey", "icmp_id" } do
        if t[k] ~= nil then have[k] = true end
      end
      if (t.packets or 0) > 0 and (t.reply_bytes or 0) > 0 then have.counters = true end
      if t.snat then have.snat = true end
      if t.dnat then have.dnat = true end
      if t.mark ~= 0 then have.mark = true end
      for _, k in ipairs{ "zone", "orig_zone", "reply_zone" } do
        if t[k] ~= 0 then have[k] = true end
      end
      if t.labels and #t.labels > 0 and type(t.labels[#t.labels]) == "number" and
         type(t.labels[1]) == "string" then
        have.mixed_labels = true
      end
      if t.tcp_flags and #t.tcp_flags > 1 then have.tcp_flags = true end
    end
    assert.is_true(n >= #EXCHANGES + #SPECS, "entries: " .. n)
    assert.equal((h:count()), n)
    for _, p in ipairs{ "tcp", "udp", "udplite", "sctp", "dccp", "gre", "icmp", "icmpv6" } do
      assert.is_true(have.proto[p], p)
    end
    assert.is_true(have.proto[200], "an unknown protocol, written as a number")
    assert.is_true(have.family.ipv4 and have.family.ipv6)
    for _, s in ipairs{ "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT", "CLOSE_WAIT",
                        "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2" } do
      assert.is_true(have.state[s], s)
    end
    for _, k in ipairs{ "helper", "labels", "mixed_labels", "start", "counters", "snat", "dnat",
                        "mark", "zone", "orig_zone", "reply_zone", "vtag", "srckey",
                        "icmp_id", "tcp_flags" } do
      assert.is_true(have[k], k)
    end
    assert.is_true(longest > 8192, "a line longer than C's first buffer: " .. longest)
  end)

  it("writes json.flow's line for every entry, byte for byte (through a predicate)", function()
    local want = {}
    local text, n = written({ json = true }, function(f)
      want[#want + 1] = json.flow(f) .. "\n"
      return true
    end)
    assert.equal(#want, n)
    assert.equal((h:count()), n)
    assert.equal(table.concat(want), text)
  end)

  it("writes only the entries its predicate keeps", function()
    local want = {}
    local text, n = written({ json = true }, function(f)
      if f.proto ~= "tcp" then return false end
      want[#want + 1] = json.flow(f) .. "\n"
      return true
    end)
    assert.is_true(n > 10)
    assert.equal(#want, n)
    assert.equal(table.concat(want), text)
  end)

  for _, case in ipairs{
    { "the whole table", nil },
    { "a family (the kernel's)", { family = "ipv6" } },
    { "a mark (the kernel's)", { mark = "0x7/0xff" } },
    { "a protocol and port", { proto = "tcp", dport = 443 } },
    { "a CIDR source (C)", { src = "10.7.0.0/24" } },
    { "the helper", { helper = "ftp" } },
    { "a label", { labels = { "blue" } } },
    { "a zone", { zone = 3 } },
    { "a status", { status = "ASSURED,SEEN_REPLY" } },
    { "a predicate with terms", { proto = "udp", function(f) return f.labels ~= nil end } },
  } do
    it("writes what json.flow gives for each entry of a dump: " .. case[1], function()
      local text, n = written({ json = true }, case[2])
      local want, count = reference(case[2])
      assert.is_true(count > 0, "the filter matches nothing")
      assert.equal(count, n)
      assert.same(steady_lines(want), steady_lines(text))
    end)
  end

  it("takes h:dump's options", function()
    local text, n = written({ json = true }, nil, { table = "dying" })
    local want, count = reference(nil, { table = "dying" })
    assert.same({ want, count }, { text, n })
  end)

  it("writes the header before the first line only", function()
    local text, n = written({ json = true, header = "[\n" }, { proto = "gre" })
    assert.equal(1, n)
    assert.equal(steady("[\n" .. reference{ proto = "gre" }), steady(text))
  end)

  it("refuses the text format's options beside json; json = false is the text", function()
    for _, k in ipairs{ "xml", "extended", "id", "ktimestamp", "labels" } do
      assert.equal("bad argument #2 to 'write' (option 'json' takes no other option of " ..
                   "flow:format)",
                   H.raised(function() return h:write(io.stdout, { json = true, [k] = true }) end))
    end
    assert.equal("bad argument #2 to 'write' (option 'json' takes no other option of " ..
                 "flow:format)",
                 H.raised(function() return h:write(io.stdout, { json = true, event = "new" }) end))
    local text = written({ json = false }, { proto = "gre" })
    local want = H.dump_lines(h, { proto = "gre" })
    assert.equal(1, #want)
    assert.equal(H.normalize(want[1]) .. "\n", H.normalize(text))
  end)

  it("returns an output error, and frees its dump at once", function()
    local base = H.fd_count()
    -- the lines outgrow stdio's buffer, so the write fails inside the loop
    local full = assert(io.open("/dev/full", "w"))
    local n, msg, errno = h:write(full, { json = true })
    assert.same({ nil, "conntrack.write: No space left on device", 28 }, { n, msg, errno })
    assert.equal(base + 1, H.fd_count())
    full:close()
    local readonly = assert(io.open(path, "r"))
    n, msg, errno = h:write(readonly, { json = true })
    readonly:close()
    assert.same({ nil, "conntrack.write: Bad file descriptor", 9 }, { n, msg, errno })
    assert.equal(base, H.fd_count())
  end)

  describe("ct-lua conntrack -L -o json", function()
    --- What the command prints through cli.main in this process, to an output that is not
    -- a Lua file: the Lua path (json.flow per entry).
    local function in_process(...)
      local function sink()
        local s = { parts = {} }
        function s:write(...)
          for _, v in ipairs{ ... } do self.parts[#self.parts + 1] = v end
          return self
        end
        return s
      end
      local out, err = sink(), sink()
      local status = cli.main({ [0] = "conntrack", ... }, out, err)
      return table.concat(out.parts), status, table.concat(err.parts)
    end

    for _, args in ipairs{ { "-L", "-o", "json" }, { "-L", "-p", "udp", "-o", "json" },
                           { "-L", "-f", "ipv6", "-o", "json" } } do
      local line = table.concat(args, " ")
      it("prints in C (to a file) what it prints through json.flow: " .. line, function()
        local out, status, err = H.run("./ct-lua conntrack " .. line)
        local want, want_status, want_err = in_process(table.unpack(args))
        assert.equal(0, status)
        assert.same({ want_status, want_err }, { status, err })
        assert.is_true(#want > 0)
        assert.same(steady_lines(want), steady_lines(out))
      end)
    end
  end)
end)
