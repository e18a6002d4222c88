--- conntrack's entry filters (nfct_filter, and what -U compares) written in the library's
-- filter language, so that the family, the mark and every term the library can check run
-- in the kernel or in C; what it cannot say (NAT with an address or a port, non-prefix
-- --mask-src/--mask-dst, status tests that can never match) becomes the Lua predicate
-- at [1].
--
-- conntrack's semantics, as 1.4.7 shows them:
--   * -m is `(mark & M) == V`; -u is "every named bit is set" plus the kernel's
--     `(status & K) == V` test of the dump, whose mask K is the !NAME and UNREPLIED bits,
--     or the named bits when there are none;
--   * the tuple, -p and its options, --state, -t, --id and the zones are compared only
--     when one of the "comparison" options is given (as nfct_cmp is), and a zone of 0
--     matches entries without a zone; GRE keys and --secmark are never compared;
--   * -n/-g/-j without an address match any source/destination NAT (address or port);
--     with IP[:PORT] they compare the reply tuple; an IPv6 address is not compared;
--   * -l needs every label;
--   * --mask-src/--mask-dst (or a CIDR suffix) compare the network of the entry's
--     original addresses.
-- @module conntrack.cli.filter
local tuples = require "conntrack.cli.tuple"
local values = require "conntrack.cli.values"

local M = {}

local COMPARISON = { "protonum", "src", "dst", "reply-src", "reply-dst", "mark", "secmark",
                     "status", "id", "zone", "label", "orig-zone", "reply-zone" }

local STATUS_LIB = { [0] = "EXPECTED", [1] = "SEEN_REPLY", [2] = "ASSURED",
                     [10] = "FIXED_TIMEOUT", [14] = "OFFLOAD", [15] = "HW_OFFLOAD" }
local SRC_NAT_DONE, DST_NAT_DONE = "SRC_NAT_DONE", "DST_NAT_DONE"

local function any_option(o, list)
  for _, n in ipairs(list) do
    if o[n] then return true end
  end
  return false
end

--- Whether the command gives one of conntrack's comparison options (CT_COMPARISON).
function M.compares(cmd)
  return any_option(cmd.options, COMPARISON)
end

local function bytes_of(text)
  return values.inet_aton(text) or values.inet_pton6(text)
end

-- The 16-bit "all" value of the layer-4 part of a tuple as libnetfilter_conntrack
-- compares it for NAT port tests: ports and GRE keys, or ICMP's id / type<<8|code.
local function l4(t, dir, part)
  local proto = t.proto
  if proto == "icmp" or proto == "icmpv6" then
    local pre = dir == "reply" and "reply_" or ""
    if part == "src" then return t[pre .. "icmp_id"] or 0 end
    return ((t[pre .. "icmp_type"] or 0) << 8) | (t[pre .. "icmp_code"] or 0)
  end
  local pre = dir == "reply" and "reply_" or ""
  if proto == "gre" then return t[pre .. (part == "src" and "srckey" or "dstkey")] or 0 end
  return t[pre .. (part == "src" and "sport" or "dport")] or 0
end

-- NFCT_GOPT_IS_SPAT / IS_DPAT
local function spat(t)
  local nat_done = not t.status or t.status[SRC_NAT_DONE]
  return nat_done and l4(t, "reply", "dst") ~= l4(t, "orig", "src")
end
local function dpat(t)
  local nat_done = not t.status or t.status[DST_NAT_DONE]
  return nat_done and l4(t, "reply", "src") ~= l4(t, "orig", "dst")
end

-- filter_nat: -n, -g, -j with their optional IP[:PORT].
local function nat_predicate(cmd)
  local o = cmd.options
  local any = o["any-nat"]
  local check_src, check_dst = o["src-nat"] or any, o["dst-nat"] or any
  local snat, dnat = cmd.nat.src, cmd.nat.dst
  local function has(t, want, is_nat, is_pat, addr_field, port_field)
    local check_address, check_port, found = false, false, false
    if want and want.addr and want.addr.family == "ipv4" then
      check_address = true
      found = is_nat(t) and t[addr_field] == want.addr.text
    end
    if want and want.port then
      check_port = true
      local ret = is_pat(t) and t[port_field] == want.port
      if check_address and found and not ret then found = false end
      if not check_address and ret then found = true end
    end
    if not check_address and not check_port and (is_nat(t) or is_pat(t)) then found = true end
    return found
  end
  local function is_snat(t) return t.snat end
  local function is_dnat(t) return t.dnat end
  -- the fields the tests read, fetched from the flow only when asked for
  local proxy = setmetatable({}, { __index = function(p, k)
    local v = p.f[k]
    rawset(p, k, v == nil and false or v)
    return v
  end })
  return function(f)
    local t = setmetatable({ f = f }, getmetatable(proxy))
    local s = check_src and has(t, snat, is_snat, spat, "reply_dst", "reply_dport")
    local d = check_dst and has(t, dnat, is_dnat, dpat, "reply_src", "reply_sport")
    if any then return s or d end
    if o["src-nat"] and o["dst-nat"] then return s and d end
    if o["src-nat"] then return s end
    return d
  end
end

-- --mask-src/--mask-dst: a CIDR term when the mask is a prefix, else a predicate.
local function network(cmd, dir, f, preds)
  local addr, mask = cmd.ct[dir], cmd.mask[dir]
  local prefix = values.mask_prefix(mask.bytes)
  if prefix then
    f[dir] = addr.text .. "/" .. prefix
    return
  end
  local want = {}
  for k = 1, #mask.bytes do want[k] = addr.bytes[k] & mask.bytes[k] end
  preds[#preds + 1] = function(fl)
    local b = bytes_of(fl[dir])
    if not b or #b ~= #want then return false end
    for k = 1, #want do
      if b[k] & mask.bytes[k] ~= want[k] then return false end
    end
    return true
  end
end

-- The tuple terms of the template.
local function tuple(cmd, f, orig, reply)
  local ct, o = cmd.ct, cmd.options
  if orig then
    if ct.src and not o["mask-src"] then f.src = ct.src.text end
    if ct.dst and not o["mask-dst"] then f.dst = ct.dst.text end
  end
  if reply then
    if ct.reply_src then f.reply_src = ct.reply_src.text end
    if ct.reply_dst then f.reply_dst = ct.reply_dst.text end
  end
  if ct.proto then f.proto = ct.proto end
  if tuples.PORTS[ct.proto] then
    if orig then f.sport, f.dport = ct.sport, ct.dport end
    if reply then f.reply_sport, f.reply_dport = ct.reply_sport, ct.reply_dport end
  end
  if ct.proto == 1 or ct.proto == 58 then
    f.icmp_type, f.icmp_code, f.icmp_id = ct.icmp_type, ct.icmp_code, ct.icmp_id
  end
end

-- -u: (status & K) == V and V all set; a status test that cannot match gives false.
local function status_term(cmd, f, preds)
  local v, k = cmd.status.value, cmd.status.mask
  if v & k ~= v then
    preds[#preds + 1] = function() return false end
    return
  end
  if k == 0 then return end
  local set = {}
  for bit, name in pairs(STATUS_LIB) do
    if k & (1 << bit) ~= 0 then set[name] = v & (1 << bit) ~= 0 end
  end
  f.status = set
end

--- The library filter of cmd for mode: "list" (-L, -G and -E), "delete", "update".
-- Returns the filter table (with a predicate at [1] when needed).
function M.build(cmd, mode)
  local f, preds = {}, {}
  local o = cmd.options
  if cmd.family and mode ~= "get" then f.family = cmd.family end
  if o["src-nat"] or o["dst-nat"] or o["any-nat"] then preds[#preds + 1] = nat_predicate(cmd) end
  if cmd.labels.filter then f.labels = cmd.labels.filter end
  if o["mask-src"] then network(cmd, "src", f, preds) end
  if o["mask-dst"] then network(cmd, "dst", f, preds) end
  if mode == "update" then
    if cmd.ct.id then f.id = cmd.ct.id end
    tuple(cmd, f, o.src or o.dst or o.protonum, o["reply-src"] or o["reply-dst"] or o.protonum)
  else
    if cmd.mark then f.mark = string.format("%d/%d", cmd.mark.value, cmd.mark.mask) end
    if M.compares(cmd) then
      local ct = cmd.ct
      tuple(cmd, f, true, true)
      f.state, f.timeout, f.id = ct.state, ct.timeout, ct.id
      f.zone, f.orig_zone, f.reply_zone = ct.zone, ct.orig_zone, ct.reply_zone
      if cmd.status then status_term(cmd, f, preds) end
    end
  end
  if #preds == 1 then
    f[1] = preds[1]
  elseif #preds > 1 then
    f[1] = function(fl)
      for _, p in ipairs(preds) do
        if not p(fl) then return false end
      end
      return true
    end
  end
  return f
end

return M
