--- -I and -A, one line at a time or (for -R) in pipelined batches: the library spec of a
-- parsed command, built as conntrack's template reaches the kernel, and its creation with
-- conntrack's results and messages.
-- @module conntrack.cli.create
local kernel = require "conntrack.cli.kernel"
local tuples = require "conntrack.cli.tuple"
local protocols = require "conntrack.cli.protocols"
local conntrack = require "conntrack"

local M = {}

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
  local ports, gre, icmp = tuples.PORTS[p], p == 47, p == 1 or p == 58
  local has_orig = o.src or o.dst
  local has_reply = o["reply-src"] or o["reply-dst"]
  local spec = { proto = p }
  if has_orig then
    spec.src = tuples.addr_or_zero(ct.src, cmd.family)
    spec.dst = tuples.addr_or_zero(ct.dst, cmd.family)
    -- (protocols.lua: the reply type is 255, and the reply tuple is ICMP or refused)
    if icmp and ct.icmp_type_early then einval() end
    tuples.put_ids(spec, ct)
    if has_reply then
      spec.reply_src = tuples.addr_or_zero(ct.reply_src, cmd.family)
      spec.reply_dst = tuples.addr_or_zero(ct.reply_dst, cmd.family)
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
      tuples.put_ids(spec, ct)
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

-- The results of a batch of count items (h:create's or h:restore's: created, report):
-- counts the entries made, and raises the first failure that fails its command, after
-- deleting the entries that the items after it made (the kernel goes on past a failed
-- request). command_of(i) and spec_of(i) are item i's.
local function settle(ctx, h, count, created, report, command_of, spec_of)
  if created then
    ctx.counter = ctx.counter + created
    return
  end
  local failed = {}
  for _, r in ipairs(report) do failed[r.index] = r end
  for i = 1, count do
    local r = failed[i]
    if not r then
      ctx.counter = ctx.counter + 1
    elseif r.unknown or create_fails(command_of(i), r.errno) then
      -- only what the kernel said it created: a lost answer may hide a refusal, and
      -- the entry of its tuple may then be one that was there before the run
      for later = i + 1, count do
        if not failed[later] then undo_create(h, spec_of(later)) end
      end
      kernel.failed(command_of(i), r.errno, r.message)
    end
  end
end

local SAVED = { ["-I"] = "CT_CREATE", ["-A"] = "CT_ADD" }

--- -I and -A of many lines (-R) in pipelined batches, with the results that create on
-- each in turn would have: queue.add(command, netns, spec) for each, queue.restore(text)
-- for a run of lines of conntrack's save format (conntrack.save_lines), queue.flush()
-- before anything else runs and at the end. spec_of(line) gives a save line's spec table
-- when one is needed. The table is left as conntrack, which stops at the failing line,
-- leaves it.
function M.queue(ctx, spec_of)
  local commands, specs, netns, n = {}, {}, nil, 0
  local queue = {}
  function queue.flush()
    if n == 0 then return end
    local batch, batch_commands, count = specs, commands, n
    specs, commands, n = {}, {}, 0
    local h = kernel.handle(ctx, { netns = netns })
    local ok, created, _, _, report = pcall(h.create, h, batch)
    if not ok then    -- a spec the library refuses (nothing was sent): one at a time
      for i = 1, count do create_one(ctx, h, batch[i], batch_commands[i]) end
      return
    end
    settle(ctx, h, count, created, report, function(i) return batch_commands[i] end,
           function(i) return batch[i] end)
  end
  function queue.add(command, spec_netns, spec)
    if n == 0 then netns = spec_netns end
    n = n + 1
    commands[n], specs[n] = command, spec
    if n == CREATE_BATCH then queue.flush() end
  end
  function queue.restore(text)
    queue.flush()
    local h = kernel.handle(ctx, {})
    local created, _, _, report = h:restore(text)
    local lines = {}   -- (the lines are needed only to settle a failure)
    if not created then
      for line in text:gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
    end
    settle(ctx, h, #lines, created, report,
           function(i) return SAVED[conntrack.save_command(lines[i])] end,
           function(i) return spec_of(lines[i]) end)
  end
  return queue
end

return M
