--- The conntrack module: read, change and react to the Linux connection
-- tracking table. The C core (conntrack.core) does the netlink work; this
-- layer adds what is better written in Lua.
-- @module conntrack
local core = require "conntrack.core"

local events = core.methods.events

-- The events an each() loop has received but not yet handed out, by events
-- object, so that a loop left with break loses none: the next each() goes on.
local unread = setmetatable({}, { __mode = "k" })
local RECV_MAX = 64  -- events per recv of each(): a smaller batch keeps the peak RSS lower

--- The methods of conntrack.events written in Lua (the others are in C).
-- @type events

local NOTHING = {}  -- conntrack.poll of no object: a sleep

--- Blocking iteration over events: `for kind, flow, event in ev:each() do`.
-- kind is `"new"`, `"update"`, `"destroy"`, an `expect_` kind (then the object is
-- `event.expect`) or `"overrun"` (then flow is nil and `event.lost` says how many
-- the kernel dropped). Waits when nothing is queued; a receive error is
-- raised. Leaving the loop with break keeps the rest for the next each().
-- @tparam[opt=0] number settle seconds to let events gather after a batch that had some,
-- before the next receive: a steady stream is then taken in batches, with far fewer
-- wakeups (a plain loop under churn spends about half its CPU in the kernel, much of it
-- switching to and from the sleeping listener). The first event of a burst comes at once;
-- the others at most `settle` later
-- @treturn function an iterator giving kind, flow (or expectation, or nil) and the event
-- @raise the message of a receive error
-- @usage for kind, f, event in ev:each() do print(kind, event.time, f) end
-- for kind, f in ev:each(0.001) do count[kind] = (count[kind] or 0) + 1 end
function events:each(settle)
  if settle ~= nil and (math.type(settle) == nil or settle < 0) then
    error("bad argument #1 to 'each' (settle must be a number of seconds, 0 or more)", 2)
  end
  settle = settle or 0
  return function()
    while true do
      local batch = unread[self]
      if batch and batch.next <= batch.n then
        local event = batch[batch.next]
        batch.next = batch.next + 1
        return event.kind, event.flow or event.expect, event
      end
      -- a short batch emptied the socket: wait before the next receive rather than
      -- after one that would find nothing (a listener that keeps up gets a few events
      -- per wakeup, and each system call counts), or let more gather
      if batch and batch.n < RECV_MAX then
        if batch.n > 0 and settle > 0 then core.poll(NOTHING, settle) else self:wait() end
      end
      local fresh, err = self:recv(RECV_MAX)
      if not fresh then error(err, 2) end
      fresh.next, fresh.n = 1, #fresh
      unread[self] = fresh
    end
  end
end

-- The C module's functions (their reference is doc/api.luadoc: make docs).
local M = {
  -- conntrack.open([opts]) -> handle | nil, message, errno
  open = core.open,
  version = core.version,
  -- conntrack.poll(objects, [seconds]) -> the ready ones: waits on any
  -- objects with :pollfd(), :events() and :timeout() (events, signals, ...).
  poll = core.poll,
  -- conntrack.monotonic() -> seconds on a clock that never jumps, for timers.
  monotonic = core.monotonic,
  -- conntrack.replace_file(path, text) -> true | nil, message, errno: writes a
  -- new file beside path (never through a planted symlink) and renames it over path.
  replace_file = core.replace_file,
  -- conntrack.signals{ "HUP", ... } -> a pollable object whose recv()
  -- returns the signals received (they are blocked and read from a signalfd).
  signals = core.signals,
  -- conntrack.requester(portid[, previous]) -> { portid =, inode =, pid =, name = } | nil:
  -- the process whose ctnetlink request made an event (event.portid), in this namespace.
  requester = core.requester,
  -- conntrack.save_command(line) -> "-I" | "-A" | nil: the command of a line of
  -- conntrack's save format that h:create takes as a spec, nil for any other line.
  save_command = core.save_command,
  -- conntrack.save_lines(text[, init]) -> count, next: how many newline-ended lines from
  -- init on save_command takes, and where the line after them begins.
  save_lines = core.save_lines,
}

-- conntrack.fields, every flow field: { name =, doc =, read =, filter =, tuple =, create =,
-- change = }. Built on first use: 47 tables that ct-lua conntrack's commands never read,
-- and building them was a tenth of -C's start-up.
return setmetatable(M, { __index = function(t, k)
  if k ~= "fields" then return nil end
  local list = core.field_list()
  rawset(t, "fields", list)
  return list
end })
