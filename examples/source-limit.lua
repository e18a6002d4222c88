--- source-limit.lua: keep every source address under a number of live flows.
--
--   ct-lua watch examples/source-limit.lua [LIMIT]     (LIMIT defaults to 100)
--
-- Counts the flows of each source address. When a source has more than
-- LIMIT, all of its flows are deleted (the kernel's table forgets them; the
-- connections themselves are not blocked) and a line says so on stderr.
local state, ctx = ...

local limit = math.tointeger(tonumber(ctx.args[1] or "100"))
if not limit or limit < 1 then
  error("the limit must be a positive integer, got '" .. tostring(ctx.args[1]) .. "'")
end

-- state survives reloads: keep the flows there. Each source has a set of flow
-- ids rather than a plain number, so that seeing the same flow twice (in the
-- first dump and in an event, or twice across a reload) never counts it twice.
state.flows = state.flows or {}     -- [source address] = { [flow id] = true }
state.count = state.count or {}     -- [source address] = number of ids in that set

local function add(src, id)
  local set = state.flows[src]
  if not set then
    set = {}
    state.flows[src] = set
    state.count[src] = 0
  end
  if not set[id] then
    set[id] = true
    state.count[src] = state.count[src] + 1
  end
end

local function remove(src, id)
  local set = state.flows[src]
  if set and set[id] then
    set[id] = nil
    state.count[src] = state.count[src] - 1
    if state.count[src] == 0 then
      state.flows[src], state.count[src] = nil, nil
    end
  end
end

-- Deletes every flow of src once it is over the limit. Its set is emptied at
-- once: the destroy events that follow find nothing to remove, and the new
-- events still queued for that source start a fresh count.
local function enforce(src)
  local n = state.count[src]
  if n and n > limit then
    local deleted = ctx.handle:delete{ src = src }
    state.flows[src], state.count[src] = nil, nil
    ctx.log(string.format("source %s had %d flows (limit %d): deleted %d", src, n, limit, deleted))
  end
end

-- The flows that existed before the script started are counted by one dump
-- of the table. It is done at the first handler call, not here: handlers run
-- only once the runner has subscribed, so no flow can be created between the
-- dump and the subscription without its event being queued.
local function count_existing_table()
  if state.counted then return end
  state.counted = true
  for f in ctx.handle:dump() do add(f.src, f.id) end
  for src in pairs(state.count) do enforce(src) end
end

return {
  -- only the kinds that change the counts are received
  on_new = function(flow)
    count_existing_table()
    add(flow.src, flow.id)
    enforce(flow.src)
  end,
  on_destroy = function(flow)
    count_existing_table()
    remove(flow.src, flow.id)
  end,
  -- also counts the table when no event comes at all
  on_tick = count_existing_table,
}
