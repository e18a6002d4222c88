-- conntrack.json: the JSON encoder, and the JSON schema of flows and events.
--
-- Every output is parsed back with lua-cjson (an independent parser) and, where the exact
-- text matters (escapes, number formats, key order, empty array vs object), compared as
-- text too. lua-cjson reads every number as a float and does not check UTF-8 or raw control
-- bytes, so those are checked here directly. Flows are real entries made with h:create in
-- this spec's private table.
local H = require "helpers"
local conntrack = require "conntrack"
local json = require "conntrack.json"
local cjson = require "cjson"

-- ---------------------------------------------------------------------------
-- helpers
-- ---------------------------------------------------------------------------

--- The value of a JSON text, which must be valid UTF-8 without raw control bytes and parse.
local function decode(text)
  assert.is_string(text)
  assert.is_truthy(utf8.len(text), "output is not valid UTF-8: " .. text)
  assert.is_nil(text:find("[\0-\31]"), "raw control byte in output")
  local ok, value = pcall(cjson.decode, text)
  assert(ok, "cjson cannot parse " .. text .. ": " .. tostring(value))
  return value
end

--- json.encode(v), checked to parse; returns the text and its parsed value.
local function encode(v)
  local text = json.encode(v)
  return text, decode(text)
end

--- The message of the error fn raises.
local function raised(fn)
  local ok, err = pcall(fn)
  assert(not ok, "expected an error, but the call succeeded")
  return tostring(err)
end

local without_position = H.without_position

--- s with backslashes and control bytes as <ddd>, for test names (the TAP output reads
-- backslashes as escapes).
local function printable(s)
  return (s:gsub("[%c\\]", function(c) return "<" .. c:byte() .. ">" end))
end

--- The keys of the outermost object of a JSON text, in the order they are written.
local function top_keys(text)
  local keys, depth, i = {}, 0, 1
  while i <= #text do
    local c = text:sub(i, i)
    if c == '"' then
      local j = i + 1
      while text:sub(j, j) ~= '"' do j = j + (text:sub(j, j) == "\\" and 2 or 1) end
      if depth == 1 and text:sub(j + 1, j + 1) == ":" then
        keys[#keys + 1] = cjson.decode(text:sub(i, j))
      end
      i = j + 1
    else
      if c == "{" or c == "[" then depth = depth + 1 end
      if c == "}" or c == "]" then depth = depth - 1 end
      i = i + 1
    end
  end
  return keys
end

-- ---------------------------------------------------------------------------
-- json.encode
-- ---------------------------------------------------------------------------

describe("json.encode strings", function()
  -- Lua string -> exact JSON text
  local cases = {
    { "", '""' },
    { "plain text", '"plain text"' },
    { '"', '"\\""' },
    { "\\", '"\\\\"' },
    { "/", '"/"' },
    { "\n\t\r\b\f", '"\\n\\t\\r\\b\\f"' },
    { "\0", '"\\u0000"' },
    { "\1", '"\\u0001"' },
    { "\27[0m", '"\\u001b[0m"' },
    { "\31", '"\\u001f"' },
    { "\127", '"\127"' },                          -- DEL needs no escape
    { "é", '"é"' },                                -- 2-byte UTF-8 kept as it is
    { "€ ∞", '"€ ∞"' },                            -- 3-byte
    { "😀", '"😀"' },                              -- 4-byte
    { "\u{2028}", '"\u{2028}"' },
    { "a\"b\\c\nd", '"a\\"b\\\\c\\nd"' },
  }
  for _, case in ipairs(cases) do
    it("encodes " .. printable(case[1]) .. " as " .. printable(case[2]), function()
      local text, value = encode(case[1])
      assert.equal(case[2], text)
      assert.equal(case[1], value)
    end)
  end

  it("escapes each of the 32 control characters, in its shortest form", function()
    local short = { [8] = "\\b", [9] = "\\t", [10] = "\\n", [12] = "\\f", [13] = "\\r" }
    for c = 0, 31 do
      local want = '"' .. (short[c] or string.format("\\u%04x", c)) .. '"'
      local text, value = encode(string.char(c))
      assert.equal(want, text)
      assert.equal(string.char(c), value)
    end
  end)

  it("round-trips every byte 0..127 in one string", function()
    local bytes = {}
    for c = 0, 127 do bytes[#bytes + 1] = string.char(c) end
    local s = table.concat(bytes)
    local _, value = encode(s)
    assert.equal(s, value)
  end)

  -- invalid UTF-8 -> what the JSON string holds: one U+FFFD per invalid byte
  local R = "\u{fffd}"
  local invalid = {
    { "lone byte 0xff", "\xff", R },
    { "lone continuation byte", "a\x80b", "a" .. R .. "b" },
    { "truncated 2-byte sequence at the end", "ok\xc3", "ok" .. R },
    { "truncated 3-byte sequence", "\xe2\x82 x", R .. R .. " x" },
    { "overlong encoding of '/'", "\xc0\xaf", R .. R },
    { "UTF-16 surrogate", "\xed\xa0\x80", R .. R .. R },
    { "code point above U+10FFFF", "\xf4\x90\x80\x80", R .. R .. R .. R },
    { "5-byte sequence", "\xf8\x88\x80\x80\x80", R .. R .. R .. R .. R },
    { "valid text around invalid bytes", "é\xff\"\n€\xfe", "é" .. R .. "\"\n€" .. R },
  }
  for _, case in ipairs(invalid) do
    it("replaces each invalid UTF-8 byte by U+FFFD: " .. case[1], function()
      local text, value = encode(case[2])
      assert.equal(case[3], value)
      assert.is_nil(text:find("\xff", 1, true))
    end)
  end

  it("escapes object keys like strings", function()
    local t = { ['a"b'] = 1, ["c\\d"] = 2, ["\n"] = 3, ["\xff"] = 4, ["é"] = 5 }
    local text, value = encode(t)
    assert.equal('{"\\n":3,"a\\"b":1,"c\\\\d":2,"é":5,"\\ufffd":4}', text)
    assert.same({ ['a"b'] = 1, ["c\\d"] = 2, ["\n"] = 3, [R] = 4, ["é"] = 5 }, value)
  end)
end)

describe("json.encode numbers", function()
  local integers = { 0, 1, -1, 42, 65535, 4294967296, 1 << 53, (1 << 53) + 1, -(1 << 53),
                     math.maxinteger, math.mininteger }
  for _, n in ipairs(integers) do
    it("writes the integer " .. n .. " exactly", function()
      local text, value = encode(n)
      assert.equal(string.format("%d", n), text)
      assert.equal(n + 0.0, value)   -- cjson reads a double
    end)
  end

  it("writes 2^63-1 and -2^63 with every digit", function()
    assert.equal("9223372036854775807", json.encode(math.maxinteger))
    assert.equal("-9223372036854775808", json.encode(math.mininteger))
    assert.equal("[9223372036854775807]", json.encode({ math.maxinteger }))
  end)

  -- float -> exact text: the shortest that reads back, and a float stays a float
  local floats = {
    { 0.5, "0.5" },
    { -2.5, "-2.5" },
    { 0.1, "0.1" },
    { 0.1 + 0.2, "0.30000000000000004" },
    { math.pi, "3.141592653589793" },
    { 1 / 3, "0.3333333333333333" },
    { 2.0, "2.0" },
    { -0.0, "-0.0" },
    { 1e300, "1e+300" },
    { -1e-300, "-1e-300" },
    { 1e21, "1e+21" },
    { 123456789.125, "123456789.125" },
    { 2^63, "9.223372036854776e+18" },
    { 2^53, "9007199254740992.0" },
    { 5e-324, "4.94065645841247e-324" },
  }
  for _, case in ipairs(floats) do
    it("writes the float " .. case[2], function()
      local text, value = encode(case[1])
      assert.equal(case[2], text)
      assert.equal(case[1], tonumber(text))
      assert.equal(math.type(case[1]), math.type(tonumber(text)))
      assert.equal(case[1], value)
    end)
  end

  local non_finite = {
    { 0 / 0, "NaN" },
    { math.huge, "inf" },
    { -math.huge, "-inf" },
  }
  for _, case in ipairs(non_finite) do
    it("raises for " .. case[2], function()
      assert.equal("json.encode: cannot encode " .. case[2], raised(function()
        json.encode(case[1])
      end))
      assert.equal("json.encode: cannot encode " .. case[2] .. " at $.x[2]", raised(function()
        json.encode({ x = { 1, case[1] } })
      end))
    end)
  end
end)

describe("json.encode tables", function()
  local cases = {
    { "an empty table is an object", {}, "{}" },
    { "a json.array table is an array", setmetatable({}, json.array), "[]" },
    { "a marked sequence", setmetatable({ 1, 2 }, json.array), "[1,2]" },
    { "a sequence", { 1, "two", true, false }, '[1,"two",true,false]' },
    { "json.null", json.null, "null" },
    { "nil", nil, "null" },
    { "json.null in an array", { json.null, 1 }, "[null,1]" },
    { "json.null in an object", { a = json.null }, '{"a":null}' },
    { "booleans", { t = true, f = false }, '{"f":false,"t":true}' },
    { "nesting", { a = { 1, 2, { b = "c" } }, d = {}, e = setmetatable({}, json.array) },
      '{"a":[1,2,{"b":"c"}],"d":{},"e":[]}' },
    { "arrays of arrays", { { {} }, { { 1 } } }, "[[{}],[[1]]]" },
    { "keys in byte order", { b = 1, a = 2, B = 3, ["a b"] = 4, _ = 5, ["1"] = 6, aa = 7 },
      '{"1":6,"B":3,"_":5,"a":2,"a b":4,"aa":7,"b":1}' },
    { "the same table twice side by side", (function()
        local shared = { 1 }
        return { shared, { x = shared } }
      end)(), '[[1],{"x":[1]}]' },
  }
  for _, case in ipairs(cases) do
    it("encodes " .. case[1], function()
      local text = encode(case[2])
      assert.equal(case[3], text)
    end)
  end

  it("parses back to the same values", function()
    local v = { a = { 1, 2.5, "x" }, b = { c = { d = true } }, n = json.null }
    local _, value = encode(v)
    assert.same({ a = { 1, 2.5, "x" }, b = { c = { d = true } }, n = cjson.null }, value)
  end)

  it("writes equal tables equally, whatever order their keys were inserted in", function()
    local names = {}
    for i = 1, 200 do names[i] = "k" .. i end
    local forward, backward = {}, {}
    for i = 1, 200 do forward[names[i]] = i end
    for i = 300, 1, -1 do backward["k" .. i] = i end
    for i = 201, 300 do backward["k" .. i] = nil end   -- a different hash layout
    local text = json.encode(forward)
    assert.equal(text, json.encode(backward))
    local sorted = table.move(names, 1, #names, 1, {})
    table.sort(sorted)
    assert.same(sorted, top_keys(text))
    assert.not_same(names, sorted)   -- k1, k10, k100, k101, ...: not insertion order
  end)

  it("reads tables raw: metamethods do not run", function()
    local mt = {
      __index = function() error("__index ran") end,
      __pairs = function() error("__pairs ran") end,
      __len = function() error("__len ran") end,
    }
    assert.equal('{"a":1}', json.encode(setmetatable({ a = 1 }, mt)))
    assert.equal("[1,2]", json.encode(setmetatable({ 1, 2 }, mt)))
  end)

  it("encodes 1000 levels of nesting", function()
    local t = { 1 }
    for _ = 2, 1000 do t = { t } end
    assert.equal(string.rep("[", 1000) .. "1" .. string.rep("]", 1000), json.encode(t))
  end)

  it("gives the right text after a failed encoding", function()
    local big = {}
    for i = 1, 5000 do big[i] = "item" .. i end
    big[5001] = print
    raised(function() json.encode(big) end)
    assert.equal('[3,"x"]', json.encode({ 3, "x" }))
  end)

  it("json.null and json.array are what they say", function()
    assert.equal("json.null", tostring(json.null))
    assert.equal("json.null is read-only", without_position(raised(function()
      json.null.x = 1
    end)))
    assert.equal("json.array", json.array.__name)
  end)
end)

describe("json.encode errors", function()
  local co = coroutine.create(print)
  local deep = {}
  do
    local t = deep
    for _ = 1, 1000 do t[1] = {} t = t[1] end
  end
  local self_ref = {}
  self_ref.self = self_ref
  local indirect = { b = {} }
  indirect.b.c = indirect
  local array_ref = { 1 }
  array_ref[2] = array_ref

  local KEY_RULE = " (object keys are strings, array keys are 1..n)"
  -- value -> exact message
  local cases = {
    { "a function", print, "json.encode: cannot encode a function" },
    { "a userdata", io.stdout, "json.encode: cannot encode a userdata (FILE*)" },
    { "a thread", co, "json.encode: cannot encode a thread" },
    { "a function in an object", { f = print }, "json.encode: cannot encode a function at $.f" },
    { "a function in an array", { 1, { 2, print } },
      "json.encode: cannot encode a function at $[2][2]" },
    { "a function under an odd key", { ["a b"] = { print } },
      'json.encode: cannot encode a function at $["a b"][1]' },
    { "a table that contains itself", self_ref,
      "json.encode: cannot encode a reference cycle at $.self" },
    { "a cycle through two tables", indirect,
      "json.encode: cannot encode a reference cycle at $.b.c" },
    { "an array that contains itself", array_ref,
      "json.encode: cannot encode a reference cycle at $[2]" },
    { "a sparse array", { 1, nil, 3 },
      "json.encode: cannot encode a sparse array (item 2 is missing)" },
    { "a mixed table", { 1, x = 2 },
      'json.encode: cannot encode a table with both string and integer keys ("x" and 1)' },
    { "a boolean key", { [true] = 1 },
      "json.encode: cannot encode table key boolean true" .. KEY_RULE },
    { "a float key", { [1.5] = 1 },
      "json.encode: cannot encode table key number 1.5" .. KEY_RULE },
    { "key 0", { [0] = 1 },
      "json.encode: cannot encode table key number 0" .. KEY_RULE },
    { "a json.array with a string key", setmetatable({ 1, x = 2 }, json.array),
      'json.encode: cannot encode a json.array with key "x" (array keys are 1..n)' },
    { "a sparse json.array", setmetatable({ 1, 2, nil, 4 }, json.array),
      "json.encode: cannot encode a sparse array (item 3 is missing)" },
    { "1001 levels of nesting", deep,
      "json.encode: nesting deeper than 1000 levels at " .. "$" .. string.rep("[1]", 12) ..
      "..." .. string.rep("[1]", 12) },
  }
  for _, case in ipairs(cases) do
    it("raises for " .. case[1], function()
      assert.equal(case[3], raised(function() json.encode(case[2]) end))
    end)
  end
end)

-- ---------------------------------------------------------------------------
-- Flows and events
-- ---------------------------------------------------------------------------

-- Any `ct label` rule gives entries made after it label storage (see flow_spec.lua).
local LABEL_RULESET = [[
table inet ct_lua_json {
  chain out {
    type filter hook output priority 0;
    ct label 1 counter
  }
}]]

-- name -> spec for h:create; each entry is a different kind of flow
local SPECS = {
  tcp = { proto = "tcp", src = "10.0.0.1", dst = "10.0.0.2", sport = 1, dport = 2,
          state = "ESTABLISHED", timeout = 100, mark = 7,
          tcp_flags = { SACK_PERM = true, BE_LIBERAL = true } },
  udp = { proto = "udp", src = "10.0.0.1", dst = "10.0.0.3", sport = 53, dport = 53,
          timeout = 30, mark = 0x10 },
  icmp = { proto = "icmp", src = "10.0.0.1", dst = "10.0.0.4", icmp_type = 8, icmp_code = 0,
           icmp_id = 77, timeout = 30 },
  tcp6 = { proto = "tcp", src = "fd00::1", dst = "fd00::2", sport = 3, dport = 4,
           state = "SYN_SENT", timeout = 100 },
  icmpv6 = { proto = "icmpv6", src = "fd00::1", dst = "fd00::3", icmp_type = 128,
             icmp_code = 0, icmp_id = 9, timeout = 30 },
  zoned = { proto = "udp", src = "10.0.0.1", dst = "10.0.0.5", sport = 5, dport = 5,
            zone = 9, timeout = 30 },
  assured = { proto = "udp", src = "10.0.0.1", dst = "10.0.0.6", sport = 6, dport = 6,
              status = "ASSURED,SEEN_REPLY", timeout = 30 },
  labelled = { proto = "udp", src = "10.0.0.1", dst = "10.0.0.7", sport = 7, dport = 7,
               labels = { "red", 70, "blue", 3 }, timeout = 30 },
  -- every label bit: more members than sets have signature bits for (64)
  all_labels = { proto = "udp", src = "10.0.0.1", dst = "10.0.0.8", sport = 8, dport = 8,
                 labels = (function()
                   local bits = {}
                   for bit = 0, 127 do bits[#bits + 1] = bit end
                   return bits
                 end)(), timeout = 30 },
  -- status sets that share members, so that a wrong set cache would mix them up
  seen_reply = { proto = "udp", src = "10.0.0.1", dst = "10.0.0.9", sport = 9, dport = 9,
                 status = "SEEN_REPLY", timeout = 30 },
  assured_only = { proto = "udp", src = "10.0.0.1", dst = "10.0.0.10", sport = 10, dport = 10,
                   status = "ASSURED", timeout = 30 },
}

--- The names of a set ({ ASSURED = true, [5] = true }): strings sorted, then numbers sorted.
local function sorted_members(set)
  local names, numbers = {}, {}
  for k in pairs(set) do
    if type(k) == "string" then names[#names + 1] = k else numbers[#numbers + 1] = k end
  end
  table.sort(names)
  table.sort(numbers)
  table.move(numbers, 1, #numbers, #names + 1, names)
  return names
end

--- What json.flow(f) must parse to: f:totable() with its sets as sorted arrays.
local function expected_flow(f)
  local t = f:totable()
  for _, field in ipairs(conntrack.fields) do
    if field.set and t[field.name] then t[field.name] = sorted_members(t[field.name]) end
  end
  return t
end

--- The names of conntrack.fields that flow f has, in the order of conntrack.fields.
local function present_fields(f)
  local t, names = f:totable(), {}
  for _, field in ipairs(conntrack.fields) do
    if t[field.name] ~= nil then names[#names + 1] = field.name end
  end
  return names
end

describe("json.flow and json.event", function()
  local h, dir
  local flows = {}   -- name -> flow, as read back after creating SPECS

  lazy_setup(function()
    H.reset()
    H.nft(LABEL_RULESET)
    dir = H.must("mktemp -d"):match("%S+")
    local conf = dir .. "/connlabel.conf"
    H.write_file(conf, "0 blue\n1 green\n5 red\n")
    h = assert(conntrack.open{ labelmap = conf })
    for name, spec in pairs(SPECS) do
      assert(h:create(spec))
      local tuple = {}
      for _, k in ipairs({ "proto", "src", "dst", "sport", "dport", "icmp_type", "icmp_code",
                           "icmp_id", "zone" }) do
        tuple[k] = spec[k]
      end
      flows[name] = assert(h:get(tuple))
    end
  end)

  lazy_teardown(function()
    if h then h:close() end
    if dir then H.run("rm -rf " .. H.quote(dir)) end
    H.reset()
  end)

  for name in pairs(SPECS) do
    it("encodes the " .. name .. " flow as f:totable() with sorted sets", function()
      local f = flows[name]
      local text = json.flow(f)
      assert.same(expected_flow(f), decode(text))
    end)

    it("writes the " .. name .. " flow's keys in the order of conntrack.fields", function()
      local f = flows[name]
      assert.same(present_fields(f), top_keys(json.flow(f)))
    end)
  end

  it("has the fields each kind of flow has, and no others", function()
    local tcp = decode(json.flow(flows.tcp))
    assert.equal("ipv4", tcp.family)
    assert.equal("tcp", tcp.proto)
    assert.equal("ESTABLISHED", tcp.state)
    assert.equal(7, tcp.mark)
    assert.equal(2, tcp.dport)
    assert.is_nil(tcp.icmp_type)
    assert.is_nil(tcp.labels)
    local icmp = decode(json.flow(flows.icmp))
    assert.equal(8, icmp.icmp_type)
    assert.equal(0, icmp.reply_icmp_type)   -- echo reply
    assert.equal(77, icmp.icmp_id)
    assert.is_nil(icmp.sport)
    assert.is_nil(icmp.state)
    local tcp6 = decode(json.flow(flows.tcp6))
    assert.equal("ipv6", tcp6.family)
    assert.equal("fd00::1", tcp6.src)
    assert.equal("SYN_SENT", tcp6.state)
    local icmpv6 = decode(json.flow(flows.icmpv6))
    assert.equal("icmpv6", icmpv6.proto)
    assert.equal(129, icmpv6.reply_icmp_type)
    assert.equal(9, decode(json.flow(flows.zoned)).zone)
  end)

  it("writes the exact values of a flow as JSON text", function()
    local text = json.flow(flows.tcp)
    assert.matches('^{"family":"ipv4","proto":"tcp","src":"10.0.0.1","dst":"10.0.0.2",' ..
                   '"sport":1,"dport":2,"reply_src":"10.0.0.2","reply_dst":"10.0.0.1",' ..
                   '"reply_sport":2,"reply_dport":1,"state":"ESTABLISHED","timeout":%d+,' ..
                   '"mark":7,"zone":0,"orig_zone":0,"reply_zone":0,"status":%[[^%]]*%],' ..
                   '"id":%d+,"use":%d+,"snat":false,"dnat":false,' ..
                   '"tcp_flags":%["BE_LIBERAL","SACK_PERM"%],"reply_tcp_flags":%[%]}$', text)
  end)

  it("writes a status set as a sorted array of names", function()
    local text = json.flow(flows.assured)
    local status = decode(text).status
    assert.same(sorted_members(flows.assured.status), status)
    assert.is_true(#status >= 3)   -- ASSURED, CONFIRMED, SEEN_REPLY at least
    assert.matches('"status":%["ASSURED","CONFIRMED",[^%]]*"SEEN_REPLY"', text)
  end)

  it("writes labels as sorted names, then sorted bit numbers", function()
    assert.same({ blue = true, red = true, [3] = true, [70] = true }, flows.labelled.labels)
    local text = json.flow(flows.labelled)
    assert.matches('"labels":["blue","red",3,70]', text, 1, true)
    assert.same({ "blue", "red", 3, 70 }, decode(text).labels)
  end)

  it("writes a set of all 128 labels", function()
    local want = { "blue", "green", "red" }
    for bit = 0, 127 do
      if bit ~= 0 and bit ~= 1 and bit ~= 5 then want[#want + 1] = bit end
    end
    assert.same(want, decode(json.flow(flows.all_labels)).labels)
  end)

  it("gives every flow of a dump its own sets (sets are not mixed up)", function()
    local statuses = {}
    for f in h:dump() do
      local value = decode(json.flow(f))
      assert.same(sorted_members(f.status), value.status)
      assert.same(f.labels and sorted_members(f.labels), value.labels)
      statuses[table.concat(value.status, ",")] = true
    end
    local distinct = 0
    for _ in pairs(statuses) do distinct = distinct + 1 end
    assert.is_true(distinct >= 3)
  end)

  it("is deterministic", function()
    for _, f in pairs(flows) do
      assert.equal(json.flow(f), json.flow(f))
    end
  end)

  local not_flows = {
    { "a table", {}, "table" },
    { "a number", 1, "number" },
    { "nil", nil, "nil" },
    { "another userdata", io.stdout, "FILE*" },
  }
  for _, case in ipairs(not_flows) do
    it("json.flow raises at its caller for " .. case[1], function()
      local err = raised(function() json.flow(case[2]) end)
      assert.matches("^[^:]*json_spec.lua:%d+: ", err)
      assert.equal("json.flow: expected a conntrack.flow, got " .. case[3], without_position(err))
    end)
  end

  it("json.encode refuses a flow, which json.flow encodes", function()
    assert.equal("json.encode: cannot encode a userdata (conntrack.flow) at $[1]",
                 raised(function() json.encode({ flows.tcp }) end))
  end)

  -- event -> the JSON before the flow's object ("" when the event has no flow)
  local events = {
    { "a new event", { kind = "new", time = 1795777568.928259, portid = 123, flow = "tcp" },
      '{"kind":"new","time":1795777568.928259,"portid":123,"flow":' },
    { "a destroy event", { kind = "destroy", time = 1.5, flow = "icmp" },
      '{"kind":"destroy","time":1.500000,"flow":' },
    { "an update without time", { kind = "update", portid = 0, flow = "tcp6" },
      '{"kind":"update","portid":0,"flow":' },
    { "an integer time", { kind = "new", time = 10, flow = "zoned" },
      '{"kind":"new","time":10.000000,"flow":' },
    { "an overrun", { kind = "overrun", time = 1795777568.0000004, lost = 42 },
      '{"kind":"overrun","time":1795777568.000000,"lost":42}' },
    { "every field", { flow = "labelled", lost = 1, portid = 2, time = 3.25, kind = "new" },
      '{"kind":"new","time":3.250000,"portid":2,"lost":1,"flow":' },
    { "an empty record", {}, "{}" },
    { "only a flow", { flow = "udp" }, '{"flow":' },
  }
  -- other fields follow the flow, sorted by name
  local with_others = {
    { "nsid and resync", { resync = true, kind = "new", nsid = 3, time = 2, flow = "tcp" },
      '{"kind":"new","time":2.000000,"flow":%s,"nsid":3,"resync":true}' },
    { "a table field", { kind = "destroy", zeta = { 1, "a" }, alpha = { b = json.null } },
      '{"kind":"destroy","alpha":{"b":null},"zeta":[1,"a"]}' },
  }
  for _, case in ipairs(events) do
    it("json.event encodes " .. case[1], function()
      local event = {}
      for k, v in pairs(case[2]) do event[k] = k == "flow" and flows[v] or v end
      local text = json.event(event)
      local want = case[3]
      if event.flow then want = want .. json.flow(event.flow) .. "}" end
      assert.equal(want, text)
      local value = decode(text)
      assert.equal(event.kind, value.kind)
      assert.equal(event.portid, value.portid)
      assert.equal(event.lost, value.lost)
      if event.time then assert.near(event.time, value.time, 1e-6) end
      if event.flow then assert.same(expected_flow(event.flow), value.flow) end
    end)
  end

  for _, case in ipairs(with_others) do
    it("json.event writes other fields after the flow: " .. case[1], function()
      local event = {}
      for k, v in pairs(case[2]) do event[k] = k == "flow" and flows[v] or v end
      local text = json.event(event)
      assert.equal(case[3]:format(event.flow and json.flow(event.flow)), text)
      decode(text)
    end)
  end

  it("json.event writes kind, time, portid, lost, flow in that order", function()
    local text = json.event({ flow = flows.tcp, lost = 0, portid = 1, time = 2, kind = "new" })
    assert.same({ "kind", "time", "portid", "lost", "flow" }, top_keys(text))
  end)

  local bad_events = {
    { "not a table", "new", "expected an event table, got string" },
    { "a field name that is no string", { "new" }, "field names must be strings, got number 1" },
    { "a kind that is no string", { kind = 1 }, "field 'kind' must be a string, got number" },
    { "a time that is a string", { time = "now" },
      "field 'time' must be a finite number, got string" },
    { "an infinite time", { time = math.huge }, "field 'time' must be a finite number, got inf" },
    { "a float portid", { portid = 1.5 }, "field 'portid' must be an integer, got float" },
    { "a string lost", { lost = "3" }, "field 'lost' must be an integer, got string" },
    { "a flow that is a table", { flow = {} }, "expected a conntrack.flow, got table" },
  }
  for _, case in ipairs(bad_events) do
    it("json.event raises at its caller for " .. case[1], function()
      local err = raised(function() json.event(case[2]) end)
      assert.matches("^[^:]*json_spec.lua:%d+: ", err)
      assert.equal("json.event: " .. case[3], without_position(err))
    end)
  end

  it("json.event raises json.encode's errors for other fields", function()
    assert.equal("json.event: cannot encode a function at $.extra",
                 raised(function() json.event({ kind = "new", extra = print }) end))
    assert.equal("json.event: cannot encode NaN at $.stats.x[1]",
                 raised(function() json.event({ stats = { x = { 0 / 0 } } }) end))
  end)
end)
