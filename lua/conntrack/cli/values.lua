--- Value parsers of the conntrack command line, with the C library's exact
-- semantics: strtoul/strtol/atoi/atol (what they accept, how they wrap),
-- inet_aton and inet_pton, CIDR suffixes, the NAT `IP[:PORT]` syntax,
-- comma lists matched by prefix, and getprotobyname over /etc/protocols.
-- Pure functions: errors are returned, never printed.
-- @module conntrack.cli.values
local M = {}

local byte, sub, find, lower, match, format = string.byte, string.sub, string.find,
                                             string.lower, string.match, string.format

local U32 = 0xffffffff
local ULONG_MAX = -1          -- 2^64 - 1 as a Lua integer (strtoul's overflow value)

local function isspace(c)
  return c == 32 or (c >= 9 and c <= 13)
end

-- Whether s has a decimal digit at i.
local function digit_at(s, i)
  local c = byte(s, i)
  return c ~= nil and c >= 48 and c <= 57
end

local function digit_value(c)
  if c >= 48 and c <= 57 then return c - 48 end
  if c >= 97 and c <= 122 then return c - 87 end
  if c >= 65 and c <= 90 then return c - 55 end
  return 99
end

-- floor((2^64 - 1) / base) in unsigned arithmetic (// on a Lua integer is signed).
local function ulong_limit(base)
  local q = (ULONG_MAX >> 1) // base << 1      -- the remainder is now below 2 * base
  if not math.ult(ULONG_MAX - q * base, base) then q = q + 1 end
  return q
end

--- strtoul(s + i - 1, &end, base): returns value (a 64-bit unsigned number held in a Lua
-- integer), the index just after the number (i when nothing was parsed) and whether it
-- overflowed (ERANGE). Leading blanks and a sign are accepted; "-N" is 2^64 - N.
function M.strtoul(s, base, i)
  i = i or 1
  -- the usual word, a plain decimal that cannot overflow, needs none of the C rules
  local plain = (base == 10 or base == 0) and match(s, "^[1-9]%d?%d?%d?%d?%d?%d?%d?%d?%d?()", i)
  if plain and not digit_at(s, plain) then return tonumber(sub(s, i, plain - 1)), plain, false end
  local start, n = i, #s
  while i <= n and isspace(byte(s, i)) do i = i + 1 end
  local neg = false
  local c = byte(s, i)
  if c == 45 or c == 43 then neg = c == 45; i = i + 1 end
  if (base == 0 or base == 16) and byte(s, i) == 48 and (byte(s, i + 1) or 0) | 32 == 120
     and digit_value(byte(s, i + 2) or 0) < 16 then
    base, i = 16, i + 2
  elseif base == 0 then
    base = byte(s, i) == 48 and 8 or 10
  end
  local v, any, over = 0, false, false
  local limit = ulong_limit(base)
  while i <= n do
    local d = digit_value(byte(s, i))
    if d >= base then break end
    any = true
    if not over then
      -- v * base + d > 2^64 - 1 ?
      if math.ult(limit, v) or (v == limit and math.ult(ULONG_MAX - v * base, d)) then
        over = true
      else
        v = v * base + d
      end
    end
    i = i + 1
  end
  if not any then return 0, start, false end
  if over then return ULONG_MAX, i, true end
  if neg then v = -v end
  return v, i, false
end

--- strtol(s, &end, 10) clamped to a 64-bit long: value, end index.
function M.strtol(s, i)
  i = i or 1
  -- the usual word of digits alone, too short to overflow
  if i == 1 and #s <= 18 and #s > 0 and not find(s, "%D") then return tonumber(s), #s + 1 end
  local plain = match(s, "^[1-9]%d?%d?%d?%d?%d?%d?%d?%d?%d?()", i)
  if plain and not digit_at(s, plain) then return tonumber(sub(s, i, plain - 1)), plain end
  local start, n = i, #s
  while i <= n and isspace(byte(s, i)) do i = i + 1 end
  local neg = false
  local c = byte(s, i)
  if c == 45 or c == 43 then neg = c == 45; i = i + 1 end
  local v, any, over = 0, false, false
  while i <= n do
    local c2 = byte(s, i)
    if c2 < 48 or c2 > 57 then break end
    any = true
    if not over then
      if v > (math.maxinteger - (c2 - 48)) // 10 then over = true else v = v * 10 + c2 - 48 end
    end
    i = i + 1
  end
  if not any then return 0, start end
  if over then return neg and math.mininteger or math.maxinteger, i end
  return neg and -v or v, i
end

--- atol(s): strtol without error reporting.
function M.atol(s)
  return (M.strtol(s))
end

--- atoi(s): a C int (atol truncated to 32 bits, as glibc's (int) strtol does).
function M.atoi(s)
  local v = M.strtol(s) & U32
  if v >= 0x80000000 then v = v - 0x100000000 end
  return v
end

--- The integer v truncated to bits bits (C's conversion to an unsigned type).
function M.trunc(v, bits)
  return v & ((1 << bits) - 1)
end

--- The 32-bit v with its bytes reversed (htonl/ntohl on this little-endian machine).
function M.bswap32(v)
  return ((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >> 8) & 0xff00) | ((v >> 24) & 0xff)
end

-- ---------------------------------------------------------------------------
-- Addresses
-- ---------------------------------------------------------------------------

--- glibc's inet_aton: "a", "a.b", "a.b.c" and "a.b.c.d" with C numbers in each part
-- (0x hex, 0 octal), anything after a blank ignored. Returns the 4 bytes as a table or nil,
-- and true when s is the address's own text (a.b.c.d in plain decimals).
function M.inet_aton(s)
  -- the usual "a.b.c.d" in plain decimals needs none of the C rules
  local q1, q2, q3, q4 = match(s, "^(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)$")
  if q1 and not find(s, "%f[%d]0%d") then  -- (a leading 0 would make a part octal)
    q1, q2, q3, q4 = tonumber(q1), tonumber(q2), tonumber(q3), tonumber(q4)
    if q1 <= 255 and q2 <= 255 and q3 <= 255 and q4 <= 255 then
      return { q1, q2, q3, q4 }, true
    end
  end
  local parts, i = {}, 1
  local val, digit
  while true do
    local c = byte(s, i)
    if not c or c < 48 or c > 57 then return nil end
    local v, e, over = M.strtoul(s, 0, i)
    if over or math.ult(U32, v) then return nil end
    val, digit, i = v, e ~= i, e
    c = byte(s, i)
    if c == 46 then
      if #parts > 2 or val > 255 then return nil end
      parts[#parts + 1] = val
      i = i + 1
    else
      if c and (c > 127 or not isspace(c)) then return nil end
      break
    end
  end
  if not digit then return nil end
  local max = ({ U32, 0xffffff, 0xffff, 0xff })[#parts + 1]
  if val > max then return nil end
  local word = 0
  for k, p in ipairs(parts) do word = word | (p << (8 * (4 - k))) end
  word = word | val
  return { (word >> 24) & 255, (word >> 16) & 255, (word >> 8) & 255, word & 255 }
end

-- inet_pton(AF_INET): exactly four decimal octets, no leading zeros.
local function pton4(s, i, j, out)
  local saw, octets, cur = false, 0, 0
  local tmp = {}
  while i <= j do
    local c = byte(s, i)
    i = i + 1
    if c >= 48 and c <= 57 then
      if saw and cur == 0 then return false end
      cur = cur * 10 + c - 48
      if cur > 255 then return false end
      if not saw then
        octets = octets + 1
        if octets > 4 then return false end
        saw = true
      end
      tmp[octets] = cur
    elseif c == 46 and saw then
      if octets == 4 then return false end
      cur, saw = 0, false
    else
      return false
    end
  end
  if octets < 4 then return false end
  for k = 1, 4 do out[#out + 1] = tmp[k] end
  return true
end

--- glibc's inet_pton(AF_INET6): 16 bytes as a table, or nil.
function M.inet_pton6(s)
  local n = #s
  local i = 1
  if n == 0 then return nil end
  if byte(s, 1) == 58 then
    i = 2
    if i > n or byte(s, i) ~= 58 then return nil end
  end
  local out, colonp, curtok, seen, val = {}, nil, i, 0, 0
  while i <= n do
    local c = byte(s, i)
    i = i + 1
    local d = digit_value(c)
    if d < 16 then
      if seen == 4 then return nil end
      val = (val << 4) | d
      if val > 0xffff then return nil end
      seen = seen + 1
    elseif c == 58 then
      curtok = i
      if seen == 0 then
        if colonp then return nil end
        colonp = #out
      else
        if i > n then return nil end
        if #out + 2 > 16 then return nil end
        out[#out + 1], out[#out + 2] = val >> 8, val & 255
        seen, val = 0, 0
      end
    elseif c == 46 and #out + 4 <= 16 and pton4(s, curtok, n, out) then
      goto done  -- an IPv4 tail ends the address
    else
      return nil
    end
  end
  if seen > 0 then
    if #out + 2 > 16 then return nil end
    out[#out + 1], out[#out + 2] = val >> 8, val & 255
  end
  ::done::
  if colonp then
    if #out == 16 then return nil end
    local tail = {}
    for k = colonp + 1, #out do tail[#tail + 1] = out[k] end
    for k = #out, colonp + 1, -1 do out[k] = nil end
    for _ = 1, 16 - colonp - #tail do out[#out + 1] = 0 end
    for _, b in ipairs(tail) do out[#out + 1] = b end
  end
  if #out ~= 16 then return nil end
  return out
end

--- Text of an address given as 4 or 16 bytes (IPv6 as eight full groups: inet_pton reads it).
function M.addr_text(bytes)
  if #bytes == 4 then
    return format("%d.%d.%d.%d", bytes[1], bytes[2], bytes[3], bytes[4])
  end
  local b = bytes
  return format("%x:%x:%x:%x:%x:%x:%x:%x", b[1] << 8 | b[2], b[3] << 8 | b[4], b[5] << 8 | b[6],
                b[7] << 8 | b[8], b[9] << 8 | b[10], b[11] << 8 | b[12], b[13] << 8 | b[14],
                b[15] << 8 | b[16])
end

--- The netmask of a prefix length as bytes (nbytes 4 or 16).
function M.prefix_mask(len, nbytes)
  local m = {}
  for k = 1, nbytes do
    local bits = math.max(0, math.min(8, len - 8 * (k - 1)))
    m[k] = (0xff << (8 - bits)) & 0xff
  end
  return m
end

--- The prefix length of a netmask, or nil when its ones are not contiguous.
function M.mask_prefix(mask)
  local len, ended = 0, false
  for _, b in ipairs(mask) do
    for bit = 7, 0, -1 do
      if b & (1 << bit) ~= 0 then
        if ended then return nil end
        len = len + 1
      else
        ended = true
      end
    end
  end
  return len
end

local function parse_addr(arg, cidr)
  local buf = sub(arg, 1, 45)
  local prefix
  if cidr then
    local slash = find(buf, "/", 1, true)
    if slash then
      local v, e = M.strtol(buf, slash + 1)
      v = v & U32                                   -- stored in a C int
      if v >= 0x80000000 then v = v - 0x100000000 end
      if v < 0 or e ~= #buf + 1 then prefix = -2 else prefix = v end
      buf = sub(buf, 1, slash - 1)
    end
  end
  local bytes, own_text = M.inet_aton(buf)
  local family = "ipv4"
  if not bytes then
    bytes, family = M.inet_pton6(buf), "ipv6"
  end
  if not bytes then return nil, prefix end
  if prefix and prefix > (family == "ipv4" and 32 or 128) then prefix = -2 end
  return { family = family, bytes = bytes, text = own_text and buf or M.addr_text(bytes) }, prefix
end

-- Addresses recur (a save-format line of -R names each one twice), so the latest results
-- of the parse with CIDR (the command line's) are kept; the address tables are shared and
-- never changed.
local recent, recent_count = {}, 0
local RECENT_MAX = 32

--- conntrack's parse_addr: the text is cut to 45 bytes (its INET6_ADDRSTRLEN buffer), an
-- optional "/N" is split off when cidr is true, then inet_aton and inet_pton(AF_INET6) are
-- tried. Returns { family = "ipv4"|"ipv6", bytes = {...}, text = "..." } or nil, and the
-- prefix: nil (none), a number, or -2 (invalid, as conntrack calls it). The address table
-- may be shared with other calls: read it, do not change it.
function M.parse_addr(arg, cidr)
  if not cidr then return parse_addr(arg, false) end
  local known = recent[arg]
  if known then return known[1], known[2] end
  local addr, prefix = parse_addr(arg, true)
  if addr then
    if recent_count >= RECENT_MAX then recent, recent_count = {}, 0 end
    recent[arg] = { addr, prefix }
    recent_count = recent_count + 1
  end
  return addr, prefix
end

--- conntrack's split_address_and_port for -n/-g/-j: address text and port text (or nil),
-- or nil and an error message.
function M.split_nat(arg)
  local address, port
  local lb = find(arg, "[", 1, true)
  local cursor
  if lb then
    local start = lb + 1
    local rb = find(arg, "]", start, true)
    if rb == start then return nil, "No IPv6 address specified" end
    if not rb then return nil, "No closing ']' around IPv6 address" end
    cursor = find(arg, ":", rb, true)
    if cursor then address = sub(arg, start, rb - 1) end
  else
    cursor = find(arg, ":", 1, true)
    if cursor and not find(arg, ":", cursor + 1, true) then
      address = sub(arg, 1, cursor - 1)
    else
      cursor = nil
    end
  end
  if cursor then
    port = sub(arg, cursor + 1)
    if port == "" then return nil, "No port specified after `:'" end
    if not find(port, "^%d+$") or #port > 18 or tonumber(port) > 65535 then
      return nil, format("Invalid port `%s'", port)
    end
  else
    address = arg
  end
  return address, port
end

-- ---------------------------------------------------------------------------
-- Lists: -u, -e, -o
-- ---------------------------------------------------------------------------

-- strncasecmp(given, name, #given) == 0: given is a case-insensitive prefix of name.
local function prefix_of(given, name)
  return #given <= #name and lower(given) == lower(sub(name, 1, #given))
end

--- One item of a list: the SRC_NAT/DST_NAT warning (returns "SRC_NAT"/"DST_NAT"), or the
-- index of the first name that it is a prefix of, or nil.
function M.match_item(item, names)
  if prefix_of(item, "SRC_NAT") then return "SRC_NAT" end
  if prefix_of(item, "DST_NAT") then return "DST_NAT" end
  for k, name in ipairs(names) do
    if prefix_of(item, name) then return k end
  end
  return nil
end

--- Splits a comma list the way conntrack's parse_parameter walks it: a list of items, each
-- { text = item, rest = the text from this item on } (rest is what "Bad parameter" shows).
function M.split_list(arg)
  local items, pos = {}, 1
  while true do
    local comma = find(arg, ",", pos, true)
    if not comma then
      items[#items + 1] = { text = sub(arg, pos), rest = sub(arg, pos), last = true }
      return items
    end
    items[#items + 1] = { text = sub(arg, pos, comma - 1), rest = sub(arg, pos) }
    pos = comma + 1
  end
end

-- ---------------------------------------------------------------------------
-- Protocols
-- ---------------------------------------------------------------------------

local protocols   -- name or alias -> { name =, number = }, from /etc/protocols

local function load_protocols(path)
  protocols = { byname = {}, bynumber = {} }
  local f = io.open(path or "/etc/protocols")
  if not f then return end
  for line in f:lines() do
    line = line:gsub("#.*", "")
    local words = {}
    for w in line:gmatch("%S+") do words[#words + 1] = w end
    if #words >= 2 then
      local num = tonumber(words[2])
      if num and words[2]:find("^%d+$") then
        local entry = { name = words[1], number = num }
        for k = 1, #words do
          if k ~= 2 and not protocols.byname[words[k]] then protocols.byname[words[k]] = entry end
        end
        if not protocols.bynumber[num] then protocols.bynumber[num] = entry end
      end
    end
  end
  f:close()
end

--- getprotobyname(name): the protocol number, or nil.
function M.getprotobyname(name)
  if not protocols then load_protocols() end
  local e = protocols.byname[name]
  return e and e.number
end

--- getprotobynumber(n): the official name, or nil.
function M.getprotobynumber(n)
  if not protocols then load_protocols() end
  local e = protocols.bynumber[n]
  return e and e.name
end

--- conntrack's parse_proto_num: strtoul base 0, the whole word, at most 255.
function M.proto_number(s)
  local v, e = M.strtoul(s, 0)
  if e == 1 or e ~= #s + 1 or math.ult(255, v) then return nil end
  return v
end

return M
