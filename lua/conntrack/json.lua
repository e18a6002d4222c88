--- A dependency-free JSON encoder (RFC 8259) in pure Lua 5.4, and the JSON schema of flows
-- and events (the output of `-o json`).
--
-- Output is compact (no whitespace) and deterministic: the same value always gives the same
-- bytes. Errors are raised with messages that name the function, say what is wrong and, below
-- the top level, where: `json.encode: cannot encode a function at $.handlers[2]`. Deep or
-- cyclic tables raise such an error too, never a stack overflow.
--
-- How `json.encode` maps Lua values:
--
-- - strings: JSON strings. `"` and `\` are escaped, control characters U+0000..U+001F as
--   `\b \t \n \f \r` or `\u00XX` (lowercase hex); valid UTF-8 is copied as it is; every byte
--   that is not part of a valid UTF-8 sequence (Lua's strict `utf8.len` rules) becomes
--   `\ufffd`, so the output is always valid JSON and valid UTF-8.
-- - integers (`math.type` "integer"): decimal, over the whole 64-bit range.
-- - floats: the shortest of `%.15g`, `%.16g`, `%.17g` that reads back as the same number,
--   with `.0` appended when that looks like an integer: `0.5`, `0.1`, `2.0`, `-0.0`,
--   `1e+300`. NaN, `inf` and `-inf` raise.
-- - booleans: `true`, `false`; `nil` (at the top level) and `json.null`: `null`.
-- - tables: an array when the keys are exactly the integers 1..n (n >= 1), or when the table
--   has the metatable `json.array` (then it may be empty); otherwise an object, whose keys must
--   all be strings, written in ascending order (Lua's `<` on strings: byte order in the C
--   locale). An empty table is `{}`. Other metatables are ignored: tables are read raw, no
--   metamethod runs. A table that contains itself raises; the same table twice side by side
--   is fine. Nesting is limited to 1000 levels.
-- - functions, userdata and threads raise.
-- @module conntrack.json
local json = {}

local type, next, rawlen, tostring, tonumber, error, getmetatable, setmetatable, ipairs =
      type, next, rawlen, tostring, tonumber, error, getmetatable, setmetatable, ipairs
local math_type, huge = math.type, math.huge
local concat, sort = table.concat, table.sort
local format, find, gsub, sub = string.format, string.find, string.gsub, string.sub
local utf8_len = utf8.len

local MAX_DEPTH = 1000

--- The null sentinel: `json.encode{ a = json.null }` is `{"a":null}`. Read-only.
json.null = setmetatable({}, {
  __name = "json.null",
  __tostring = function() return "json.null" end,
  __newindex = function() error("json.null is read-only", 2) end,
})
local null = json.null

--- The metatable that marks a table as an array, also when it is empty:
-- `json.encode(setmetatable({}, json.array))` is `[]`. A marked table must hold exactly the
-- keys 1..n.
json.array = { __name = "json.array" }
local array_mt = json.array

-- A reusable buffer: taken by one encoding at a time (a finalizer that encodes in the middle
-- of another encoding finds none and makes its own), given back only when small, so it never
-- pins a large output's pieces. After an error it is simply not given back.
local spare
local SPARE_MAX = 1024

-- ---------------------------------------------------------------------------
-- Strings
-- ---------------------------------------------------------------------------

local ESCAPE = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
                 ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
for c = 0, 31 do
  local ch = string.char(c)
  ESCAPE[ch] = ESCAPE[ch] or format("\\u%04x", c)
end

local SPECIAL = '[\0-\31"\\\128-\255]'   -- any byte that is not simply copied
local TO_ESCAPE = '[\0-\31"\\]'

-- s escaped, with every byte outside a valid UTF-8 sequence replaced by U+FFFD.
local function escape_invalid_utf8(s)
  local parts, n, i, len = {}, 0, 1, #s
  while i <= len do
    local ok, bad = utf8_len(s, i)
    if ok then bad = len + 1 end
    if bad > i then
      n = n + 1
      parts[n] = gsub(sub(s, i, bad - 1), TO_ESCAPE, ESCAPE)
    end
    if bad <= len then
      n = n + 1
      parts[n] = "\\ufffd"
    end
    i = bad + 1
  end
  return concat(parts, "", 1, n)
end

-- The JSON string literal (quotes included) of the Lua string s.
local function quote(s)
  if not find(s, SPECIAL) then
    return '"' .. s .. '"'
  end
  if not find(s, "[\128-\255]") or utf8_len(s) then
    return '"' .. gsub(s, TO_ESCAPE, ESCAPE) .. '"'
  end
  return '"' .. escape_invalid_utf8(s) .. '"'
end

-- Object keys repeat: '"key":' is cached, up to KEY_CACHE_MAX keys; a full cache starts
-- over, so memory stays bounded whatever is encoded.
local KEY_CACHE_MAX = 1024
local key_cache, key_cache_n = {}, 0

local function quote_key(k)
  local q = key_cache[k]
  if q then return q end
  q = quote(k) .. ":"
  if key_cache_n >= KEY_CACHE_MAX then
    key_cache, key_cache_n = {}, 0
  end
  key_cache[k], key_cache_n = q, key_cache_n + 1
  return q
end

-- ---------------------------------------------------------------------------
-- Errors
-- ---------------------------------------------------------------------------

-- A key as an error message shows it: "name" (quoted) or "number 3".
local function describe_key(k)
  if type(k) == "string" then return quote(k) end
  return type(k) .. " " .. tostring(k)
end

-- "$.a[2]["odd key"]": where the value at path[1..depth] is; the middle of a deep path is
-- shown as "...".
local function path_string(path, depth)
  local parts = { "$" }
  for i = 1, depth do
    if depth > 24 and i == 13 then
      parts[#parts + 1] = "..."
    elseif depth <= 24 or i < 13 or i > depth - 12 then
      local k = path[i]
      if math_type(k) == "integer" then
        parts[#parts + 1] = "[" .. k .. "]"
      elseif find(k, "^[%a_][%w_]*$") then
        parts[#parts + 1] = "." .. k
      else
        parts[#parts + 1] = "[" .. quote(k) .. "]"
      end
    end
  end
  return concat(parts)
end

-- An encoding's context: ctx = { who = "json.encode", seen = { [table] = true },
-- [1..depth] = the keys leading to the value being encoded }.
-- Raises "WHO: WHAT" and, below the top level, " at PATH".
local function fail(ctx, depth, what)
  local where = depth > 0 and (" at " .. path_string(ctx, depth)) or ""
  error(ctx.who .. ": " .. what .. where, 0)
end

local function sparse_error(t)
  local missing = 1
  while t[missing] ~= nil do missing = missing + 1 end
  return "cannot encode a sparse array (item " .. missing .. " is missing)"
end

-- Why t, which has a key that is not a string, is neither an array nor an object.
local function shape_error(t)
  local string_key, integer_key
  for k in next, t do
    if type(k) == "string" then
      string_key = string_key or k
    elseif math_type(k) == "integer" and k >= 1 then
      integer_key = integer_key or k
    else
      return "cannot encode table key " .. describe_key(k) ..
             " (object keys are strings, array keys are 1..n)"
    end
  end
  if string_key then
    return "cannot encode a table with both string and integer keys (" ..
           describe_key(string_key) .. " and " .. integer_key .. ")"
  end
  return sparse_error(t)
end

-- ---------------------------------------------------------------------------
-- Values
-- ---------------------------------------------------------------------------

local FLOAT_FORMATS = { "%.15g", "%.16g", "%.17g" }

local function float(v, ctx, depth)
  if v ~= v then fail(ctx, depth, "cannot encode NaN") end
  if v == huge then fail(ctx, depth, "cannot encode inf") end
  if v == -huge then fail(ctx, depth, "cannot encode -inf") end
  local s
  for i = 1, 3 do
    s = format(FLOAT_FORMATS[i], v)
    if tonumber(s) == v then break end
  end
  if find(s, ",", 1, true) then s = gsub(s, ",", ".") end   -- a locale's decimal comma
  if not find(s, "[.e]") then s = s .. ".0" end             -- still a float: 2.0, -0.0
  return s
end

local encode_table

-- Appends the JSON of v to buf after buf[n]; returns the new n.
local function encode_value(v, buf, n, ctx, depth)
  local tv = type(v)
  n = n + 1
  if tv == "string" then
    buf[n] = quote(v)
  elseif tv == "number" then
    if math_type(v) == "integer" then
      buf[n] = tostring(v)
    else
      buf[n] = float(v, ctx, depth)
    end
  elseif tv == "boolean" then
    buf[n] = v and "true" or "false"
  elseif tv == "table" then
    if v == null then
      buf[n] = "null"
    else
      n = encode_table(v, buf, n - 1, ctx, depth)
    end
  elseif v == nil then
    buf[n] = "null"
  else
    local mt = getmetatable(v)
    local name = type(mt) == "table" and mt.__name
    fail(ctx, depth, "cannot encode a " .. tv ..
         (type(name) == "string" and (" (" .. name .. ")") or ""))
  end
  return n
end

function encode_table(t, buf, n, ctx, depth)
  local seen = ctx.seen
  if seen[t] then fail(ctx, depth, "cannot encode a reference cycle") end
  if depth >= MAX_DEPTH then fail(ctx, depth, "nesting deeper than " .. MAX_DEPTH .. " levels") end
  seen[t] = true
  local marked = getmetatable(t) == array_mt
  -- an array when every key is an integer in 1..len and there are len of them
  local len, count, other = rawlen(t), 0, nil
  for k in next, t do
    if math_type(k) ~= "integer" or k < 1 or k > len then
      other = k
      break
    end
    count = count + 1
  end
  local inner = depth + 1
  if other == nil and count == len and (len > 0 or marked) then
    n = n + 1
    if len == 0 then
      buf[n] = "[]"
    else
      buf[n] = "["
      for i = 1, len do
        if i > 1 then
          n = n + 1
          buf[n] = ","
        end
        ctx[inner] = i
        n = encode_value(t[i], buf, n, ctx, inner)
      end
      n = n + 1
      buf[n] = "]"
    end
  elseif marked then
    if other == nil then fail(ctx, depth, sparse_error(t)) end
    fail(ctx, depth, "cannot encode a json.array with key " .. describe_key(other) ..
         " (array keys are 1..n)")
  else
    local keys, nk = {}, 0
    for k in next, t do
      if type(k) ~= "string" then fail(ctx, depth, shape_error(t)) end
      nk = nk + 1
      keys[nk] = k
    end
    if nk == 0 then
      n = n + 1
      buf[n] = "{}"
    else
      sort(keys)
      for i = 1, nk do
        local k = keys[i]
        n = n + 1
        buf[n] = i == 1 and "{" or ","
        n = n + 1
        buf[n] = quote_key(k)
        ctx[inner] = k
        n = encode_value(t[k], buf, n, ctx, inner)
      end
      n = n + 1
      buf[n] = "}"
    end
  end
  seen[t] = nil
  return n
end

-- Joins buf[1..n] and gives buf back as the spare buffer if it is small.
local function finish(buf, n)
  local s = concat(buf, "", 1, n)
  if n <= SPARE_MAX then spare = buf end
  return s
end

--- Encodes a Lua value as JSON text (the mapping is in the module description).
-- @param value a string, number, boolean, nil, `json.null`, or a table of those
-- @treturn string compact JSON text
-- @raise `json.encode: cannot encode a function` (also `a userdata (TYPE NAME)`,
-- `a thread`), `cannot encode NaN` / `inf` / `-inf`, `cannot encode a reference cycle`,
-- `cannot encode a sparse array (item 2 is missing)`, `cannot encode a table with both string
-- and integer keys (...)`, `cannot encode table key ...`, `cannot encode a json.array with
-- key ...`, `nesting deeper than 1000 levels`; each but at the top level followed by
-- ` at $.path.to[1].value`.
function json.encode(value)
  local buf = spare or {}
  spare = nil
  return finish(buf, encode_value(value, buf, 0, { who = "json.encode", seen = {} }, 0))
end

-- ---------------------------------------------------------------------------
-- Flows
-- ---------------------------------------------------------------------------

-- Set on first use from conntrack.fields, so that json.encode works without the C module:
-- per field index, its name, '{"name":' and ',"name":', the set state of the set fields
-- (else false), and whether its values are cached.
local NAMES, NFIELDS, FIRST_KEY, NEXT_KEY, SET_STATE, CACHED
local flow_mt, totable    -- conntrack.flow's metatable and totable, from the first flow

-- Values of flows repeat (families, protocols, states, servers' addresses and ports, zones,
-- timeouts): their JSON is cached, strings and integers apart, up to CACHE_MAX values each.
-- A full cache starts over, so memory stays bounded however many values a long event stream
-- brings. Values of the UNCACHED fields hardly ever repeat and are not stored.
local CACHE_MAX = 4096
local string_cache, string_cache_n, integer_cache, integer_cache_n = {}, 0, {}, 0
local UNCACHED = { id = true, packets = true, bytes = true, reply_packets = true,
                   reply_bytes = true, start = true, stop = true }

local function load_fields()
  local fields = require("conntrack").fields
  local names, first, rest, set_state, cached = {}, {}, {}, {}, {}
  for i, f in ipairs(fields) do
    local name = f.name
    names[i], first[i], rest[i] = name, "{" .. quote_key(name), "," .. quote_key(name)
    set_state[i] = f.set and { bits = {}, nbits = 0, cache = {}, ncache = 0 }
    cached[i] = not UNCACHED[name]
  end
  NAMES, NFIELDS, FIRST_KEY, NEXT_KEY, SET_STATE, CACHED =
    names, #names, first, rest, set_state, cached
end

-- Strings before integers, each group in ascending order.
local function set_order(a, b)
  local ta, tb = type(a), type(b)
  if ta == tb then return a < b end
  return ta == "string"
end

-- The JSON array of a set's members ({ ASSURED = true, [5] = true }), or nil and the first
-- member that is neither a string nor an integer.
local function encode_members(set)
  local members, m, mixed = {}, 0, false
  for k, v in next, set do
    if v then
      if type(k) ~= "string" then
        if math_type(k) ~= "integer" then return nil, k end
        mixed = true
      end
      m = m + 1
      members[m] = k
    end
  end
  if m > 1 then sort(members, mixed and set_order or nil) end
  for i = 1, m do
    local k = members[i]
    members[i] = type(k) == "string" and quote(k) or tostring(k)
  end
  return "[" .. concat(members, ",", 1, m) .. "]"
end

-- Sets repeat too (most flows have one of a few status sets), and sorting them is what
-- costs: their JSON is cached by a signature, the OR of one bit per member. Each set field
-- (its SET_STATE[i] = { bits =, nbits =, cache =, ncache = }) gives its members bits as they are
-- first seen, up to 64 members; a set with any other member is encoded each time.

-- The JSON of a set of the field whose state is s, or nil and a member that cannot be
-- encoded.
local function set_json(set, s)
  local sig, bits = 0, s.bits
  for k, v in next, set do
    if v then
      local bit = bits[k]
      if not bit then
        if s.nbits == 64 or (type(k) ~= "string" and math_type(k) ~= "integer") then
          return encode_members(set)
        end
        bit = 1 << s.nbits
        bits[k], s.nbits = bit, s.nbits + 1
      end
      sig = sig | bit
    end
  end
  local q = s.cache[sig]
  if not q then
    q = encode_members(set)
    if s.ncache >= CACHE_MAX then s.cache, s.ncache = {}, 0 end
    s.cache[sig], s.ncache = q, s.ncache + 1
  end
  return q
end

-- Raises "WHO: expected a conntrack.flow" at the caller of WHO unless flow is one.
local function check_flow(flow, who)
  local mt = getmetatable(flow)
  if mt == flow_mt and mt ~= nil then return end
  if type(flow) ~= "userdata" or type(mt) ~= "table" or mt.__name ~= "conntrack.flow" then
    local name = type(mt) == "table" and mt.__name
    error(format("%s: expected a conntrack.flow, got %s", who,
                 type(name) == "string" and name or type(flow)), 3)
  end
  flow_mt, totable = mt, flow.totable
end

-- The context of an error in field NAMES[i] of a flow, at $.name or, inside an event,
-- $.flow.name: ctx, depth.
local function flow_context(who, in_event, i)
  if in_event then return { who = who, seen = {}, "flow", NAMES[i] }, 2 end
  return { who = who, seen = {}, NAMES[i] }, 1
end

-- Appends the JSON object of a flow (checked by check_flow) after buf[n]; returns the new n.
local function encode_flow(flow, buf, n, who, in_event)
  if not NAMES then load_fields() end
  local t = totable(flow)
  local keys = FIRST_KEY
  for i = 1, NFIELDS do
    local v = t[NAMES[i]]
    if v ~= nil then
      n = n + 1
      buf[n] = keys[i]
      keys = NEXT_KEY
      local tv = type(v)
      n = n + 1
      if tv == "string" then
        local q = string_cache[v]
        if not q then
          q = quote(v)
          if CACHED[i] then
            if string_cache_n >= CACHE_MAX then string_cache, string_cache_n = {}, 0 end
            string_cache[v], string_cache_n = q, string_cache_n + 1
          end
        end
        buf[n] = q
      elseif tv == "number" and math_type(v) == "integer" then
        local q = integer_cache[v]
        if not q then
          q = tostring(v)
          if CACHED[i] then
            if integer_cache_n >= CACHE_MAX then integer_cache, integer_cache_n = {}, 0 end
            integer_cache[v], integer_cache_n = q, integer_cache_n + 1
          end
        end
        buf[n] = q
      elseif tv == "boolean" then
        buf[n] = v and "true" or "false"
      elseif SET_STATE[i] and tv == "table" then
        local q, bad = set_json(v, SET_STATE[i])
        if not q then
          local ctx, depth = flow_context(who, in_event, i)
          fail(ctx, depth, "cannot encode set member " .. describe_key(bad))
        end
        buf[n] = q
      else  -- not produced by the C core today; encoded as json.encode would
        local ctx, depth = flow_context(who, in_event, i)
        n = encode_value(v, buf, n - 1, ctx, depth)
      end
    end
  end
  n = n + 1
  buf[n] = keys == FIRST_KEY and "{}" or "}"
  return n
end

--- Encodes a flow as one JSON object: the stable, documented schema of `-o json`.
-- `h:write(file, { json = true })` writes the same bytes from C (core/json_print.c), one
-- line per entry of a dump; this function is the reference it is tested against.
--
-- The keys are the flow's present fields (those `flow:totable()` gives), in the order of
-- `conntrack.fields`: family, proto, src, dst, sport, dport, srckey, dstkey, icmp_type,
-- icmp_code, icmp_id, reply_src, reply_dst, reply_sport, reply_dport, reply_srckey,
-- reply_dstkey, reply_icmp_type, reply_icmp_code, reply_icmp_id, state, timeout, mark,
-- secmark, zone, orig_zone, reply_zone, status, labels, packets, bytes, reply_packets,
-- reply_bytes, start, stop, id, use, helper, secctx, snat, dnat, tcp_flags, reply_tcp_flags,
-- vtag, reply_vtag (fields
-- added to conntrack.fields later take their place in that list). A field the flow lacks is
-- left out, never `null`. Values:
--
-- - strings: `family` (`"ipv4"`, `"ipv6"`), `proto` when it has a name, the addresses
--   (`"10.0.0.1"`, `"fd00::1"`), `state` (`"ESTABLISHED"`), `helper`, `secctx`;
-- - integers: `proto` when it has no name, ports, GRE keys, ICMP type/code/id, `timeout`
--   (seconds), `mark`, `secmark`, zones, counters, `start` and `stop` (nanoseconds since the
--   epoch), `id`, `use`, `vtag`, `reply_vtag`;
-- - booleans: `snat`, `dnat`;
-- - `status`, `tcp_flags`, `reply_tcp_flags`: an array of the set flags' names in ascending
--   order, e.g. `["ASSURED","CONFIRMED","SEEN_REPLY"]`, `[]` when none is set;
-- - `labels`: an array of the label names in ascending order, then the bit numbers of labels
--   without a name (numbers, ascending), e.g. `["blue","red",5,70]`.
--
-- Example: `{"family":"ipv4","proto":"tcp","src":"10.0.0.1","dst":"10.0.0.2","sport":1,
-- "dport":2,...,"state":"ESTABLISHED","timeout":100,"mark":7,"zone":0,...,
-- "status":["CONFIRMED"],"id":3197031564,"use":1,"snat":false,"dnat":false,
-- "tcp_flags":["BE_LIBERAL","SACK_PERM"],"reply_tcp_flags":["BE_LIBERAL","SACK_PERM"]}`.
-- @param flow a `conntrack.flow`
-- @treturn string the JSON object
-- @raise `json.flow: expected a conntrack.flow, got TYPE`
function json.flow(flow)
  check_flow(flow, "json.flow")
  local buf = spare or {}
  spare = nil
  return finish(buf, encode_flow(flow, buf, 0, "json.flow", false))
end

-- ---------------------------------------------------------------------------
-- Events
-- ---------------------------------------------------------------------------

local KIND_JSON = { new = '"new"', update = '"update"', destroy = '"destroy"',
                    overrun = '"overrun"' }
local EVENT_FIELDS = { kind = true, time = true, portid = true, lost = true, flow = true,
                       expect = true }

-- Raises "json.event: WHAT" at the caller of json.event; level is json.event's own level
-- seen from the caller of event_error.
local function event_error(what, level)
  error("json.event: " .. what, level + 1)
end

local function check_integer(v, name)
  if v ~= nil and math_type(v) ~= "integer" then
    event_error(format("field '%s' must be an integer, got %s", name, math_type(v) or type(v)), 3)
  end
end

-- The names of the fields of event other than EVENT_FIELDS, sorted (nil when none).
local function other_fields(event)
  local names
  for k in next, event do
    if not EVENT_FIELDS[k] then
      if type(k) ~= "string" then
        event_error("field names must be strings, got " .. describe_key(k), 3)
      end
      names = names or {}
      names[#names + 1] = k
    end
  end
  if names then sort(names) end
  return names
end

-- The keys of an expectation, in the order json.expect writes them.
local EXPECT_KEYS = { "family", "proto", "expected", "mask", "master", "nat", "timeout", "zone",
                      "flags", "helper", "class", "fn", "nat_dir" }
local EXPECT_TUPLES = { expected = true, mask = true, master = true, nat = true }

--- Encodes an expectation (a `conntrack.expect`) as one JSON object.
--
-- Keys, in this order, each left out when absent: `family`, `proto` (of the expected
-- tuple), `expected`, `mask`, `master`, `nat` (tuples, as objects of the `json.flow` schema),
-- `timeout`, `zone`, `flags` (a sorted array of names: PERMANENT, INACTIVE, USERSPACE),
-- `helper`, `class`, `fn`, `nat_dir`.
-- @param e the expectation
-- @treturn string the JSON object
-- @raise `json.expect: expected a conntrack.expect, got ...`
function json.expect(e)
  local mt = getmetatable(e)
  if type(e) ~= "userdata" or type(mt) ~= "table" or mt.__name ~= "conntrack.expect" then
    error("json.expect: expected a conntrack.expect, got " .. type(e), 2)
  end
  local t, parts = e:totable(), {}
  for _, k in ipairs(EXPECT_KEYS) do
    local v = t[k]
    if v ~= nil then
      if EXPECT_TUPLES[k] then
        v = json.flow(v)
      elseif k == "flags" then
        local names = {}
        for name in pairs(v) do names[#names + 1] = name end
        sort(names)
        v = json.encode(setmetatable(names, json.array))
      else
        v = json.encode(v)
      end
      parts[#parts + 1] = quote_key(k) .. v
    end
  end
  return "{" .. concat(parts, ",") .. "}"
end

--- Encodes an event record as one JSON object.
--
-- The record is `{ kind =, time =, portid =, lost =, flow = }`, each field optional; a field
-- that is absent is left out. The keys come in the order kind, time, portid, lost, flow:
--
-- - `kind`: a string: `"new"`, `"update"`, `"destroy"` or `"overrun"`;
-- - `time`: seconds since the epoch, a number with exactly six decimals (microseconds), e.g.
--   `1795777568.928259`;
-- - `portid`: an integer, the netlink port id of the process that caused the change;
-- - `lost`: an integer, how many events an overrun lost;
-- - `flow`: a `conntrack.flow`, as an object of the `json.flow` schema;
-- - `expect`: for expectation events, a `conntrack.expect` as `json.expect` writes it.
--
-- Any other fields of the record (string names, e.g. `nsid`, `resync`) follow, in ascending
-- order of their names, encoded as by `json.encode`.
--
-- Example: `{"kind":"new","time":1795777568.928259,"portid":123,"flow":{"family":"ipv4",...}}`.
-- @tparam table event the event record
-- @treturn string the JSON object
-- @raise at the caller: `json.event: field 'time' must be a finite number, got string` and
-- the like for kind (a string), portid and lost (integers) and flow (a conntrack.flow), or
-- `field names must be strings, got number 1`; for other fields the errors of `json.encode`,
-- as `json.event: cannot encode a function at $.extra`
function json.event(event)
  if type(event) ~= "table" then
    event_error("expected an event table, got " .. type(event), 2)
  end
  local kind, time, portid, lost, flow = event.kind, event.time, event.portid, event.lost,
                                         event.flow
  if kind ~= nil and type(kind) ~= "string" then
    event_error("field 'kind' must be a string, got " .. type(kind), 2)
  end
  if time ~= nil and (type(time) ~= "number" or time ~= time or time == huge or time == -huge) then
    event_error("field 'time' must be a finite number, got " ..
                (type(time) == "number" and tostring(time) or type(time)), 2)
  end
  check_integer(portid, "portid")
  check_integer(lost, "lost")
  if flow ~= nil then check_flow(flow, "json.event") end
  local others = other_fields(event)

  local buf = spare or {}
  spare = nil
  local n, sep = 0, "{"
  if kind ~= nil then
    buf[1], buf[2] = '{"kind":', KIND_JSON[kind] or quote(kind)
    n, sep = 2, ","
  end
  if time ~= nil then
    local s = format("%.6f", time)
    if find(s, ",", 1, true) then s = gsub(s, ",", ".") end   -- a locale's decimal comma
    buf[n + 1], buf[n + 2], buf[n + 3] = sep, '"time":', s
    n, sep = n + 3, ","
  end
  if portid ~= nil then
    buf[n + 1], buf[n + 2], buf[n + 3] = sep, '"portid":', tostring(portid)
    n, sep = n + 3, ","
  end
  if lost ~= nil then
    buf[n + 1], buf[n + 2], buf[n + 3] = sep, '"lost":', tostring(lost)
    n, sep = n + 3, ","
  end
  if flow ~= nil then
    buf[n + 1], buf[n + 2] = sep, '"flow":'
    n, sep = encode_flow(flow, buf, n + 2, "json.event", true), ","
  end
  if event.expect ~= nil then
    buf[n + 1], buf[n + 2], buf[n + 3] = sep, '"expect":', json.expect(event.expect)
    n, sep = n + 3, ","
  end
  if others then
    local ctx = { who = "json.event", seen = {} }
    for i = 1, #others do
      local k = others[i]
      buf[n + 1], buf[n + 2] = sep, quote_key(k)
      ctx[1] = k
      n, sep = encode_value(event[k], buf, n + 2, ctx, 1), ","
    end
  end
  n = n + 1
  buf[n] = sep == "{" and "{}" or "}"
  return finish(buf, n)
end

return json
