-- cqueues-loop.lua [SECONDS]: conntrack driven by cqueues (Debian
-- lua-cqueues). One coroutine waits for events with cqueues.poll (the events
-- object speaks cqueues' pollable protocol), another dumps the table every
-- 0.2 s; both stop after SECONDS (default 2). Run: ct-lua examples/cqueues-loop.lua 5
local cqueues = require "cqueues"
local conntrack = require "conntrack"

local seconds = tonumber(arg and arg[1]) or 2
local h = assert(conntrack.open())
local ev = assert(h:listen{ events = { "new", "destroy" } })
local deadline = cqueues.monotime() + seconds
local loop = cqueues.new()

loop:wrap(function()
  while cqueues.monotime() < deadline do
    if cqueues.poll(ev, deadline - cqueues.monotime()) == ev then
      for _, e in ipairs(assert(ev:recv())) do
        print("event", e.kind, e.flow and e.flow.src or e.lost)
      end
    end
  end
end)

loop:wrap(function()
  while cqueues.monotime() < deadline do
    local n = 0
    for _ in h:dump() do n = n + 1 end
    print("dump", n)
    cqueues.sleep(0.2)
  end
end)

assert(loop:loop())
ev:close()
h:close()
