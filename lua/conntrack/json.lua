--- A dependency-free JSON encoder (RFC 8259), pure Lua 5.4, and the JSON schema of flows
-- and events used by `-o json`.
--
-- Output is deterministic: the same value always gives the same bytes. Errors are raised
-- with messages that start with the function's name, e.g.
-- `json.encode: cannot encode a function at $.handlers[2]`, never as a stack overflow.
--
-- Values map to JSON as follows:
--
-- - strings: JSON strings. `"` and `\` are escaped, control characters U+0000..U+001F as
--   `\b \t \n \f \r` or `\u00XX`; valid UTF-8 is kept as is (no `\uXXXX` for non-ASCII);
--   every byte that is not part of a valid UTF-8 sequence becomes `\ufffd`, so the output is
--   always valid JSON and valid UTF-8.
-- - integers (`math.type` "integer"): decimal, the whole 64-bit range.
-- - floats: the shortest of `%.15g`, `%.16g`, `%.17g` that reads back as the same number,
--   with `.0` added when that looks like an integer (`0.5`, `2.0`, `1e+300`). NaN and
--   infinities raise.
-- - booleans: `true`, `false`; `nil` (top level only) and `json.null`: `null`.
-- - tables: an array when the keys are exactly the integers 1..n (n >= 1), or when the table
--   has the `json.array` metatable (then it may be empty); otherwise an object, whose keys must
--   all be strings, written in sorted (byte) order. `{}` is `{}`. Metatables are ignored
--   (raw access, no metamethod runs). A table met again inside itself raises (cycle); the same
--   table twice side by side is fine. Nesting is limited to 1000 levels.
-- - functions, userdata, threads raise.
-- @module conntrack.json
local json = {}

local type, next, rawlen, tostring, tonumber, error, getmetatable, setmetatable =
      type, next, rawlen, tostring, tonumber, error, getmetatable, setmetatable
local math_type, huge = math.type, math.huge
local concat, sort = table.concat, table.sort
local format, find, gsub = string.format, string.find, string.gsub
local utf8_len = utf8.len

local MAX_DEPTH = 1000

--- The `null` sentinel: `json.encode{ a = json.null }` is `{"a":null}`.
json.null = setmetatable({}, {
  __name = "json.null",
  __tostring = function() return "json.null" end,
  __newindex = function() error("json.null is read-only", 2) end,
})
local null = json.null

--- The metatable that marks a table as a JSON array, also when it is empty:
-- `json.encode(setmetatable({}, json.array))` is `[]`. Such a table must hold only the
-- keys 1..n.
json.array = { __name = "json.array" }
local array_mt = json.array

-- ---------------------------------------------------------------------------
-- Strings
-- ---------------------------------------------------------------------------

local ESCAPE = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
                 ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
for c = 0, 31 do
  local ch = string.char(c)
  ESCAPE[ch] = ESCAPE[ch] or format("\\u%04x", c)
end

local SPECIAL = '[\0-\31"\\\128-\255]'   -- anything that is not copied as it is
local TO_ESCAPE = '[\0-\31"\\]'

-- s with every byte outside valid UTF-8 sequences replaced by U+FFFD, and escaped.
local function escape_invalid_utf8(s)
  local parts, n, i, len = {}, 0, 1, #s
  while i <= len do
    local ok, bad = utf8_len(s, i)
    if ok then bad = len + 1 end
    if bad > i then
      n = n + 1
      parts[n] = gsub(s:sub(i, bad - 1), TO_ESCAPE, ESCAPE)
    end
    if bad <= len then
      n = n + 1
      parts[n] = "\\ufffd"
    end
    i = bad + 1
  end
  return concat(parts, "", 1, n)
end

--- The JSON string literal (with its quotes) of the Lua string s.
local function quote(s)
  if not find(s, SPECIAL) then
    return '"' .. s .. '"'
  end
  if not find(s, "[\128-\255]") or utf8_len(s) then
    return '"' .. gsub(s, TO_ESCAPE, ESCAPE) .. '"'
  end
  return '"' .. escape_invalid_utf8(s) .. '"'
end

-- Object keys repeat: their quoted form with the colon is kept (up to KEY_CACHE_MAX, then
-- the cache starts over, so memory stays bounded whatever is encoded).
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

-- "$.a[2]["odd key"]": where the value at path[1..depth] is; the middle of a very deep
-- path is shown as "...".
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

-- Raises "WHO: WHAT[ at PATH]". ctx = { who = "json.encode", seen = {}, [1..depth] = keys }.
local function fail(ctx, depth, what)
  local where = depth > 0 and (" at " .. path_string(ctx, depth)) or ""
  error(ctx.who .. ": " .. what .. where, 0)
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
  if not find(s, "[.e]") then s = s .. ".0" end             -- keep it a float: 2.0, -0.0
  return s
end

local encode_table

-- Appends the JSON of v to buf[n+1 ...]; returns the new n.
local function encode_value(v, buf, n, ctx, depth)
  local tv = type(v)
  if tv == "string" then
    n = n + 1
    buf[n] = quote(v)
  elseif tv == "number" then
    n = n + 1
    if math_type(v) == "integer" then
      buf[n] = tostring(v)
    else
      buf[n] = float(v, ctx, depth)
    end
  elseif tv == "boolean" then
    n = n + 1
    buf[n] = v and "true" or "false"
  elseif tv == "table" then
    if v == null then
      n = n + 1
      buf[n] = "null"
    else
      n = encode_table(v, buf, n, ctx, depth)
    end
  elseif v == nil then
    n = n + 1
    buf[n] = "null"
  else
    local mt = getmetatable(v)
    local name = type(mt) == "table" and type(mt.__name) == "string" and mt.__name
    fail(ctx, depth, "cannot encode a " .. tv .. (name and (" (" .. name .. ")") or ""))
  end
  return n
end

local function describe_key(k)
  if type(k) == "string" then return quote(k) end
  return type(k) .. " " .. tostring(k)
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

function encode_table(t, buf, n, ctx, depth)
  local seen = ctx.seen
  if seen[t] then fail(ctx, depth, "cannot encode a reference cycle") end
  if depth >= MAX_DEPTH then fail(ctx, depth, "nesting deeper than " .. MAX_DEPTH .. " levels") end
  seen[t] = true
  local marked = getmetatable(t) == array_mt
  -- an array when the keys are exactly 1..len
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
    if len == 0 then
      n = n + 1
      buf[n] = "[]"
    else
      n = n + 1
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

--- Encodes a Lua value as JSON text (see the module description for the mapping).
-- @param value a string, number, boolean, nil, `json.null`, or a table of those
-- @treturn string the JSON text, without whitespace
-- @raise `json.encode: cannot encode a function` (also userdata, thread), `cannot encode NaN`,
-- `cannot encode inf`, `cannot encode a reference cycle`, `cannot encode table key ...` (a
-- non-string key in an object), each followed by ` at $.path` when not at the top level.
function json.encode(value)
  local buf = {}
  local n = encode_value(value, buf, 0, { who = "json.encode", seen = {} }, 0)
  return concat(buf, "", 1, n)
end

-- ---------------------------------------------------------------------------
-- Flows and events
-- ---------------------------------------------------------------------------

-- Built on first use from conntrack.fields, so json.encode works without the C module.
local NAMES, NFIELDS, FIRST_KEY, NEXT_KEY, IS_SET
local flow_mt       -- the conntrack.flow metatable, once a flow has been seen

local function load_fields()
  local fields = require("conntrack").fields
  NAMES, FIRST_KEY, NEXT_KEY, IS_SET = {}, {}, {}, {}
  for i, f in ipairs(fields) do
    NAMES[i] = f.name
    FIRST_KEY[i] = "{" .. quote(f.name) .. ":"
    NEXT_KEY[i] = "," .. quote(f.name) .. ":"
    IS_SET[i] = f.name == "status" or f.name == "labels"
  end
  NFIELDS = #NAMES
end

-- Values of flows repeat too (families, protocols, states, addresses, ports, zones): their
-- JSON is kept in caches of at most CACHE_MAX entries each, which start over when full, so
-- memory stays bounded however many distinct values a long event stream brings.
local CACHE_MAX = 4096
local string_cache, string_cache_n = {}, 0
local integer_cache, integer_cache_n = {}, 0

-- String members before integer members, each group in ascending order.
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

-- Sets repeat (most flows have one of a few status sets): their JSON is cached by a
-- signature, the OR of one bit per member; members get bits as they are first seen, up to
-- 64 of them (then sets with other members are encoded each time).
local member_bit, members_with_bits = {}, 0
local set_cache, set_cache_n = {}, 0

-- The JSON of a set, or nil and a member that cannot be encoded.
local function set_json(set)
  local sig = 0
  for k, v in next, set do
    if v then
      local bit = member_bit[k]
      if not bit then
        if members_with_bits == 64 or (type(k) ~= "string" and math_type(k) ~= "integer") then
          return encode_members(set)
        end
        bit = 1 << members_with_bits
        member_bit[k], members_with_bits = bit, members_with_bits + 1
      end
      sig = sig | bit
    end
  end
  local q = set_cache[sig]
  if not q then
    q = encode_members(set)
    if set_cache_n >= CACHE_MAX then set_cache, set_cache_n = {}, 0 end
    set_cache[sig], set_cache_n = q, set_cache_n + 1
  end
  return q
end

local function check_flow(flow, who)
  local mt = getmetatable(flow)
  if mt ~= flow_mt or mt == nil then
    if type(flow) ~= "userdata" or type(mt) ~= "table" or mt.__name ~= "conntrack.flow" then
      local name = type(mt) == "table" and mt.__name
      error(format("%s: expected a conntrack.flow, got %s", who,
                   type(name) == "string" and name or type(flow)), 3)
    end
    flow_mt = mt
  end
end

-- The error context of field name of a flow (at $.name, or $.prefix.name): ctx, depth.
local function flow_context(who, prefix, name)
  if prefix then return { who = who, seen = {}, prefix, name }, 2 end
  return { who = who, seen = {}, name }, 1
end

-- Appends the JSON object of a flow; returns the new n. Values that are not plain strings,
-- integers or booleans go through encode_value with a context made only then, whose path
-- starts with prefix (nil, or "flow" inside an event) for error messages.
local function encode_flow(flow, buf, n, who, prefix)
  if not NAMES then load_fields() end
  local t = flow:totable()
  local keys = FIRST_KEY
  for i = 1, NFIELDS do
    local v = t[NAMES[i]]
    if v ~= nil then
      n = n + 1
      buf[n] = keys[i]
      keys = NEXT_KEY
      local tv = type(v)
      if tv == "string" then
        n = n + 1
        local q = string_cache[v]
        if not q then
          q = quote(v)
          if string_cache_n >= CACHE_MAX then string_cache, string_cache_n = {}, 0 end
          string_cache[v], string_cache_n = q, string_cache_n + 1
        end
        buf[n] = q
      elseif tv == "number" and math_type(v) == "integer" then
        n = n + 1
        local q = integer_cache[v]
        if not q then
          q = tostring(v)
          if integer_cache_n >= CACHE_MAX then integer_cache, integer_cache_n = {}, 0 end
          integer_cache[v], integer_cache_n = q, integer_cache_n + 1
        end
        buf[n] = q
      elseif tv == "boolean" then
        n = n + 1
        buf[n] = v and "true" or "false"
      elseif IS_SET[i] and tv == "table" then
        local q, bad = set_json(v)
        if not q then
          local ctx, depth = flow_context(who, prefix, NAMES[i])
          fail(ctx, depth, "cannot encode set member " .. describe_key(bad))
        end
        n = n + 1
        buf[n] = q
      else
        n = encode_value(v, buf, n, flow_context(who, prefix, NAMES[i]))
      end
    end
  end
  n = n + 1
  buf[n] = keys == FIRST_KEY and "{}" or "}"
  return n
end

-- The buffer flows and events are built in, reused while no other encoding of a flow is
-- running (a finalizer could start one in the middle; it then gets a fresh buffer).
local flow_buf, flow_buf_busy = {}, false

--- Encodes a flow as one JSON object: the stable schema of `-o json`.
--
-- Keys are the flow's present fields (as `flow:totable()` gives them) in the order of
-- `conntrack.fields` (family, proto, src, dst, sport, dport, ..., vtag, reply_vtag), not
-- sorted; fields the flow lacks are omitted, never `null`. Values:
--
-- - strings (`family`, `proto` when named, addresses, `state`, `helper`, `secctx`): strings;
-- - numbers (ports, ids, `proto` when unnamed, `timeout`, `mark`, zones, counters, `start`
--   and `stop` in nanoseconds, `id`, `use`): integers;
-- - `snat`, `dnat`: booleans;
-- - `status`: an array of flag names in ascending byte order, e.g.
--   `["ASSURED","CONFIRMED","SEEN_REPLY"]` (`[]` when no flag is set);
-- - `labels`: an array of label names in ascending order, then the bit numbers of unnamed
--   labels, ascending, e.g. `["blue","red",5,70]`.
-- @param flow a `conntrack.flow`
-- @treturn string the JSON object
-- @raise `json.flow: expected a conntrack.flow, got ...`
function json.flow(flow)
  check_flow(flow, "json.flow")
  local buf = flow_buf
  if flow_buf_busy then buf = {} end
  flow_buf_busy = true
  local n = encode_flow(flow, buf, 0, "json.flow")
  flow_buf_busy = buf ~= flow_buf and flow_buf_busy or false
  return concat(buf, "", 1, n)
end

local KIND_JSON = { new = '"new"', update = '"update"', destroy = '"destroy"',
                    overrun = '"overrun"' }
local EVENT_KEYS = { kind = true, time = true, portid = true, lost = true, flow = true }

-- Raises a json.event argument error at the caller of json.event (level: of json.event).
local function event_error(what, level)
  error("json.event: " .. what, level + 1)
end

local function check_integer(v, name)
  if v ~= nil and math_type(v) ~= "integer" then
    event_error(format("field '%s' must be an integer, got %s", name, math_type(v) or type(v)), 3)
  end
end

--- Encodes an event record as one JSON object.
--
-- The record is `{ kind =, time =, portid =, lost =, flow = }`; every field may be absent
-- and is then omitted. Keys come in the order kind, time, portid, lost, flow:
--
-- - `kind`: a string, `"new"`, `"update"`, `"destroy"` or `"overrun"`;
-- - `time`: seconds since the epoch, a number written with six decimals (microseconds),
--   e.g. `1795777568.928259`;
-- - `portid`: an integer, the netlink port id of the process that caused the event;
-- - `lost`: an integer, how many events an overrun lost;
-- - `flow`: a `conntrack.flow`, written as by `json.flow`.
--
-- Example: `{"kind":"new","time":1795777568.928259,"portid":123,"flow":{"family":"ipv4",...}}`.
-- @tparam table event the event record
-- @treturn string the JSON object
-- @raise `json.event: unknown field 'x'`, or a field of the wrong type
function json.event(event)
  if type(event) ~= "table" then
    event_error("expected an event table, got " .. type(event), 2)
  end
  for k in next, event do
    if not EVENT_KEYS[k] then event_error("unknown field " .. describe_key(k), 2) end
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

  local buf = flow_buf
  if flow_buf_busy then buf = {} end
  flow_buf_busy = true
  local n, sep = 0, "{"
  if kind ~= nil then
    buf[1], buf[2] = '{"kind":', KIND_JSON[kind] or quote(kind)
    n, sep = 2, ","
  end
  if time ~= nil then
    buf[n + 1], buf[n + 2], buf[n + 3] = sep, '"time":', format("%.6f", time)
    n, sep = n + 3, ","
    if find(buf[n], ",", 1, true) then buf[n] = gsub(buf[n], ",", ".") end  -- locale
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
    n, sep = encode_flow(flow, buf, n + 2, "json.event", "flow"), ","
  end
  n = n + 1
  buf[n] = sep == "{" and "{}" or "}"
  flow_buf_busy = buf ~= flow_buf and flow_buf_busy or false
  return concat(buf, "", 1, n)
end

return json
