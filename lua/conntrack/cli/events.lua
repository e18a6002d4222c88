--- -E and -E expect over the library's lossless events object: filters go to the
-- kernel where they can (the library's BPF filter), every event is printed as it comes
-- (and flushed with the others received at the same time), SIGINT and SIGTERM end the run
-- with conntrack's summary, and an overrun prints conntrack's ENOBUFS warning followed by
-- the number of events lost (conntrack cannot count them).
-- @module conntrack.cli.events
local conntrack = require "conntrack"
local kernel = require "conntrack.cli.kernel"
local filter = require "conntrack.cli.filter"
local output = require "conntrack.cli.output"
local commands = require "conntrack.cli.commands"
local options = require "conntrack.cli.options"

local M = {}

local fmt = string.format

local ENOBUFS_WARNING = "WARNING: We have hit ENOBUFS! We are losing events.\n" ..
  "This message means that the current netlink socket buffer size is too small.\n" ..
  "Please, check --buffer-size in conntrack(8) manpage.\n"

local BUFSIZE_MAX = 512 << 20
-- events taken per recv: each is printed at once, so a small batch keeps memory low
local BATCH = 32
-- After a batch that found events, the loop waits this long (for a signal only) before it
-- reads again, so that the events of that time come in one wakeup: a listener woken for
-- every event spends most of its CPU on the wakeups (under real traffic, measured: 2.3-2.7
-- µs of CPU per event instead of 11-13). The first event of a burst is printed at once, the rest at most this
-- much later; an idle listener sleeps in poll as before.
local COALESCE = 0.001

-- conntrack's get_progname: the program that owns the requester's port (racy: the
-- requester may have exited). The last answer is kept while its socket stays bound.
local last
local function progname(portid)
  last = conntrack.requester(portid, last)
  return last and last.name
end

local KINDS = { [1] = "new", [2] = "update", [4] = "destroy" }

-- Prints one flow event.
local function print_event(ctx, cmd, ev)
  local out, o = ctx.out, cmd.output
  if o.json then
    out:write(require("conntrack.json").event(ev), "\n")
  else
    local line
    if o.save then
      line = output.save(ev.flow, ev.kind)
    else
      if o.xml then
        output.write_xml_start(ctx, "conntrack")
      elseif o.timestamp then
        out:write(output.event_stamp(ev.time))
      end
      line = output.command_formatter(cmd, "event")(ev.flow, ev.kind)
    end
    if ev.portid then line = line .. output.userspace(ev.portid, progname(ev.portid)) end
    out:write(line, "\n")
  end
  ctx.counter = ctx.counter + 1
end

local function print_expect_event(ctx, cmd, ev)
  local out, o = ctx.out, cmd.output
  if o.json then
    out:write(require("conntrack.json").event(ev), "\n")
  else
    if o.xml then
      output.write_xml_start(ctx, "expect")
    elseif o.timestamp then
      out:write(output.expect_stamp(ev.time))
    end
    local text = ev.expect:format{ xml = o.xml or nil, event = (ev.kind:gsub("^expect_", "")) }
    if o.xml and o.timestamp then text = output.with_when(text, "expect") end
    out:write(text, "\n")
  end
  ctx.counter = ctx.counter + 1
end

local function flush(out)
  if out.flush then out:flush() end
end

local function overrun(ctx, cmd, ev)
  flush(ctx.out)  -- the events before it come first, as conntrack prints them
  ctx.err:write(ENOBUFS_WARNING)
  ctx.err:write(fmt("WARNING: %d events have been lost.\n", ev.lost or 0))
  if cmd.output.json then
    ctx.out:write(require("conntrack.json").event{ kind = "overrun", time = ev.time,
                                                   lost = ev.lost }, "\n")
  end
end

local function receive_failed(sig, msg, errno)
  sig:close()
  error({ status = 1, msg = "failed to received netlink event: " .. kernel.strerror(errno, msg) },
        0)
end

-- Takes up to BATCH events and prints each with each(ctx, cmd, event); returns how many.
local function print_batch(ctx, cmd, ev, sig, each)
  local batch, msg, errno = ev:recv(BATCH)
  if not batch then receive_failed(sig, msg, errno) end
  for _, e in ipairs(batch) do
    if e.kind == "overrun" then overrun(ctx, cmd, e) else each(ctx, cmd, e) end
  end
  return #batch
end

-- The same, for flow events whose lines an ev:writer (write) prints in C: only an overrun
-- comes back to Lua. An output error goes unseen, as conntrack's printf's do (the event
-- being written counts as printed, with those written before it).
local function write_batch(ctx, cmd, write, sig)
  local taken = 0
  repeat
    local n, overran, errno, written = write(BATCH - taken)
    if not n then
      if not overran:find("^conntrack%.write:") then receive_failed(sig, overran, errno) end
      n, overran = written + 1, nil
    end
    if n > 0 and cmd.output.xml then ctx.xml_header = true end  -- the writer wrote it
    ctx.counter = ctx.counter + n
    taken = taken + n
    if overran then
      overrun(ctx, cmd, overran)
      taken = taken + 1
    end
  until not overran or taken >= BATCH
  return taken
end

-- Waits for events until SIGINT or SIGTERM; returns after the footer and the summary.
-- Without an events object (an event mask naming no kind) it only waits for the signal.
-- take(ev, sig) prints up to BATCH events and returns how many it took.
local function loop(ctx, ev, take, footer, what)
  local sig = conntrack.signals{ "INT", "TERM" }
  local only_sig, both = { sig }, { ev, sig }
  local stop = false
  while not ev and not stop do
    conntrack.poll({ sig })
    if #sig:recv() > 0 then stop = true end
  end
  while not stop do
    local taken = take(ev, sig)
    -- once per batch (events that came together), not per line: a write per event was
    -- most of what a listener that keeps up spends
    if taken > 0 then flush(ctx.out) end
    -- a short batch emptied the socket: wait (poll says when a signal came); a full one
    -- may be part of a flood, which must not hold off SIGINT
    local signalled = taken >= BATCH
    if not signalled and taken > 0 then
      signalled = #conntrack.poll(only_sig, COALESCE) > 0
    end
    if not signalled then
      for _, ready in ipairs(conntrack.poll(both)) do signalled = signalled or ready == sig end
    end
    if signalled and #sig:recv() > 0 then stop = true end
  end
  sig:close()
  if ctx.xml_header then
    ctx.out:write(footer)
    flush(ctx.out)
  end
  ctx.err:write(options.PREFIX, fmt("%d %s events have been shown.\n", ctx.counter, what))
end

-- conntrack opens -E's socket itself (perror, then its message) and -E expect's through
-- nfct_open (only "Can't open handler").
local function listen(ctx, cmd, opts, expect)
  local h = kernel.handle(ctx, cmd)
  local ev, msg, errno = h:listen(opts)
  if not ev then
    if expect then error({ status = 1, msg = "Can't open handler" }, 0) end
    ctx.err:write("mnl_socket_bind: ", kernel.strerror(errno, msg), "\n")
    error({ status = 1, msg = "Can't open netlink socket" }, 0)
  end
  return ev
end

function M.CT_EVENT(ctx, cmd)
  local kinds = {}
  local mask = cmd.event_mask or 7
  for bit, kind in pairs(KINDS) do
    if mask & bit ~= 0 then kinds[#kinds + 1] = kind end
  end
  table.sort(kinds)
  local opts = { events = kinds, filter = filter.build(cmd, "list") }
  if cmd.bufsize then
    opts.bufsize = math.max(1, math.min(cmd.bufsize, 0x3fffffff))
    opts.bufsize_max = math.max(opts.bufsize, BUFSIZE_MAX)
  end
  -- -e naming nothing (-e D is DST_NAT's warning) subscribes to no group: nothing comes
  local ev = #kinds > 0 and listen(ctx, cmd, opts) or nil
  if cmd.bufsize then
    ctx.err:write(fmt("NOTICE: Netlink socket buffer size has been set to %d bytes.\n",
                      ev and ev:bufsize() * 2 or 2 * math.max(cmd.bufsize, 1152)))
  end
  commands.check_masks(cmd)
  local o = cmd.output
  local take
  if io.type(ctx.out) == "file" and not (o.json or o.save or o.timestamp) then
    local format = output.format_options(o, "event")
    format.requester = true
    format.header = o.xml and output.xml_start("conntrack") or nil
    local write = ev and ev:writer(ctx.out, format)
    take = function(_, sig) return write_batch(ctx, cmd, write, sig) end
  else
    take = function(e, sig) return print_batch(ctx, cmd, e, sig, print_event) end
  end
  loop(ctx, ev, take, "</conntrack>\n", "flow")
  if ev then ev:close() end
end

function M.EXP_EVENT(ctx, cmd)
  local ev = listen(ctx, cmd, { events = { "expect_new", "expect_update", "expect_destroy" } },
                    true)
  loop(ctx, ev, function(e, sig) return print_batch(ctx, cmd, e, sig, print_expect_event) end,
       "</expect>\n", "expectation")
  ev:close()
end

return M
