-- luv-loop.lua [SECONDS]: conntrack driven by luv (Debian lua-luv). A poll
-- handle wakes for events, a timer dumps the table every 0.2 s; the loop
-- stops after SECONDS (default 2). Run: ct-lua examples/luv-loop.lua 5
local uv = require "luv"
local conntrack = require "conntrack"

local seconds = tonumber(arg and arg[1]) or 2
local h = assert(conntrack.open())
local ev = assert(h:listen{ events = { "new", "destroy" } })

-- the events object is pollable: luv watches its descriptor
local poll = uv.new_poll(ev:pollfd())
poll:start("r", function()
  for _, e in ipairs(assert(ev:recv())) do
    print("event", e.kind, e.flow and e.flow.src or e.lost)
  end
end)

-- a periodic dump, from the same loop
local tick = uv.new_timer()
tick:start(200, 200, function()
  local n = 0
  for _ in h:dump() do n = n + 1 end
  print("dump", n)
end)

local stop = uv.new_timer()
stop:start(math.floor(seconds * 1000), 0, function()
  poll:stop()
  tick:stop()
  uv.stop()
end)

uv.run()
ev:close()
h:close()
