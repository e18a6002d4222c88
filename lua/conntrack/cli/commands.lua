--- The commands on the conntrack table, through the library's public API: -L (and the
-- dying and unconfirmed lists), -G, -I, -A, -U, -D, -F, -C, -S. Each takes the run's
-- context (out, err, counter) and the parsed command, prints what conntrack prints, and
-- returns; conntrack's fatal errors are raised as { status, msg }.
-- @module conntrack.cli.commands
local kernel = require "conntrack.cli.kernel"
local values = require "conntrack.cli.values"

-- loaded by the commands that print or filter (not by -C, -S, -F)
local function lazy(name)
  return setmetatable({}, { __index = function(t, k)
    local m = require(name)
    setmetatable(t, { __index = m })
    return m[k]
  end })
end
local filter = lazy "conntrack.cli.filter"
local output = lazy "conntrack.cli.output"
local protocols = lazy "conntrack.cli.protocols"

local M = {}

local fmt = string.format

local function fail(status, msg) error({ status = status, msg = msg }, 0) end

-- Prints one entry in the -o format of place (output.lua), with the XML header where
-- conntrack prints one; json replaces everything.
local function print_flow(ctx, cmd, place, f, kind)
  local out = ctx.out
  if cmd.output.json then
    out:write(require("conntrack.json").flow(f), "\n")
    return
  end
  if cmd.output.xml and not cmd.output.save and (place == "list" or place == "event") then
    output.write_xml_start(ctx, "conntrack")
  end
  local key = "format_" .. place
  local format = cmd[key]
  if not format then
    format = output.formatter(cmd.output, place)
    cmd[key] = format
  end
  out:write(format(f, kind), "\n")
end
M.print_flow = print_flow

-- nfct_filter_init: --mask-src needs --src (and --mask-dst --dst).
local function check_masks(cmd)
  if cmd.options["mask-src"] and not cmd.ct.src then
    fail(2, "Can't use --mask-src without --src")
  end
  if cmd.options["mask-dst"] and not cmd.ct.dst then
    fail(2, "Can't use --mask-dst without --dst")
  end
end
M.check_masks = check_masks

-- -L: the conntrack table (optionally zeroing counters), or the dying/unconfirmed lists.
function M.CT_LIST(ctx, cmd)
  local special = cmd.table == "dying" or cmd.table == "unconfirmed"
  if not special then
    if cmd.options.zero and filter.compares(cmd) then
      fail(2, "Can't use -z with filtering parameters")
    end
    check_masks(cmd)
    -- the kernel refuses a status filter with an empty mask (-u SRC_NAT)
    if cmd.status and cmd.status.mask == 0 then
      kernel.handle(ctx, cmd)
      kernel.failed("CT_LIST", kernel.EINVAL)
    end
  end
  local h = kernel.handle(ctx, cmd)
  local f = filter.build(cmd, "list")
  local opts = special and { table = cmd.table } or (cmd.options.zero and { zero = true }) or nil
  local o = cmd.output
  kernel.guard("CT_LIST", function()
    if io.type(ctx.out) == "file" and not o.save then
      -- printed in C straight to the file: no Lua object per entry (json: what
      -- print_flow's json.flow gives, see core/json_print.c)
      local format = { json = true }
      if not o.json then
        format = output.format_options(o, "list")
        format.header = o.xml and output.xml_start("conntrack") or nil
      end
      local n = h:write(ctx.out, format, f, opts) or 0   -- (output errors go unseen, as in C)
      ctx.xml_header = ctx.xml_header or (o.xml and n > 0)
      ctx.counter = ctx.counter + n
      return
    end
    for fl in h:dump(f, opts) do
      print_flow(ctx, cmd, "list", fl)
      ctx.counter = ctx.counter + 1
    end
  end)
  if ctx.xml_header then ctx.out:write("</conntrack>\n") end
end

local PORT_PROTOS = { [6] = true, [17] = true, [136] = true, [132] = true, [33] = true }
local ZERO_ADDR = { ipv4 = "0.0.0.0", ipv6 = "::" }

-- The text of address a, or the family's zero address (what an unset one is sent as).
local function addr_or_zero(a, family)
  return a and a.text or ZERO_ADDR[family]
end

-- The original tuple's ids (ports, keys or ICMP fields) of ct into t, each 0 when not given:
-- what conntrack's template sends for an unset one.
local function put_ids(t, ct)
  local p = ct.proto
  if PORT_PROTOS[p] then
    t.sport, t.dport = ct.sport or 0, ct.dport or 0
  elseif p == 47 then
    t.srckey, t.dstkey = ct.srckey or 0, ct.dstkey or 0
  elseif p == 1 or p == 58 then
    t.icmp_type, t.icmp_code, t.icmp_id = ct.icmp_type, ct.icmp_code, ct.icmp_id or 0
  end
end

-- The library's tuple of the command's original tuple (for get, create and expectations).
local function tuple_of(ct, with_reply)
  local t = { proto = ct.proto }
  if ct.src then t.src = ct.src.text end
  if ct.dst then t.dst = ct.dst.text end
  local p = ct.proto
  if PORT_PROTOS[p] then
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
M.tuple_of = tuple_of

-- Whether the address text (the library's) is addr (the command line's).
local function same_addr(text, addr)
  local have = text and values.parse_addr(text)
  if not have or #have.bytes ~= #addr.bytes then return false end
  for i, b in ipairs(addr.bytes) do
    if have.bytes[i] ~= b then return false end
  end
  return true
end

-- What nfct_filter still checks on the entry -G found: its original tuple (the kernel
-- finds an entry by either of its tuples), the reply tuple, and --state, --id and the
-- labels given.
local function get_matches(cmd, t)
  local ct = cmd.ct
  for _, k in ipairs({ "src", "dst", "reply_src", "reply_dst" }) do
    if ct[k] and not same_addr(t[k], ct[k]) then return false end
  end
  for _, k in ipairs({ "sport", "dport", "srckey", "dstkey", "reply_sport", "reply_dport",
                       "state", "id" }) do
    if ct[k] ~= nil and t[k] ~= ct[k] then return false end
  end
  for _, name in ipairs(cmd.labels.filter or {}) do
    if not (t.labels and t.labels[name]) then return false end
  end
  return true
end

-- -G: the entry of the original tuple (1.4.7 sends no usable tuple without one of its
-- addresses: EINVAL). A part of it not given goes as 0, as in conntrack's template: the
-- kernel then finds nothing.
function M.CT_GET(ctx, cmd)
  local h = kernel.handle(ctx, cmd)
  local ct = cmd.ct
  if not (ct.src or ct.dst) then kernel.failed("CT_GET", kernel.EINVAL) end
  local t = { proto = ct.proto, zone = ct.zone }
  t.src, t.dst = addr_or_zero(ct.src, cmd.family), addr_or_zero(ct.dst, cmd.family)
  put_ids(t, ct)
  local ok, fl, msg, errno = pcall(h.get, h, t)
  if not ok then kernel.failed("CT_GET", kernel.EINVAL) end
  if not fl then kernel.failed("CT_GET", errno, msg) end
  if not get_matches(cmd, fl:totable()) then return end
  print_flow(ctx, cmd, "list", fl)
  ctx.counter = ctx.counter + 1
end


-- The library's NAT target ("ADDR", "ADDR:PORT", "[ADDR6]:PORT") of -n or -g, if any.
local function nat_target(nat)
  if not (nat and nat.addr) then return nil end
  local addr = nat.addr.text
  if not nat.port then return addr end
  return (addr:find(":", 1, true) and "[" .. addr .. "]" or addr) .. ":" .. nat.port
end

-- The library spec of -I/-A, built the way conntrack's template reaches the kernel (a port,
-- key or address not given is 0): with only the original tuple, the reply is its inverse
-- (reply ports given are overwritten); with only the reply tuple, the original is its
-- inverse and its protocol is the reply's, 0 when no reply port, key or (after the reply
-- address) ICMP option was given; with both, each is sent as given, and a reply tuple of
-- protocol 0 is refused. tests/create_lines_spec.lua checks this on random lines.
function M.create_spec(cmd, command)
  local function einval() kernel.failed(command, kernel.EINVAL) end
  local ct, o = cmd.ct, cmd.options
  local p = ct.proto
  local ports, gre, icmp = PORT_PROTOS[p], p == 47, p == 1 or p == 58
  local has_orig = o.src or o.dst
  local has_reply = o["reply-src"] or o["reply-dst"]
  local spec = { proto = p }
  if has_orig then
    spec.src, spec.dst = addr_or_zero(ct.src, cmd.family), addr_or_zero(ct.dst, cmd.family)
    -- (protocols.lua: the reply type is 255, and the reply tuple is ICMP or refused)
    if icmp and ct.icmp_type_early then einval() end
    put_ids(spec, ct)
    if has_reply then
      spec.reply_src = addr_or_zero(ct.reply_src, cmd.family)
      spec.reply_dst = addr_or_zero(ct.reply_dst, cmd.family)
      if ports then
        if not (ct.reply_sport or ct.reply_dport) then einval() end
        spec.reply_sport, spec.reply_dport = ct.reply_sport or 0, ct.reply_dport or 0
      elseif gre then
        if not (ct.reply_srckey or ct.reply_dstkey) then einval() end
        spec.reply_srckey, spec.reply_dstkey = ct.reply_srckey or 0, ct.reply_dstkey or 0
      elseif icmp and not ct.reply_icmp then
        einval()    -- (protocols.lua: the reply tuple is of protocol 0)
      end
    end
  else
    spec.src, spec.dst = ct.reply_dst.text, ct.reply_src.text
    if ports and (ct.reply_sport or ct.reply_dport) then
      spec.sport, spec.dport = ct.reply_dport or 0, ct.reply_sport or 0
    elseif gre and (ct.reply_srckey or ct.reply_dstkey) then
      spec.srckey, spec.dstkey = ct.reply_dstkey or 0, ct.reply_srckey or 0
    elseif icmp and ct.reply_icmp then
      if ct.icmp_type_early then einval() end   -- (the reply type is 255)
      put_ids(spec, ct)
    elseif ports or gre or icmp then
      spec.proto = 0
    end
  end
  -- -n and -g have the kernel set up NAT, which rewrites the reply tuple
  spec.snat, spec.dnat = nat_target(cmd.nat.src), nat_target(cmd.nat.dst)
  spec.timeout = ct.timeout
  if ct.state and (spec.proto == 6 or spec.proto == 132 or spec.proto == 33) then
    spec.state = ct.state
  end
  if cmd.status then spec.status = cmd.status.value end
  if cmd.mark then spec.mark = cmd.mark.value end
  spec.zone, spec.orig_zone, spec.reply_zone = ct.zone, ct.orig_zone, ct.reply_zone
  if spec.proto == 132 then spec.vtag, spec.reply_vtag = ct.vtag, ct.reply_vtag end
  if cmd.labels.add then spec.labels = cmd.labels.add end
  if spec.proto == 6 then protocols.set_window_flags(spec, ct.state) end
  return spec
end

-- Whether a create's error fails the command: 1.4.7's -A sends the same request as -I and
-- counts an existing entry as 0 added.
local function create_fails(command, errno)
  return not (command == "CT_ADD" and errno == kernel.EEXIST)
end

local function create_one(ctx, h, spec, command)
  local ok, res, msg, errno = pcall(h.create, h, spec)
  if not ok then kernel.failed(command, kernel.EINVAL) end
  if res then
    ctx.counter = ctx.counter + 1
  elseif create_fails(command, errno) then
    kernel.failed(command, errno, msg)
  end
end

local function create(ctx, cmd, command)
  local h = kernel.handle(ctx, cmd)
  create_one(ctx, h, M.create_spec(cmd, command), command)
end
function M.CT_CREATE(ctx, cmd) create(ctx, cmd, "CT_CREATE") end
function M.CT_ADD(ctx, cmd) create(ctx, cmd, "CT_ADD") end

local CREATE_BATCH = 64
local TUPLE_KEYS = { "proto", "src", "dst", "sport", "dport", "icmp_type", "icmp_code",
                     "icmp_id", "srckey", "dstkey", "zone", "orig_zone" }

-- Deletes the entry spec created, found by its original tuple.
local function undo_create(h, spec)
  local tuple = {}
  for _, k in ipairs(TUPLE_KEYS) do tuple[k] = spec[k] end
  local ok, fl = pcall(h.get, h, tuple)
  if ok and fl then h:delete(fl) end
end

--- -I and -A of many lines (-R) in pipelined batches, with the results that create on
-- each in turn would have: queue.add(command, netns, spec) for each, queue.flush() before
-- anything else runs and at the end. The kernel goes on past a failed request, so the
-- entries a batch created after its first failure are deleted again before the failure
-- is raised: the table is left as conntrack, which stops at the failing line, leaves it.
function M.create_queue(ctx)
  local items, queue = {}, {}
  function queue.flush()
    if #items == 0 then return end
    local batch = items
    items = {}
    local h = kernel.handle(ctx, { netns = batch[1].netns })
    local specs = {}
    for i, item in ipairs(batch) do specs[i] = item.spec end
    local ok, n, _, _, report = pcall(h.create, h, specs)
    if not ok then    -- a spec the library refuses (nothing was sent): one at a time
      for _, item in ipairs(batch) do create_one(ctx, h, item.spec, item.command) end
      return
    end
    if n then
      ctx.counter = ctx.counter + n
      return
    end
    local failed = {}
    for _, r in ipairs(report) do failed[r.index] = r end
    for i, item in ipairs(batch) do
      local r = failed[i]
      if not r then
        ctx.counter = ctx.counter + 1
      elseif r.unknown or create_fails(item.command, r.errno) then
        for later = i + 1, #batch do   -- (a lost answer may hide a create too)
          local rl = failed[later]
          if not rl or rl.unknown then undo_create(h, batch[later].spec) end
        end
        kernel.failed(item.command, r.errno, r.message)
      end
    end
  end
  function queue.add(command, netns, spec)
    items[#items + 1] = { command = command, netns = netns, spec = spec }
    if #items == CREATE_BATCH then queue.flush() end
  end
  return queue
end

-- -D: each matching entry is deleted (by tuple and id) and printed; an entry that went
-- away meanwhile is skipped.
function M.CT_DELETE(ctx, cmd)
  check_masks(cmd)
  local h = kernel.handle(ctx, cmd)
  local f = filter.build(cmd, "delete")
  -- pipelined: each entry is printed once the kernel acknowledged its delete, in the
  -- dump's order; entries that vanished meanwhile are skipped (1.4.8)
  local n, msg, errno = h:delete(f, function(fl)
    print_flow(ctx, cmd, "delete", fl)
    ctx.counter = ctx.counter + 1
  end)
  if not n then kernel.failed("CT_DELETE", errno, msg) end
end

local function u32(v) return v & 0xffffffff end

-- The changes -U makes to entry t, or nil when it already has them (conntrack then
-- neither sends nor counts it).
local function update_changes(cmd, t)
  local ch, differs = {}, false
  local ct = cmd.ct
  if ct.timeout then
    ch.timeout = ct.timeout
    if ct.timeout ~= t.timeout then differs = true end
  end
  if cmd.mark then
    local old = t.mark or 0
    local new = u32((old & ~cmd.mark.mask) ~ cmd.mark.value)
    ch.mark = new
    if new ~= old then differs = true end
  end
  if cmd.status then
    local parse = require "conntrack.cli.parse"
    local v = cmd.status.value
    local have = 0
    for name, bit in pairs(parse.STATUS_BITS) do
      if t.status and t.status[name] then have = have | bit end
    end
    if v ~= 0 then ch.status = v end
    if v & have ~= v then differs = true end
  end
  for _, k in ipairs{ "state", "vtag", "reply_vtag" } do
    if ct[k] and t[k] then
      ch[k] = ct[k]
      if ct[k] ~= t[k] then differs = true end
    end
  end
  -- conntrack sends labels with a mask the entry never has, so adding always differs;
  -- deleting differs when the entry has label storage (deleting all: any label set)
  if cmd.labels.add then
    ch.labels_add = cmd.labels.add
    differs = true
  elseif cmd.labels.del == true then
    local all = {}
    for name in pairs(t.labels or {}) do all[#all + 1] = name end
    if #all > 0 then ch.labels_del = all; differs = true end
  elseif cmd.labels.del then
    ch.labels_del = cmd.labels.del
    if t.labels then differs = true end
  end
  if not differs or next(ch) == nil then return nil end
  if ct.proto == 6 then protocols.set_window_flags(ch, ct.state) end  -- never a reason alone
  return ch
end

-- The error the kernel gives conntrack's update of fl with changes ch, which the library
-- would make whole: NAT addresses (never changed by an update), or an SCTP state or tag
-- without the other two (the kernel takes the three together; the library completes them).
local function refusal(ch, fl, nat_given)
  if nat_given then return kernel.EOPNOTSUPP end
  if fl.proto == "sctp" and (ch.state or ch.vtag or ch.reply_vtag) and
     not (ch.state and ch.vtag and ch.reply_vtag) then
    return kernel.EINVAL
  end
end

-- -U: every matching entry that the changes would alter is updated, read back and printed.
function M.CT_UPDATE(ctx, cmd)
  check_masks(cmd)
  local h = kernel.handle(ctx, cmd)
  local f = filter.build(cmd, "update")
  local nat_given = false
  for _, nat in pairs(cmd.nat) do
    if nat.addr or nat.port then nat_given = true end
  end
  kernel.guard("CT_UPDATE", function()
    for fl in h:dump(f) do
      local ch = update_changes(cmd, fl:totable())
      local refused = ch and refusal(ch, fl, nat_given)
      if refused then
        ctx.err:write("Operation failed: ", kernel.err2str(refused, "CT_UPDATE"), "\n")
      elseif ch then
        local n, msg, errno = h:update(fl, ch)
        if n == 1 then
          local now = h:get(fl)
          if now then
            print_flow(ctx, cmd, "update", now)
            ctx.counter = ctx.counter + 1
          end
        elseif n == nil and errno ~= kernel.ENOENT then
          -- 1.4.7 reports it without its prefix and goes on
          ctx.err:write("Operation failed: ", kernel.err2str(errno, "CT_UPDATE", msg), "\n")
        end
      end
    end
  end)
end

-- -F: the message comes before the result is known.
function M.CT_FLUSH(ctx, cmd)
  local h = kernel.handle(ctx, cmd)
  local ok, msg, errno = h:flush(cmd.family and { family = cmd.family } or nil)
  ctx.err:write(require("conntrack.cli.options").PREFIX,
                "connection tracking table has been emptied.\n")
  if not ok then kernel.failed("CT_FLUSH", errno, msg) end
end

local function read_file(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- -C: the kernel's counter; /proc when netlink fails (then the failure is reported too).
function M.CT_COUNT(ctx, cmd)
  local h = kernel.handle(ctx, cmd)
  local n, msg, errno = h:count()
  if n then
    ctx.out:write(fmt("%d\n", n))
    return
  end
  local path = "/proc/sys/net/netfilter/nf_conntrack_count"
  local s = read_file(path)
  if not s then fail(1, "Can't open " .. path) end
  local v = s:match("^%s*([+-]?%d+)")
  if not v then fail(1, "Can't read " .. path) end
  ctx.out:write(fmt("%d\n", tonumber(v)))
  kernel.failed("CT_COUNT", errno, msg)
end

-- conntrack -S's fallback: /proc/net/stat/nf_conntrack, its hexadecimal columns named by
-- the first line.
local function proc_stats(ctx)
  local s = read_file("/proc/net/stat/nf_conntrack")
  if not s then return false end
  local lines = {}
  for line in s:gmatch("[^\n]+") do lines[#lines + 1] = line end
  if #lines == 0 then return false end
  local names = {}
  for w in lines[1]:gmatch("%S+") do names[#names + 1] = w end
  for cpu = 2, #lines do
    local vals = {}
    for w in lines[cpu]:gmatch("%S+") do vals[#vals + 1] = tonumber(w, 16) or 0 end
    local parts = { fmt("cpu=%-4d\t", cpu - 2) }
    for i, name in ipairs(names) do parts[#parts + 1] = fmt("%s=%d ", name, (vals[i] or 0) & 0xffffffff) end
    ctx.out:write(table.concat(parts), "\n")
  end
  return #lines > 1
end
M.proc_stats = proc_stats

-- The counters of -S in attribute order, with conntrack's names for the newer ones.
local CT_STATS = { "searched", "found", "new", "invalid", "ignore", "delete", "delete_list",
                   "insert", "insert_failed", "drop", "early_drop", "error", "search_restart",
                   "clash_resolve", "chaintoolong", "unknown16", "unknown17", "unknown18",
                   "unknown19" }
local CT_STATS_NAMES = { unknown16 = "unknown1", unknown17 = "unknown2", unknown18 = "unknown3",
                         unknown19 = "unknown4" }
local EXP_STATS = { "expect_new", "expect_create", "expect_delete" }

function M.print_stats(ctx, cpus, order, names)
  for _, c in ipairs(cpus) do
    local parts = { fmt("cpu=%-4d\t", c.cpu) }
    for _, key in ipairs(order) do
      if c[key] then parts[#parts + 1] = fmt("%s=%d ", names[key] or key, c[key]) end
    end
    ctx.out:write(table.concat(parts), "\n")
  end
end

local function stats(ctx, cmd, method, command, order, names)
  local h = kernel.handle(ctx, cmd)
  local cpus, msg, errno = h[method](h)
  if cpus then
    M.print_stats(ctx, cpus, order, names)
    return
  end
  if not proc_stats(ctx) then fail(1, "Can't open /proc interface") end
  kernel.failed(command, errno, msg)
end

function M.CT_STATS(ctx, cmd)
  stats(ctx, cmd, "stats", "CT_STATS", CT_STATS, CT_STATS_NAMES)
end

function M.EXP_STATS(ctx, cmd)
  stats(ctx, cmd, "expect_stats", "EXP_STATS", EXP_STATS, {})
end

return M
