--- The benchmark's table: entry i of a table filled with seed s is always
-- the same spec, whatever else is created, so a case that deleted some
-- entries re-creates exactly those (fill.create with a predicate).
--
-- The mix (per 1000 entries): 530 tcp and 30 ssh over IPv4, 220 udp, 40 icmp,
-- 80 tcp, 30 udp and 10 icmpv6 over IPv6, 30 gre, 30 sctp. TCP states as a
-- busy server sees them (mostly ESTABLISHED and TIME_WAIT); 15% of the marks
-- and 8% of the zones are set; 12% of the IPv4 tcp/udp entries are
-- source-NATed and 6% destination-NATed (the reply tuple is not the inverse).
-- Original tuples are unique by construction: entry i is port or id slot
-- i % 16 of client i // 16. Timeouts are at least an hour, so nothing expires
-- during a run.
--
-- As a script: ct-lua bench/fill.lua N [SEED] fills this namespace's table.
local fill = {}

fill.BATCH = 4096  -- specs per h:create call

-- splitmix64: a random-access generator, draw k of entry i.
local function draw(seed, i, k)
  local z = seed * 0x632BE59BD9B4E019 + (i * 8 + k) * 0x9E3779B97F4A7C15
  z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
  z = (z ~ (z >> 27)) * 0x94D049BB133111EB
  return (z ~ (z >> 31)) & 0x7fffffffffffffff
end

-- Picks from { {weight, value}, ... } whose weights add up to 1000.
local function pick(choices, r)
  r = r % 1000
  for _, c in ipairs(choices) do
    if r < c[1] then return c[2] end
    r = r - c[1]
  end
  error("weights do not add up to 1000")
end

local ASSURED = { ASSURED = true, SEEN_REPLY = true }
local REPLIED = { SEEN_REPLY = true }
local NONE = {}

local TCP_STATES = {
  { 600, { "ESTABLISHED", ASSURED } }, { 150, { "TIME_WAIT", ASSURED } },
  { 80, { "SYN_SENT", NONE } }, { 30, { "SYN_RECV", REPLIED } },
  { 40, { "FIN_WAIT", ASSURED } }, { 40, { "CLOSE_WAIT", ASSURED } },
  { 20, { "LAST_ACK", ASSURED } }, { 40, { "CLOSE", REPLIED } },
}
local TCP_PORTS = {
  { 500, 443 }, { 250, 80 }, { 50, 22 }, { 60, 8080 }, { 40, 3306 }, { 40, 5432 },
  { 30, 25 }, { 30, 993 },
}
local UDP_PORTS = { { 500, 53 }, { 100, 123 }, { 250, 443 }, { 50, 5353 }, { 100, 51820 } }
local SCTP_STATES = {
  { 700, "ESTABLISHED" }, { 100, "COOKIE_WAIT" }, { 100, "COOKIE_ECHOED" },
  { 50, "SHUTDOWN_SENT" }, { 50, "CLOSED" },
}
local MARKS = {
  { 850, 0 }, { 40, 1 }, { 30, 5 }, { 30, 7 }, { 20, 0x10 }, { 20, 0x100 }, { 10, 0xdead },
}
local ZONES = { { 920, 0 }, { 20, 1 }, { 20, 2 }, { 20, 3 }, { 10, 4 }, { 10, 5 } }
local KINDS = {
  { 530, "tcp4" }, { 30, "ssh4" }, { 220, "udp4" }, { 40, "icmp4" }, { 80, "tcp6" },
  { 30, "udp6" }, { 10, "icmp6" }, { 30, "gre" }, { 30, "sctp" },
}

local function client4(c)
  return string.format("10.%d.%d.%d", (c >> 16) & 255, (c >> 8) & 255, c & 255)
end
local function server4(r)
  return string.format("198.18.%d.%d", r % 64, 1 + (r >> 8) % 254)
end

--- The spec of entry i (1-based) of the table filled with seed.
function fill.spec(i, seed)
  seed = seed or 1
  local n = i - 1
  local c, slot = n >> 4, n & 15
  local r1, r2, r3 = draw(seed, i, 1), draw(seed, i, 2), draw(seed, i, 3)
  local kind = pick(KINDS, r1)
  local s = {
    timeout = 3600 + r3 % 86400,
    mark = pick(MARKS, r2 >> 12),
    zone = pick(ZONES, r2 >> 24),
  }
  if s.mark == 0 then s.mark = nil end
  if s.zone == 0 then s.zone = nil end
  local v6 = kind:sub(-1) == "6"
  if v6 then
    s.src = string.format("fd00:10::%x:%x", c >> 16, c & 0xffff)
    s.dst = string.format("2001:db8:%x::%x", r1 % 16, 1 + (r1 >> 10) % 4000)
  else
    s.src, s.dst = client4(c), server4(r1 >> 10)
  end
  local port = 1024 + slot * 4000 + (r2 >> 40) % 4000  -- unique for (client, slot)
  if kind == "tcp4" or kind == "ssh4" or kind == "tcp6" then
    s.proto, s.sport = "tcp", port
    s.dport = kind == "ssh4" and 22 or pick(TCP_PORTS, r3 >> 20)
    local st = pick(TCP_STATES, r3 >> 30)
    s.state, s.status = st[1], st[2]
  elseif kind == "udp4" or kind == "udp6" then
    s.proto, s.sport, s.dport = "udp", port, pick(UDP_PORTS, r3 >> 20)
    local r = (r3 >> 30) % 10
    s.status = r < 5 and ASSURED or r < 7 and REPLIED or NONE
  elseif kind == "icmp4" or kind == "icmp6" then
    s.proto = v6 and "icmpv6" or "icmp"
    s.icmp_type, s.icmp_code, s.icmp_id = v6 and 128 or 8, 0, port
    s.status = (r3 >> 30) % 5 == 0 and NONE or REPLIED
  elseif kind == "gre" then
    s.proto, s.srckey, s.dstkey = "gre", port, 1 + (r3 >> 20) % 65535
    s.status = ASSURED
  else
    s.proto, s.sport, s.dport = "sctp", port, (r3 >> 20) % 2 == 0 and 3868 or 2905
    s.state, s.status = pick(SCTP_STATES, r3 >> 30), ASSURED
    s.vtag, s.reply_vtag = 1 + (r3 >> 34) % 0xfffffff, 1 + (r2 >> 34) % 0xfffffff
  end
  if not v6 and (s.proto == "tcp" or s.proto == "udp") then
    local nat = (r3 >> 50) % 100
    if nat < 12 then      -- SNAT: masquerade to one of 9 addresses, unique port
      s.reply_dst = string.format("203.0.113.%d", 1 + (n >> 15))
      s.reply_dport = 1024 + (n & 32767)
    elseif nat < 18 then  -- DNAT: a public address to a backend
      s.dst = string.format("192.0.2.%d", 1 + (r1 >> 40) % 8)
      s.reply_src = string.format("10.200.%d.%d", (r2 >> 50) % 256, 1 + (r3 >> 56) % 250)
      s.reply_sport = 8080
    end
  end
  return s
end

--- Creates entries first..last of the seed's table (those for which
-- pred(spec, i) is true, when pred is given). Returns how many were created;
-- raises if the kernel refused any.
function fill.create(h, first, last, seed, pred)
  local batch, created = {}, 0
  local function flush()
    if #batch == 0 then return end
    local n, err = h:create(batch)
    if not n then error("fill: " .. tostring(err)) end
    created = created + n
    batch = {}
  end
  for i = first, last do
    local s = fill.spec(i, seed)
    if not pred or pred(s, i) then
      batch[#batch + 1] = s
      if #batch == fill.BATCH then flush() end
    end
  end
  flush()
  return created
end

if arg and arg[0] and arg[0]:match("fill%.lua$") then
  local n = assert(tonumber(arg[1]), "usage: fill.lua N [SEED]")
  local h = assert(require("conntrack").open())
  local t0 = require("conntrack").monotonic()
  local created = fill.create(h, 1, n, tonumber(arg[2]) or 1)
  io.stderr:write(string.format("%d entries created in %.2f s\n", created,
                                require("conntrack").monotonic() - t0))
end

return fill
