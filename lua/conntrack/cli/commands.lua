--- The commands on the conntrack table, through the library's public API: -L (and the
-- dying and unconfirmed lists), -G, -U, -D, -F, -C, -S (-I and -A are in create.lua).
-- Each takes the run's context (out, err, counter) and the parsed command, prints what
-- conntrack prints, and returns; conntrack's fatal errors are raised as { status, msg }.
-- @module conntrack.cli.commands
local kernel = require "conntrack.cli.kernel"
local tuples = require "conntrack.cli.tuple"
local lazy = require "conntrack.cli.lazy"

-- loaded by the commands that print, filter or name an address (not by -C, -S, -F)
local values = lazy "conntrack.cli.values"
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
  out:write(output.command_formatter(cmd, place)(f, kind), "\n")
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
  t.src = tuples.addr_or_zero(ct.src, cmd.family)
  t.dst = tuples.addr_or_zero(ct.dst, cmd.family)
  tuples.put_ids(t, ct)
  local ok, fl, msg, errno = pcall(h.get, h, t)
  if not ok then kernel.failed("CT_GET", kernel.EINVAL) end
  if not fl then kernel.failed("CT_GET", errno, msg) end
  if not get_matches(cmd, fl:totable()) then return end
  print_flow(ctx, cmd, "list", fl)
  ctx.counter = ctx.counter + 1
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
