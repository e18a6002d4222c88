--- The conntrack module: read, change and react to the Linux connection
-- tracking table. The C core (conntrack.core) does the netlink work; this
-- layer adds what is better written in Lua.
-- @module conntrack
local core = require "conntrack.core"

local events = core.methods.events

--- Blocking iteration over events: `for kind, flow, event in ev:each() do`.
-- kind is "new", "update", "destroy" or "overrun" (then flow is nil and
-- event.lost says how many the kernel dropped). Waits when nothing is
-- queued; a receive error is raised.
function events:each()
  local batch, i = {}, 0
  return function()
    while true do
      i = i + 1
      local event = batch[i]
      if event then
        return event.kind, event.flow, event
      end
      local err
      batch, err = self:recv()
      if not batch then error(err, 2) end
      i = 0
      if #batch == 0 then self:wait() end
    end
  end
end

return {
  --- conntrack.open([opts]) -> handle | nil, message, errno
  open = core.open,
  --- Every flow field: { name =, doc =, filter =, tuple =, create =, change = }.
  fields = core.fields,
  version = core.version,
  --- conntrack.poll(objects, [seconds]) -> the ready ones: waits on any
  -- objects with :pollfd(), :events() and :timeout() (events, signals, ...).
  poll = core.poll,
  --- conntrack.monotonic() -> seconds on a clock that never jumps, for timers.
  monotonic = core.monotonic,
  --- conntrack.signals{ "HUP", ... } -> a pollable object whose recv()
  -- returns the signals received (they are blocked and read from a signalfd).
  signals = core.signals,
}
