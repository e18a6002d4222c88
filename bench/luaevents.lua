--- The Lua API's event loop with a trivial callback. Prints "ready" once
-- subscribed; counts events until the first "update" (the driver's churn
-- makes only new and destroy events, then one update to stop it); prints
-- the events handled and the events the kernel reported lost. An argument
-- is each()'s settle, in seconds.
local conntrack = require "conntrack"
local h = assert(conntrack.open())
local ev = assert(h:listen())
local handled, lost = 0, 0

local function on_event(kind, flow)  -- luacheck: no unused
  handled = handled + 1
end

io.stdout:write("ready\n")
io.stdout:flush()
for kind, flow, event in ev:each(tonumber(arg[1])) do
  if kind == "update" then break end
  if kind == "overrun" then
    lost = lost + event.lost
  else
    on_event(kind, flow)
  end
end
print(handled, lost)
