--- -E and -E expect over the library's lossless events object: filters go to the
-- kernel where they can (the library's BPF filter), every event is printed and flushed as
-- it comes, SIGINT and SIGTERM end the run with conntrack's summary, and an overrun prints
-- conntrack's ENOBUFS warning followed by the number of events lost (conntrack cannot
-- count them).
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

local function read_file(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function lines_of(cmdline)
  local p = io.popen(cmdline)
  if not p then return {} end
  local t = {}
  for l in p:lines() do t[#t + 1] = l end
  p:close()
  return t
end

-- The inode of the netlink socket (NETLINK_NETFILTER) bound to portid.
local function socket_inode(portid)
  local s = read_file("/proc/net/netlink")
  if not s then return nil end
  for line in s:gmatch("[^\n]+") do
    local prot, pid, inode = line:match("^%x+%s+(%d+)%s+(%d+)%s+%x+%s+%d+%s+%d+%s+%x+%s+%d+%s+%d+%s+(%d+)")
    if prot == "12" and tonumber(pid) == portid then return inode end
  end
end

-- The pid of the process that holds the socket inode: the hinted one first (netlink
-- users commonly take their pid as port id), then any; one `find` walks /proc for us.
local function owner(inode, hint)
  local pattern = "socket:[" .. inode .. "]"
  for _, where in ipairs({ "/proc/" .. hint .. "/fd", "/proc/[0-9]*/fd" }) do
    local found = lines_of("find " .. where .. " -maxdepth 1 -lname '" .. pattern ..
                           "' -print -quit 2>/dev/null")[1]
    local pid = found and found:match("^/proc/(%d+)/")
    if pid then return pid end
  end
end

-- conntrack's get_progname: the program that owns the requester's port, looked up in
-- /proc (racy: the requester may have exited). The last answer is kept.
local last = {}
local function progname(portid)
  local inode = socket_inode(portid)
  if not inode then return nil end
  if last.portid == portid and last.inode == inode then return last.name end
  local pid = owner(inode, portid)
  local stat = pid and read_file("/proc/" .. pid .. "/stat")
  local name = stat and stat:match("^%d+ %(([^)]*)")
  last = { portid = portid, inode = inode, name = name }
  return name
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
        if not ctx.xml_header then
          ctx.xml_header = true
          out:write(output.XML_HEADER, "<conntrack>\n")
        end
      elseif o.timestamp then
        out:write(output.event_stamp(ev.time))
      end
      cmd.format_event = cmd.format_event or output.formatter(o, "event")
      line = cmd.format_event(ev.flow, ev.kind)
    end
    if ev.portid then line = line .. output.userspace(ev.portid, progname(ev.portid)) end
    out:write(line, "\n")
  end
  if out.flush then out:flush() end
  ctx.counter = ctx.counter + 1
end

local function print_expect_event(ctx, cmd, ev)
  local out, o = ctx.out, cmd.output
  if o.json then
    out:write(require("conntrack.json").event(ev), "\n")
  else
    if o.xml then
      if not ctx.xml_header then
        ctx.xml_header = true
        out:write(output.XML_HEADER, "<expect>\n")
      end
    elseif o.timestamp then
      out:write(output.expect_stamp(ev.time))
    end
    local text = ev.expect:format{ xml = o.xml or nil, event = (ev.kind:gsub("^expect_", "")) }
    if o.xml and o.timestamp then text = output.with_when(text, "expect") end
    out:write(text, "\n")
  end
  if out.flush then out:flush() end
  ctx.counter = ctx.counter + 1
end

local function overrun(ctx, cmd, ev)
  ctx.err:write(ENOBUFS_WARNING)
  ctx.err:write(fmt("WARNING: %d events have been lost.\n", ev.lost or 0))
  if cmd.output.json then
    ctx.out:write(require("conntrack.json").event{ kind = "overrun", time = ev.time,
                                                   lost = ev.lost }, "\n")
    if ctx.out.flush then ctx.out:flush() end
  end
end

-- Waits for events until SIGINT or SIGTERM; returns after the footer and the summary.
-- Without an events object (an event mask naming no kind) it only waits for the signal.
local function loop(ctx, cmd, ev, each, footer, what)
  local sig = conntrack.signals{ "INT", "TERM" }
  local stop = false
  while not ev and not stop do
    conntrack.poll({ sig })
    if #sig:recv() > 0 then stop = true end
  end
  while not stop do
    local batch, msg, errno = ev:recv()
    if not batch then
      sig:close()
      error({ status = 1, msg = "failed to received netlink event: " ..
                               kernel.strerror(errno, msg) }, 0)
    end
    for _, e in ipairs(batch) do
      if e.kind == "overrun" then overrun(ctx, cmd, e) else each(ctx, cmd, e) end
    end
    if #batch == 0 then
      conntrack.poll({ ev, sig })
      if #sig:recv() > 0 then stop = true end
    end
  end
  sig:close()
  if ctx.xml_header then
    ctx.out:write(footer)
    if ctx.out.flush then ctx.out:flush() end
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
  loop(ctx, cmd, ev, print_event, "</conntrack>\n", "flow")
  if ev then ev:close() end
end

function M.EXP_EVENT(ctx, cmd)
  local ev = listen(ctx, cmd, { events = { "expect_new", "expect_update", "expect_destroy" } },
                    true)
  loop(ctx, cmd, ev, print_expect_event, "</expect>\n", "expectation")
  ev:close()
end

return M
