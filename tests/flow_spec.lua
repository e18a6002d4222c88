-- Flows: every field of every protocol, zones, marks, status, labels and address
-- filters, each compared with /usr/sbin/conntrack (1.4.7) listing the same table.
--
-- Entries are made with `conntrack -I`, with h:create and with real traffic to a peer
-- namespace. Our values are matched with conntrack's by the entry id
-- (`-L -o extended,id`); lines are compared after H.normalize, which hides only the
-- countdown timeout, delta-time and use.
local H = require "helpers"
local conntrack = require "conntrack"

-- ---------------------------------------------------------------------------
-- Reading conntrack's output
-- ---------------------------------------------------------------------------

-- conntrack's names for the words of a tuple; the reply tuple gets "reply_".
local TUPLE_WORDS = {
  src = "src", dst = "dst", sport = "sport", dport = "dport",
  type = "icmp_type", code = "icmp_code", id = "icmp_id",
  srckey = "srckey", dstkey = "dstkey", packets = "packets", bytes = "bytes",
}
local ZONE_WORDS = { ["zone-orig"] = "orig_zone", ["zone-reply"] = "reply_zone" }
-- Everything after mark= belongs to the entry, not to a direction.
local ENTRY_WORDS = {
  mark = "mark", secmark = "secmark", secctx = "secctx", zone = "zone", use = "use",
  id = "id", helper = "helper", labels = "labels", ["delta-time"] = "delta_time",
}

local function label_set(text)
  local set = {}
  for name in text:gmatch("[^,]+") do set[name] = true end
  return set
end

--- Parses one `conntrack -L -o extended[,id][,labels]` line into
-- { line, family, l4name, l4num, timeout, state, flags = {ASSURED=..}, words = {field = value} }.
local function parse_extended(line)
  local words = {}
  for w in line:gmatch("%S+") do words[#words + 1] = w end
  local e = { line = line, family = words[1], l4name = words[3], l4num = tonumber(words[4]),
              timeout = tonumber(words[5]), flags = {}, words = {} }
  local first = 6
  if not words[6]:find("=", 1, true) then  -- tcp, sctp and dccp print a state here
    e.state, first = words[6], 7
  end
  local section = "orig"
  for i = first, #words do
    local w = words[i]
    local flag = w:match("^%[(.+)%]$")
    local key, value = w:match("^([%w%-]+)=(.*)$")
    if flag then
      e.flags[flag] = true
    else
      assert(key, "cannot parse '" .. w .. "' in: " .. line)
      -- the second src= starts the reply tuple; mark= (always printed) ends both
      if key == "src" and e.words.src then section = "reply" end
      if key == "mark" then section = "entry" end
      local name
      if section == "entry" then
        name = ENTRY_WORDS[key]
      elseif ZONE_WORDS[key] then
        name = ZONE_WORDS[key]
      elseif TUPLE_WORDS[key] then
        name = (section == "reply" and "reply_" or "") .. TUPLE_WORDS[key]
      end
      assert(name, "unexpected word '" .. w .. "' in: " .. line)
      if name == "labels" then
        e.words.labels = label_set(value)
      else
        e.words[name] = math.tointeger(tonumber(value)) or value  -- 0x10 keys are numbers too
      end
    end
  end
  assert(section == "entry", "no mark= in: " .. line)
  return e
end

--- conntrack -L ARGS, which must succeed; returns its lines.
local function oracle(args)
  local lines, status, err = H.conntrack("-L " .. args)
  assert(status == 0, err)
  return lines
end

--- conntrack -L -o extended,id ARGS, parsed, by entry id.
local function oracle_entries(args)
  local by_id = {}
  local lines = oracle("-o extended,id " .. (args or ""))
  local taken = os.time()  -- when conntrack counted delta-time
  for _, line in ipairs(lines) do
    local e = parse_extended(line)
    e.taken = taken
    by_id[e.words.id] = e
  end
  return by_id
end

--- conntrack -L -o id: the default line of each entry, by id (the id itself removed).
local function oracle_default_lines()
  local by_id = {}
  for _, line in ipairs(oracle("-o id")) do
    local id = assert(line:match(" id=(%d+)$"), line)
    by_id[tonumber(id)] = line:gsub(" id=%d+$", "")
  end
  return by_id
end

--- conntrack -L -o xml's <flow> elements, by entry id.
local function oracle_xml_flows()
  local by_id = {}
  for _, line in ipairs(oracle("-o xml")) do
    local id = line:match("^<flow>.*<id>(%d+)</id>")
    if id then by_id[tonumber(id)] = line end
  end
  return by_id
end

local keys_of = H.sorted_keys

local flows_by_id = H.flows_by_id

--- The one entry that the filter selects, read live: its id.
local function only_id(h, filter)
  local ids = keys_of(flows_by_id(h, filter))
  assert.equal(1, #ids, "the case's filter must select exactly one entry")
  return ids[1]
end

local function insert(args)
  H.must(H.CONNTRACK .. " -I " .. args)
end

local function bswap32(n)
  return ((n & 0xff) << 24) | ((n >> 8 & 0xff) << 16) | ((n >> 16 & 0xff) << 8) | (n >> 24 & 0xff)
end

local function merged(a, b)
  local t = {}
  for k, v in pairs(a) do t[k] = v end
  for k, v in pairs(b or {}) do t[k] = v end
  return t
end

local function tmpdir()
  return (H.must("mktemp -d"):gsub("%s+$", ""))
end

local write_file = H.write_file

--- The error message of fn(...), which must raise.
local function error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

-- ---------------------------------------------------------------------------
-- What a flow must say, given conntrack's line
-- ---------------------------------------------------------------------------

local FIELD_NAMES = {}
for _, field in ipairs(conntrack.fields) do
  if field.read then FIELD_NAMES[#FIELD_NAMES + 1] = field.name end
end

--- The value of every field that conntrack's line determines; absent means nil.
local function expected_fields(e)
  local want = merged(e.words)
  want.delta_time = nil
  want.family = e.family
  want.proto = e.l4name == "unknown" and e.l4num or e.l4name
  want.state = e.state
  want.timeout = e.timeout
  -- the kernel sends no zone attribute for zone 0; our flows read it as 0
  want.zone = want.zone or 0
  want.orig_zone = want.orig_zone or 0
  want.reply_zone = want.reply_zone or 0
  -- NAT shows as a reply tuple that is not the inverse of the original one
  want.snat = want.reply_dst ~= want.src
  want.dnat = want.reply_src ~= want.dst
  if e.l4name == "dccp" then
    -- No DCCP tracker in this kernel (cli doc §14): the entry is generic and the kernel
    -- sends no ports; libnetfilter_conntrack prints its zeroed tuple as sport=0 dport=0.
    assert.equal(0, want.sport, "conntrack prints zero ports for generic dccp")
    want.sport, want.dport, want.reply_sport, want.reply_dport = nil, nil, nil, nil
  end
  return want
end

--- Every field of flow f against conntrack's parsed line e. vtags: the SCTP tags that
-- the flow should have (conntrack -L does not print them), or nil. tcp_flags: the TCP
-- window-tracking flags both directions should have (no output of conntrack shows
-- them), or nil when only their presence on a TCP entry is known.
local function assert_fields_match(f, e, vtags, tcp_flags)
  local want = expected_fields(e)
  local where = " in: " .. e.line
  for _, name in ipairs(FIELD_NAMES) do
    local have = f[name]
    if name == "timeout" then
      -- counts down between our dump and conntrack's
      assert.is_true(math.abs(have - want.timeout) <= 1, "timeout " .. tostring(have) .. where)
    elseif name == "status" then
      -- conntrack shows ASSURED and UNREPLIED (SEEN_REPLY clear); every listed entry
      -- is CONFIRMED
      assert.same({ ASSURED = e.flags.ASSURED, SEEN_REPLY = not e.flags.UNREPLIED or nil,
                    CONFIRMED = true },
                  { ASSURED = have.ASSURED, SEEN_REPLY = have.SEEN_REPLY,
                    CONFIRMED = have.CONFIRMED }, "status" .. where)
    elseif name == "start" then
      -- shown only as delta-time = now - start, in seconds
      if e.words.delta_time then
        local age = (e.taken or os.time()) - have // 1000000000
        assert.is_true(age >= e.words.delta_time - 1 and age <= e.words.delta_time + 5,
                       "start " .. tostring(have) .. where)
      else
        assert.is_nil(have, "start" .. where)
      end
    elseif name == "vtag" or name == "reply_vtag" then
      assert.equal(vtags and vtags[name], have, name .. where)
    elseif name == "tcp_flags" or name == "reply_tcp_flags" then
      assert.equal(e.l4name == "tcp" and "table" or "nil", type(have), name .. where)
      if tcp_flags then assert.same(tcp_flags, have, name .. where) end
    else
      assert.same(want[name], have, name .. where)
    end
  end
end

--- The SCTP tags conntrack -L -o save prints for the entry going to dst, as the flow
-- must show them. conntrack 1.4.7 treats ATTR_SCTP_VTAG_* as big-endian (htonl on
-- --orig-vtag, ntohl in -o save), but libnetfilter_conntrack already converts it: the
-- kernel's tag, which our flow shows, is the byte-swap of what conntrack's CLI says.
local function vtags_from_save(dst)
  for _, line in ipairs(oracle("-o save -p sctp")) do
    if line:find("-d " .. dst .. " ", 1, true) then
      local orig, reply = line:match("%-%-orig%-vtag (%d+) %-%-reply%-vtag (%d+)")
      assert(orig, "no vtags in: " .. line)
      return { vtag = bswap32(tonumber(orig)), reply_vtag = bswap32(tonumber(reply)) }
    end
  end
  error("no sctp entry to " .. dst .. " in conntrack -L -o save")
end

--- The TCP window-tracking flags of an entry made by case c: conntrack -I turns tracking
-- off (BE_LIBERAL, SACK_PERM, CLOSE_INIT from TIME_WAIT on), h:create sets none; real
-- traffic sets what the packets said (nil: not predicted).
local LATE_STATES = { TIME_WAIT = true, CLOSE = true, SYN_SENT2 = true }
local function expected_tcp_flags(entry, e)
  if e.l4name ~= "tcp" or not entry.case then return nil end
  if entry.case.spec then return {} end
  return { BE_LIBERAL = true, SACK_PERM = true, CLOSE_INIT = LATE_STATES[e.state] }
end

-- ---------------------------------------------------------------------------
-- 1. Every field of every protocol
-- ---------------------------------------------------------------------------

-- How each entry is made: `cli` is given to conntrack -I, `spec` to h:create; both get
-- src/dst of the family added. families defaults to both.
local CASES = {
  { name = "tcp SYN_SENT2 with a mark",
    cli = "-p tcp --sport 1001 --dport 80 --state SYN_SENT2 -m 5 -t 100" },
  { name = "tcp ESTABLISHED, assured",
    cli = "-p tcp --sport 1002 --dport 443 --state ESTABLISHED -u ASSURED -t 200" },
  { name = "tcp TIME_WAIT, seen reply",
    cli = "-p tcp --sport 1003 --dport 25 --state TIME_WAIT -u SEEN_REPLY -t 100" },
  { name = "tcp SYN_RECV", cli = "-p tcp --sport 1004 --dport 22 --state SYN_RECV -t 100" },
  { name = "udp", cli = "-p udp --sport 53 --dport 53 -t 30" },
  { name = "udplite", cli = "-p udplite --sport 7 --dport 8 -t 40" },
  { name = "sctp ESTABLISHED with vtags",
    cli = "-p sctp --sport 3868 --dport 3868 --state ESTABLISHED --orig-vtag 11 --reply-vtag 22 -t 100" },
  { name = "gre with keys", cli = "-p gre --srckey 0x10 --dstkey 0x20 -t 100" },
  { name = "icmp echo", families = { 4 },
    cli = "-p icmp --icmp-type 8 --icmp-code 0 --icmp-id 77 -t 30" },
  { name = "icmp timestamp, code 1", families = { 4 },
    cli = "-p icmp --icmp-type 13 --icmp-code 1 --icmp-id 78 -t 30" },
  { name = "icmpv6 echo", families = { 6 },
    cli = "-p icmpv6 --icmpv6-type 128 --icmpv6-code 0 --icmpv6-id 79 -t 30" },
  { name = "icmpv6 node information query", families = { 6 },
    cli = "-p icmpv6 --icmpv6-type 139 --icmpv6-code 0 --icmpv6-id 80 -t 30" },
  { name = "dccp (generic on this kernel)",
    cli = "-p dccp --sport 5001 --dport 5002 --state OPEN --role client -t 100" },
  { name = "unknown protocol 200", cli = "-p 200 -t 100" },
  { name = "tcp CLOSE_WAIT by create",
    spec = { proto = "tcp", sport = 2001, dport = 8080, state = "CLOSE_WAIT", timeout = 150,
             mark = 9 } },
  { name = "udp by create, assured and replied",
    spec = { proto = "udp", sport = 2002, dport = 123, timeout = 60,
             status = "ASSURED,SEEN_REPLY" } },
  { name = "sctp by create with vtags",
    spec = { proto = "sctp", sport = 2003, dport = 2905, state = "COOKIE_WAIT", vtag = 1234,
             reply_vtag = 5678, timeout = 100 } },
  { name = "gre by create", spec = { proto = "gre", srckey = 0x30, dstkey = 0x40, timeout = 100 } },
  { name = "icmp by create", families = { 4 },
    spec = { proto = "icmp", icmp_type = 8, icmp_code = 0, icmp_id = 91, timeout = 30 } },
  { name = "icmpv6 by create", families = { 6 },
    spec = { proto = "icmpv6", icmp_type = 128, icmp_code = 0, icmp_id = 92, timeout = 30 } },
  { name = "protocol 200 by create", spec = { proto = 200, timeout = 100 } },
}

-- Real traffic through the veth pair (H.peer: 10.7.0.2 / fd07::2 over there): counters,
-- SEEN_REPLY and states that only packets give. The selectors skip the attempts made
-- before the peer's server listened.
local PEER = { [4] = "10.7.0.2", [6] = "fd07::2" }
local TRAFFIC = {
  { name = "tcp after a real exchange", port = 7001, exchange = "tcp_exchange",
    select = { proto = "tcp", state = "TIME_WAIT" } },
  { name = "udp after a real exchange", port = 7101, exchange = "udp_exchange",
    select = { proto = "udp", status = { SEEN_REPLY = true } } },
}

--- CASES and TRAFFIC, one entry per family, each with its name, addresses and selector.
local function expand_entries()
  local entries = {}
  for i, c in ipairs(CASES) do
    for _, fam in ipairs(c.families or { 4, 6 }) do
      local src = fam == 4 and "10.1.0.1" or "fd01::1"
      local dst = fam == 4 and ("10.1.1." .. i) or ("fd01::" .. (100 + i))
      entries[#entries + 1] = { name = c.name .. " (ipv" .. fam .. ")", case = c, src = src,
                                dst = dst, select = { dst = dst } }
    end
  end
  for _, t in ipairs(TRAFFIC) do
    for _, fam in ipairs({ 4, 6 }) do
      entries[#entries + 1] = { name = t.name .. " (ipv" .. fam .. ")", traffic = t,
                                port = t.port + fam, dst = PEER[fam],
                                select = merged(t.select, { dst = PEER[fam] }) }
    end
  end
  return entries
end
local ENTRIES = expand_entries()
local ENTRY_BY_NAME = {}
for _, entry in ipairs(ENTRIES) do ENTRY_BY_NAME[entry.name] = entry end

local function make_entry(h, entry, peer)
  local c = entry.case
  if c and c.cli then
    insert("-s " .. entry.src .. " -d " .. entry.dst .. " " .. c.cli)
  elseif c then
    assert(h:create(merged(c.spec, { src = entry.src, dst = entry.dst })))
  else
    assert(H[entry.traffic.exchange](peer, entry.port, entry.dst), "no answer from the peer")
  end
end

--- Waits until the filter matches an entry (TCP reaches TIME_WAIT after the last ACK).
local function wait_for(h, filter)
  for _ = 1, 100 do
    if next(flows_by_id(h, filter)) then return end
    H.run("sleep 0.02")
  end
  error("no entry reached the awaited state")
end

-- The formats h:write is checked in against format(): each names the entry's id.
local WRITE_FORMATS = { { id = true }, { extended = true, id = true, event = "new" },
                        { xml = true, id = true } }

--- h:write's lines by format (the index in WRITE_FORMATS), then by entry id. A dump
-- written without a filter is printed from its messages (core/entry.c), not from parsed
-- flows.
local function written_by_id(h)
  local by_format = {}
  for i, fmt in ipairs(WRITE_FORMATS) do
    local file = assert(io.tmpfile())
    assert(h:write(file, fmt))
    file:seek("set")
    by_format[i] = {}
    for line in file:lines() do
      -- the entry's id is the last (ICMP's id comes before it)
      local id = assert(line:match(".* id=(%d+)") or line:match(".*<id>(%d+)</id>"), line)
      by_format[i][tonumber(id)] = line
    end
    file:close()
  end
  return by_format
end

describe("flow fields of every protocol", function()
  local h, peer
  -- one snapshot: our dump, h:write's lines and conntrack's, by id
  local ours, written, lines, xml, theirs

  lazy_setup(function()
    H.reset()
    H.track_traffic()  -- counters, timestamps and tracking of the real traffic
    h = H.open()
    peer = H.peer()
    -- traffic first: it takes seconds, and the other entries' timeouts should not
    -- count down meanwhile
    for _, entry in ipairs(ENTRIES) do
      if entry.traffic then
        make_entry(h, entry, peer)
        wait_for(h, entry.select)
      end
    end
    for _, entry in ipairs(ENTRIES) do
      if not entry.traffic then make_entry(h, entry, peer) end
    end
    ours = flows_by_id(h)
    lines = oracle_default_lines()
    xml = oracle_xml_flows()
    theirs = oracle_entries()
    -- after conntrack's snapshot, so that ours and theirs stay seconds apart under
    -- valgrind (every field test compares timeouts)
    written = written_by_id(h)
  end)

  lazy_teardown(function()
    if peer then peer:close() end
    if h then h:close() end
  end)

  --- Our flow and conntrack's entry for one case, matched by id.
  local function both(entry)
    local id = only_id(h, entry.select)
    assert.is_not_nil(ours[id], "our snapshot lacks entry " .. id)
    assert.is_not_nil(theirs[id], "conntrack's snapshot lacks entry " .. id)
    return ours[id], theirs[id], id
  end

  for _, entry in ipairs(ENTRIES) do
    it(entry.name .. ": tostring is conntrack -L's line", function()
      local f, _, id = both(entry)
      assert.equal(H.normalize(lines[id]), H.normalize(tostring(f)))
    end)

    it(entry.name .. ": format() writes tostring's line (core/print.c equals libnfct's printer)",
       function()
      local f = both(entry)
      assert.equal(H.normalize(tostring(f)), H.normalize(f:format()))
    end)

    it(entry.name .. ": format{ xml = true } is conntrack -L -o xml's flow (core/print_xml.c " ..
       "or libnfct's printer)", function()
      local f, _, id = both(entry)
      assert.equal(H.normalize(xml[id]), H.normalize(f:format{ xml = true }))
    end)

    it(entry.name .. ": h:write's line (printed from the message) is format()'s", function()
      local f, _, id = both(entry)
      for i, fmt in ipairs(WRITE_FORMATS) do
        assert.equal(H.normalize(f:format(fmt)), H.normalize(written[i][id]))
      end
    end)

    it(entry.name .. ": every field is what conntrack -L -o extended,id shows", function()
      local f, e = both(entry)
      local vtags = e.l4name == "sctp" and vtags_from_save(entry.dst) or nil
      assert_fields_match(f, e, vtags, expected_tcp_flags(entry, e))
    end)

    if entry.case and entry.case.spec then
      it(entry.name .. ": create made what was asked", function()
        local f = both(entry)
        for key, value in pairs(entry.case.spec) do
          if key == "status" then
            for flag in value:gmatch("[^,]+") do assert.is_true(f.status[flag], flag) end
          elseif key == "timeout" then
            assert.is_true(f.timeout <= value and f.timeout >= value - 2, "timeout " .. f.timeout)
          else
            assert.equal(value, f[key], key)
          end
        end
      end)
    end
  end

  it("lists the same entries as conntrack, by id", function()
    assert.same(keys_of(theirs), keys_of(ours))
    -- the protocols that were asked for are really there, so no case went missing silently
    local protos = {}
    for _, f in pairs(ours) do protos[tostring(f.proto)] = true end
    assert.same({ "200", "dccp", "gre", "icmp", "icmpv6", "sctp", "tcp", "udp", "udplite" },
                keys_of(protos))
  end)

  it("totable and pairs give exactly the fields that reads give", function()
    for id, f in pairs(ours) do
      local t, from_pairs = f:totable(), {}
      for k, v in pairs(f) do from_pairs[k] = v end
      local from_reads = {}
      for _, name in ipairs(FIELD_NAMES) do from_reads[name] = f[name] end
      assert.same(from_reads, t, "totable of entry " .. id)
      assert.same(from_reads, from_pairs, "pairs of entry " .. id)
    end
  end)

  it("each field read from a dump's flow (its message's index) is what its parse gives",
     function()
    -- A dump's flow reads most fields from its message and is parsed by libnfct only
    -- for the others, or by tostring (libnfct's own printer): each field is read
    -- first from fresh flows, then again once tostring parsed them.
    local compared = 0
    for _, name in ipairs(FIELD_NAMES) do
      for f in h:dump() do
        local before = f[name]
        local line = tostring(f)
        assert.same(before, f[name], name .. " of " .. line)
        compared = compared + 1
      end
    end
    assert.is_true(compared >= #FIELD_NAMES * #ENTRIES, "only " .. compared .. " reads")
  end)

  it("fields that do not apply to a protocol are nil", function()
    -- spot checks on top of the full comparison: a reader relies on these nils
    local function flow_of(name) return (both(ENTRY_BY_NAME[name])) end
    local icmp = flow_of("icmp echo (ipv4)")
    local tcp = flow_of("tcp SYN_SENT2 with a mark (ipv4)")
    local gre = flow_of("gre with keys (ipv6)")
    local other = flow_of("unknown protocol 200 (ipv4)")
    assert.is_nil(icmp.sport)
    assert.is_nil(icmp.state)
    assert.is_nil(tcp.srckey)
    assert.is_nil(tcp.icmp_type)
    assert.is_nil(tcp.vtag)
    assert.is_nil(gre.dport)
    assert.is_nil(other.sport)
    assert.is_nil(other.reply_icmp_id)
    assert.is_nil(tcp.stop)  -- a live entry has no end
  end)

  it("reading an unknown field raises, naming the field", function()
    local f = select(2, next(ours))
    assert.matches("no field 'dprot'", error_of(function() return f.dprot end), 1, true)
  end)

  it("assigning to a flow raises, naming the field", function()
    local f = both(ENTRY_BY_NAME["tcp SYN_SENT2 with a mark (ipv4)"])
    local err = error_of(function() f.mark = 1 end)
    assert.matches("read-only", err, 1, true)
    assert.matches("'mark'", err, 1, true)
    assert.equal(5, f.mark)  -- the flow kept its value
  end)
end)

-- ---------------------------------------------------------------------------
-- 2. Zones
-- ---------------------------------------------------------------------------

describe("zones", function()
  local h
  local UDP = "-p udp -s 10.2.0.1 -d 10.2.0.2 --sport 100 -t 100 "
  local function tuple(dport, extra)
    return merged({ proto = "udp", src = "10.2.0.1", dst = "10.2.0.2", sport = 100,
                    dport = dport }, extra)
  end
  -- dport -> the zones the entry has
  local ZONED = {
    { dport = 200, args = "-w 9", zones = { zone = 9, orig_zone = 0, reply_zone = 0 } },
    { dport = 201, args = "--orig-zone 3", zones = { zone = 0, orig_zone = 3, reply_zone = 0 } },
    { dport = 202, args = "--reply-zone 4", zones = { zone = 0, orig_zone = 0, reply_zone = 4 } },
    { dport = 203, args = "", zones = { zone = 0, orig_zone = 0, reply_zone = 0 } },
  }

  lazy_setup(function()
    H.reset()
    h = H.open()
    for _, z in ipairs(ZONED) do insert(UDP .. "--dport " .. z.dport .. " " .. z.args) end
    -- the same tuple twice, in zone 0 and zone 9: only the zone tells them apart
    insert(UDP .. "--dport 204")
    insert(UDP .. "--dport 204 -w 9")
    insert("-p tcp -s fd02::1 -d fd02::2 --sport 1 --dport 2 --state ESTABLISHED -t 100 -w 9")
    assert(h:create(tuple(205, { zone = 9, timeout = 100 })))
  end)

  lazy_teardown(function() h:close() end)

  --- conntrack's id of the udp entry with this dport in the listing of ARGS.
  local function oracle_id(dport, args)
    for id, e in pairs(oracle_entries(args)) do
      if e.words.dport == dport then return id end
    end
  end

  it("reads each entry's zones as conntrack shows them", function()
    local theirs = oracle_entries("-p udp")
    for _, z in ipairs(ZONED) do
      local f = assert(flows_by_id(h, { dport = z.dport })[oracle_id(z.dport, "-p udp")])
      assert.same(z.zones, { zone = f.zone, orig_zone = f.orig_zone, reply_zone = f.reply_zone })
      assert_fields_match(f, theirs[f.id])
    end
  end)

  it("get of an entry in zone 9 needs the zone", function()
    local none, message, errno = h:get(tuple(200))
    assert.is_nil(none)
    assert.matches("No such file", message, 1, true)
    assert.equal(2, errno)
    local f = assert(h:get(tuple(200, { zone = 9 })))
    assert.equal(oracle_id(200, "-w 9"), f.id)
    assert.equal(9, f.zone)
  end)

  it("get of an entry with an original-direction zone needs that zone", function()
    assert.is_nil((h:get(tuple(201))))
    local f = assert(h:get(tuple(201, { orig_zone = 3 })))
    assert.equal(oracle_id(201, "--orig-zone 3"), f.id)
  end)

  it("get by the reply tuple finds an entry whose reply direction is in a zone", function()
    local f = assert(h:get{ proto = "udp", reply_src = "10.2.0.2", reply_dst = "10.2.0.1",
                            reply_sport = 202, reply_dport = 100, reply_zone = 4 })
    assert.equal(oracle_id(202, "--reply-zone 4"), f.id)
  end)

  it("get tells apart the same tuple in zone 0 and zone 9", function()
    local plain = assert(h:get(tuple(204)))
    local zoned = assert(h:get(tuple(204, { zone = 9 })))
    assert.equal(oracle_id(204, "-w 9"), zoned.id)
    assert.not_equal(zoned.id, plain.id)
    assert.equal(0, plain.zone)
  end)

  -- each dump filter against conntrack's filter of the same meaning
  local ZONE_FILTERS = {
    { filter = { zone = 9 }, args = "-w 9", count = 4 },
    { filter = { orig_zone = 3 }, args = "--orig-zone 3", count = 1 },
    { filter = { reply_zone = 4 }, args = "--reply-zone 4", count = 1 },
  }
  for _, c in ipairs(ZONE_FILTERS) do
    it("dump filter " .. c.args .. " lists what conntrack -L " .. c.args .. " lists", function()
      local mine = H.sorted(H.dump_lines(h, c.filter))
      assert.equal(c.count, #mine)
      assert.same(H.sorted(oracle(c.args)), mine)
    end)
  end
end)

-- ---------------------------------------------------------------------------
-- 2b. flow:key(), the name of an entry
-- ---------------------------------------------------------------------------

describe("flow:key()", function()
  local h
  -- One tuple in zone 0 and zone 9, an original-direction zone, and a tuple of each kind
  -- of layer 4 that key() reads differently (ports, ICMP fields, GRE keys, none).
  local SPECS = {
    { proto = "udp", src = "10.4.0.1", dst = "10.4.0.2", sport = 1, dport = 2, timeout = 100 },
    { proto = "udp", src = "10.4.0.1", dst = "10.4.0.2", sport = 1, dport = 2, timeout = 100,
      zone = 9 },
    { proto = "udp", src = "10.4.0.1", dst = "10.4.0.2", sport = 1, dport = 3, timeout = 100,
      orig_zone = 3 },
    { proto = "icmp", src = "10.4.0.1", dst = "10.4.0.2", icmp_type = 8, icmp_code = 0,
      icmp_id = 7, timeout = 100 },
    { proto = "icmpv6", family = "ipv6", src = "fd04::1", dst = "fd04::2", icmp_type = 128,
      icmp_code = 0, icmp_id = 7, timeout = 100 },
    { proto = "tcp", family = "ipv6", src = "fd04::1", dst = "fd04::2", sport = 1, dport = 2,
      state = "ESTABLISHED", timeout = 100 },
    { proto = "gre", src = "10.4.0.1", dst = "10.4.0.2", srckey = 5, dstkey = 6, timeout = 100 },
    { proto = 200, src = "10.4.0.1", dst = "10.4.0.2", timeout = 100 },
  }

  lazy_setup(function()
    H.reset()
    H.sysctl("nf_conntrack_events", 1)
    h = H.open()
  end)

  lazy_teardown(function() h:close() end)

  --- kind -> { key -> the flow's line } of the events queued on ev (a request's events
  -- are queued before its answer).
  local function event_keys(ev)
    local by_kind = { new = {}, update = {}, destroy = {} }
    repeat
      local batch = assert(ev:recv(100))
      for _, e in ipairs(batch) do by_kind[e.kind][e.flow:key()] = tostring(e.flow) end
    until #batch == 0
    return by_kind
  end

  it("is the same by dump, get and every event, and differs for every entry of the table",
     function()
    local ev <close> = assert(h:listen())
    assert.equal(#SPECS, h:create(SPECS))
    local events = event_keys(ev)
    local dumped, n = {}, 0
    for f in h:dump() do
      n = n + 1
      dumped[f:key()] = tostring(f)
      assert.equal(f:key(), assert(h:get(f)):key(), "get of " .. tostring(f))
      -- read again from libnetfilter_conntrack's parse, which an update makes
      local key = f:key()
      assert(h:update(f, { mark = 1 }))
      assert.equal(key, f:key(), "parsed " .. tostring(f))
    end
    assert.equal(#SPECS, n)
    assert.equal(n, #keys_of(dumped), "two entries share a key")
    assert.same(keys_of(dumped), keys_of(events.new))
    -- what changes (here the mark and the timeout) is not part of the name
    assert.equal(#SPECS, h:update({ function() return true end }, { mark = 7, timeout = 50 }))
    assert.same(keys_of(dumped), keys_of(event_keys(ev).update))
    assert.equal(#SPECS, h:delete{ function() return true end })
    assert.same(keys_of(dumped), keys_of(event_keys(ev).destroy))
  end)
end)

-- ---------------------------------------------------------------------------
-- 3. Marks and masks
-- ---------------------------------------------------------------------------

describe("marks with masks", function()
  local h
  local MARKS = { 0, 5, 0x10, 0x15, 0x1f, 0x25, 0x105, 0x110, 0xff00, 0x10005, 0xabc0001c,
                  0xffffffff }
  local FIRST_PORT = 400

  lazy_setup(function()
    H.reset()
    h = H.open()
    for i, mark in ipairs(MARKS) do
      insert(string.format("-p udp -s 10.3.0.1 -d 10.3.0.2 --sport 1 --dport %d -t 100 -m %d",
                           FIRST_PORT + i, mark))
    end
    insert("-p udp -s fd03::1 -d fd03::2 --sport 1 --dport 2 -t 100 -m 5")
    assert(h:create{ proto = "udp", src = "10.3.0.1", dst = "10.3.0.2", sport = 2, dport = 2,
                     timeout = 100, mark = 0x1a })
  end)

  lazy_teardown(function() h:close() end)

  local MARK_FILTERS = {
    { filter = { mark = 5 }, args = "-m 5" },
    { filter = { mark = "0x10/0xf0" }, args = "-m 0x10/0xf0" },
    { filter = { mark = "0/0xff00" }, args = "-m 0/0xff00" },
    { filter = { mark = "0xc0000000/0xc0000000" }, args = "-m 0xc0000000/0xc0000000" },
  }
  for _, c in ipairs(MARK_FILTERS) do
    it("filter mark = " .. tostring(c.filter.mark) .. " gives conntrack -L " .. c.args, function()
      local mine = H.sorted(H.dump_lines(h, c.filter))
      local total = #H.dump_lines(h)
      assert.is_true(#mine > 0 and #mine < total, "the filter must select some, not all")
      assert.same(H.sorted(oracle(c.args)), mine)
    end)
  end

  it("update with mark = '0x3/0x0f' changes only the low four bits of the matches", function()
    local function marks_by_port()
      local t = {}
      for _, e in pairs(oracle_entries("-p udp")) do
        t[e.words.src .. " " .. e.words.sport .. ">" .. e.words.dport] = e.words.mark
      end
      return t
    end
    local before = marks_by_port()
    local want, matches = {}, 0
    for key, mark in pairs(before) do
      if mark & 0xf0 == 0x10 then
        want[key], matches = (mark & ~0xf & 0xffffffff) | 0x3, matches + 1
      else
        want[key] = mark
      end
    end
    assert.equal(matches, h:update({ mark = "0x10/0xf0" }, { mark = "0x3/0x0f" }))
    assert.equal(6, matches)  -- 0x10 0x15 0x1f 0x110 0xabc0001c and the created 0x1a
    assert.same(want, marks_by_port())
  end)
end)

-- ---------------------------------------------------------------------------
-- 4. Status flags
-- ---------------------------------------------------------------------------

describe("status flags", function()
  local h
  local UDP = "-p udp -s 10.4.0.1 -d 10.4.0.2 --sport 1 -t 100 "

  lazy_setup(function()
    H.reset()
    h = H.open()
    insert(UDP .. "--dport 1")
    insert(UDP .. "--dport 2 -u SEEN_REPLY")
    insert(UDP .. "--dport 3 -u ASSURED")
    insert(UDP .. "--dport 4 -u SEEN_REPLY,ASSURED")
    insert("-p tcp -s fd04::1 -d fd04::2 --sport 1 --dport 5 --state ESTABLISHED -t 100 -u ASSURED")
    assert(h:create{ proto = "udp", src = "10.4.0.1", dst = "10.4.0.2", sport = 1, dport = 6,
                     timeout = 100, status = "ASSURED" })
  end)

  lazy_teardown(function() h:close() end)

  -- 1.4.7 accepts both UNREPLIED and !SEEN_REPLY for "no reply seen"
  local STATUS_FILTERS = {
    { name = "'ASSURED'", filter = { status = "ASSURED" }, args = "-u ASSURED" },
    { name = "'SEEN_REPLY'", filter = { status = "SEEN_REPLY" }, args = "-u SEEN_REPLY" },
    { name = "'!SEEN_REPLY'", filter = { status = "!SEEN_REPLY" }, args = "-u UNREPLIED" },
    { name = "{ SEEN_REPLY = false }", filter = { status = { SEEN_REPLY = false } },
      args = "-u !SEEN_REPLY" },
    { name = "{ '!ASSURED' }", filter = { status = { "!ASSURED" } }, args = "-u !ASSURED" },
  }
  for _, c in ipairs(STATUS_FILTERS) do
    it("filter status = " .. c.name .. " gives conntrack -L " .. c.args, function()
      local mine = H.sorted(H.dump_lines(h, c.filter))
      assert.is_true(#mine > 0)
      assert.same(H.sorted(oracle(c.args)), mine)
    end)
  end

  it("a set of flags matches the entries that have every one of them", function()
    -- conntrack 1.4.7 lists nothing for `-u ASSURED,!SEEN_REPLY`, so the oracle is the
    -- intersection of its two single-flag listings
    local assured, unreplied = {}, {}
    for _, line in ipairs(H.sorted(oracle("-u ASSURED"))) do assured[line] = true end
    for _, line in ipairs(H.sorted(oracle("-u UNREPLIED"))) do
      if assured[line] then unreplied[#unreplied + 1] = line end
    end
    assert.equal(3, #unreplied)  -- udp dport 3, the created dport 6, the tcp entry
    assert.same(unreplied, H.sorted(H.dump_lines(h, { status = "ASSURED,!SEEN_REPLY" })))
    assert.same(unreplied,
                H.sorted(H.dump_lines(h, { status = { ASSURED = true, SEEN_REPLY = false } })))
  end)

  it("every listed entry is CONFIRMED", function()
    local n = 0
    for f in h:dump() do
      assert.is_true(f.status.CONFIRMED, tostring(f))
      n = n + 1
    end
    assert.equal(#oracle(""), n)
  end)

  it("create with status = 'ASSURED' makes what conntrack -I -u ASSURED makes", function()
    local theirs = oracle("-p udp --dport 3")[1]
    local mine = oracle("-p udp --dport 6")[1]
    assert.matches("[UNREPLIED]", mine, 1, true)
    assert.matches("[ASSURED]", mine, 1, true)
    assert.equal(H.normalize(theirs), H.normalize(mine:gsub("=6 ", "=3 ")))
  end)
end)

-- ---------------------------------------------------------------------------
-- 5. Labels
-- ---------------------------------------------------------------------------

local LABEL_RULESET, CONNLABEL_CONF = H.LABEL_RULESET, H.CONNLABEL_CONF
local conntrack_with_labelmap = H.conntrack_with_labelmap

--- conntrack -L ARGS (label filters) with our connlabel.conf, as lines of plain
-- conntrack -L: loading the labelmap makes conntrack append " labels=...", which plain
-- -L, like tostring(flow), does not print.
local function labelled_listing(dir, conf, args)
  local lines = {}
  for i, line in ipairs(conntrack_with_labelmap(dir, conf, "-L " .. args)) do
    lines[i] = line:gsub(" labels=%S+$", "")
  end
  return lines
end

describe("label storage", function()
  it("exists only for entries made after a ct label rule", function()
    H.reset()
    local h <close> = H.open()
    local tuple = { proto = "udp", src = "10.5.9.1", dst = "10.5.9.2", sport = 1, dport = 1 }
    insert("-p udp -s 10.5.9.1 -d 10.5.9.2 --sport 1 --dport 1 -t 100")
    local before = assert(h:get(tuple))
    local ok, _, errno = h:update(before, { labels = { 0 } })
    assert.is_nil(ok)
    assert.equal(28, errno)  -- ENOSPC: nowhere to store labels
    H.nft(LABEL_RULESET)
    insert("-p udp -s 10.5.9.1 -d 10.5.9.2 --sport 1 --dport 2 -t 100")
    local after = assert(h:get(merged(tuple, { dport = 2 })))
    assert.equal(1, h:update(after, { labels = { 0 } }))
    assert.same({ [0] = true }, h:get(merged(tuple, { dport = 2 })).labels)
  end)
end)

describe("labels", function()
  local h, dir, conf
  local UDP = "-p udp -s 10.5.0.1 -d 10.5.0.2 --sport 1 -t 100 "
  local function tuple(dport)
    return { proto = "udp", src = "10.5.0.1", dst = "10.5.0.2", sport = 1, dport = dport }
  end

  lazy_setup(function()
    H.reset()
    H.nft(LABEL_RULESET)  -- before the entries, or they get no label storage
    dir = tmpdir()
    conf = dir .. "/connlabel.conf"
    write_file(conf, CONNLABEL_CONF)
    h = H.open{ labelmap = conf }
    insert(UDP .. "--dport 1")
    insert(UDP .. "--dport 2")
    insert(UDP .. "--dport 3")
    assert.equal(1, h:update(assert(h:get(tuple(1))), { labels = { "blue", "green" } }))
    assert(h:create(merged(tuple(4), { timeout = 100, labels = "red" })))
    assert.equal(1, h:update(assert(h:get(tuple(3))), { labels = { "blue", "red" } }))
  end)

  lazy_teardown(function()
    h:close()
    H.run("rm -rf " .. H.quote(dir))
  end)

  it("reads every entry's labels as conntrack -o labels shows them", function()
    local theirs = {}
    for _, line in ipairs(conntrack_with_labelmap(dir, conf, "-L -o extended,id,labels")) do
      local e = parse_extended(line)
      theirs[e.words.id] = e
    end
    local ours = flows_by_id(h)
    assert.same(keys_of(theirs), keys_of(ours))
    for id, f in pairs(ours) do
      assert.same(theirs[id].words.labels, f.labels, theirs[id].line)
      assert_fields_match(f, theirs[id])
    end
    assert.same({ blue = true, green = true }, h:get(tuple(1)).labels)
    assert.same({ red = true }, h:get(tuple(4)).labels)
    assert.is_nil(h:get(tuple(2)).labels)  -- storage, but no label set
  end)

  it("filter labels = { 'blue' } gives conntrack -L -l blue", function()
    local mine = H.sorted(H.dump_lines(h, { labels = { "blue" } }))
    assert.equal(2, #mine)
    assert.same(H.sorted(labelled_listing(dir, conf, "-l blue")), mine)
  end)

  it("filter labels = { 'blue', 'red' } needs both, as conntrack -l blue -l red", function()
    local mine = H.sorted(H.dump_lines(h, { labels = { "blue", "red" } }))
    assert.equal(1, #mine)
    assert.same(H.sorted(labelled_listing(dir, conf, "-l blue -l red")), mine)
  end)

  it("filter labels = 'blue' (a string) gives conntrack -L -l blue", function()
    local mine = H.sorted(H.dump_lines(h, { labels = "blue" }))
    assert.same(H.sorted(labelled_listing(dir, conf, "-l blue")), mine)
  end)

  it("without a labelmap file, labels are bit numbers", function()
    local bare <close> = H.open{ labelmap = dir .. "/missing.conf" }
    local f = assert(bare:get(tuple(1)))
    assert.same({ [0] = true, [1] = true }, f.labels)
    assert.same({ [5] = true }, bare:get(tuple(4)).labels)
    local err = error_of(bare.dump, bare, { labels = { "blue" } })
    assert.matches("unknown label 'blue'", err, 1, true)
  end)

  it("a filter with an unknown label name raises, naming the label", function()
    local err = error_of(function()
      for _ in h:dump{ labels = { "purple" } } do end
    end)
    assert.matches("unknown label 'purple'", err, 1, true)
  end)

  it("the host's /etc/xtables was never created", function()
    assert.is_nil(io.open("/etc/xtables/connlabel.conf"))
  end)
end)

-- ---------------------------------------------------------------------------
-- 6. Address and family filters
-- ---------------------------------------------------------------------------

describe("address and family filters", function()
  local h
  local PAIRS = {
    { "10.6.0.1", "10.6.0.2" }, { "10.200.1.1", "192.168.6.2" }, { "192.168.6.1", "10.9.9.9" },
    { "172.16.0.1", "172.16.0.2" },
    { "fd07::5", "fd07::6" }, { "fd07::1:0:0:5", "fd08::6" }, { "fd07:0:0:1::5", "fd07::7" },
    { "fd08::1", "fd08::2" },
  }

  lazy_setup(function()
    H.reset()
    h = H.open()
    for i, p in ipairs(PAIRS) do
      insert(string.format("-p udp -s %s -d %s --sport %d --dport 53 -t 100", p[1], p[2], i))
    end
  end)

  lazy_teardown(function() h:close() end)

  local ADDRESS_FILTERS = {
    { filter = { src = "fd07::/64" }, args = "-s fd07::/64", count = 2 },
    { filter = { dst = "10.0.0.0/8" }, args = "-d 10.0.0.0/8", count = 2 },
    { filter = { src = "10.0.0.0/8", dst = "10.0.0.0/8" }, args = "-s 10.0.0.0/8 -d 10.0.0.0/8",
      count = 1 },
    { filter = { dst = "fd07::/16" }, args = "-d fd07::/16", count = 2 },
    { filter = { family = "ipv6" }, args = "-f ipv6", count = 4 },
    { filter = { family = "ipv4" }, args = "-f ipv4", count = 4 },
  }
  for _, c in ipairs(ADDRESS_FILTERS) do
    it("filter " .. c.args .. " gives conntrack -L " .. c.args, function()
      local mine = H.sorted(H.dump_lines(h, c.filter))
      assert.equal(c.count, #mine)
      assert.same(H.sorted(oracle(c.args)), mine)
    end)
  end

  local MIXED = {
    { name = "an IPv4 src and an IPv6 dst", filter = { src = "10.0.0.0/8", dst = "fd07::/64" } },
    { name = "family ipv4 and an IPv6 src", filter = { family = "ipv4", src = "fd07::/64" } },
    { name = "family ipv6 and an IPv4 dst", filter = { family = "ipv6", dst = "10.6.0.2" } },
  }
  for _, c in ipairs(MIXED) do
    it("a filter with " .. c.name .. " raises", function()
      assert.matches("mixes IPv4 and IPv6", error_of(h.dump, h, c.filter), 1, true)
    end)
  end
end)
