--- The tuples of a parsed command (cmd.ct) as the library takes them, and what conntrack's
-- template sends for a part not given.
-- @module conntrack.cli.tuple
local M = {}

--- The protocols with ports.
M.PORTS = { [6] = true, [17] = true, [136] = true, [132] = true, [33] = true }
local ZERO_ADDR = { ipv4 = "0.0.0.0", ipv6 = "::" }

--- The text of address a, or the family's zero address (what an unset one is sent as).
function M.addr_or_zero(a, family)
  return a and a.text or ZERO_ADDR[family]
end

--- The original tuple's ids (ports, keys or ICMP fields) of ct into t, each 0 when not given:
-- what conntrack's template sends for an unset one.
function M.put_ids(t, ct)
  local p = ct.proto
  if M.PORTS[p] then
    t.sport, t.dport = ct.sport or 0, ct.dport or 0
  elseif p == 47 then
    t.srckey, t.dstkey = ct.srckey or 0, ct.dstkey or 0
  elseif p == 1 or p == 58 then
    t.icmp_type, t.icmp_code, t.icmp_id = ct.icmp_type or 0, ct.icmp_code or 0, ct.icmp_id or 0
  end
end

--- The library's tuple of the command's original tuple (for get, create and expectations),
-- and its reply parts too when with_reply.
function M.of(ct, with_reply)
  local t = { proto = ct.proto }
  if ct.src then t.src = ct.src.text end
  if ct.dst then t.dst = ct.dst.text end
  local p = ct.proto
  if M.PORTS[p] then
    t.sport, t.dport = ct.sport, ct.dport
    if with_reply then t.reply_sport, t.reply_dport = ct.reply_sport, ct.reply_dport end
  elseif p == 47 then
    t.srckey, t.dstkey = ct.srckey, ct.dstkey
    if with_reply then t.reply_srckey, t.reply_dstkey = ct.reply_srckey, ct.reply_dstkey end
  elseif p == 1 or p == 58 then
    t.icmp_type, t.icmp_code, t.icmp_id = ct.icmp_type, ct.icmp_code, ct.icmp_id
  end
  if with_reply then
    if ct.reply_src then t.reply_src = ct.reply_src.text end
    if ct.reply_dst then t.reply_dst = ct.reply_dst.text end
  end
  return t
end

return M
