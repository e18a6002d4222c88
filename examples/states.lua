--- states.lua: every second, how many flows are in each state.
--
--   ct-lua watch examples/states.lua
--   ESTABLISHED=3 TIME_WAIT=1 -=2
--
-- "-" counts flows without a state (UDP, ICMP, ...).
--
-- Why a dump every second rather than counts kept from events: a state change
-- is an update event, so counting from events needs every new, update and
-- destroy event, a first dump, and a record of each flow's last state; any
-- drift (an overrun, or events the kernel does not send for flows created
-- before anyone listened) stays until restart. A dump gives the exact table
-- each time, with memory that does not grow with the table, and costs one
-- pass per second, far less than the event stream of a busy table. For very
-- large tables, raise `interval`.
local _, ctx = ...   -- this script keeps no state between reloads

-- Names in byte order, with "-" last.
local function ordered(names)
  table.sort(names, function(a, b)
    if (a == "-") ~= (b == "-") then return b == "-" end
    return a < b
  end)
  return names
end

return {
  interval = 1,
  -- No on_new/on_update/on_destroy: this script subscribes to no events.
  on_tick = function()
    local counts, names = {}, {}
    for f in ctx.handle:dump() do
      local s = f.state or "-"
      if not counts[s] then
        counts[s] = 0
        names[#names + 1] = s
      end
      counts[s] = counts[s] + 1
    end
    local parts = {}
    for i, s in ipairs(ordered(names)) do parts[i] = s .. "=" .. counts[s] end
    print(#parts > 0 and table.concat(parts, " ") or "(no flows)")
  end,
}
