--- ct-lua summary [-n N] [-p PROTO]: how many flows there are per protocol,
-- per state and per destination, in one streaming pass over the table.
local conntrack = require "conntrack"

local usage = [[
usage: ct-lua summary [-n N] [-p PROTO]
  -n N      show the N busiest destinations (default 10)
  -p PROTO  count only flows of this protocol (tcp, udp, ... or a number)
]]

local function parse_args(args)
  local opts = { top = 10 }
  local i = 1
  while i <= #args do
    local a, v = args[i], args[i + 1]
    if a == "-h" or a == "--help" then
      return nil
    elseif a == "-n" and v and math.tointeger(tonumber(v)) then
      opts.top, i = math.tointeger(tonumber(v)), i + 2
    elseif a == "-p" and v then
      opts.proto, i = tonumber(v) or v, i + 2
    else
      return nil, "bad argument '" .. a .. "'"
    end
  end
  return opts
end

local function increment(counts, key)
  counts[key] = (counts[key] or 0) + 1
end

-- Keys sorted by count, largest first, then by name for a stable order.
local function ranked(counts)
  local keys = {}
  for k in pairs(counts) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if counts[a] ~= counts[b] then return counts[a] > counts[b] end
    return tostring(a) < tostring(b)
  end)
  return keys
end

local function print_section(title, counts, limit)
  print(title .. ":")
  for i, key in ipairs(ranked(counts)) do
    if limit and i > limit then break end
    print(string.format("  %-40s %d", tostring(key), counts[key]))
  end
end

local function main(args)
  local opts, err = parse_args(args)
  if not opts then
    io.stderr:write(err and ("ct-lua summary: " .. err .. "\n") or "", usage)
    return err and 2 or 0
  end
  local h, msg = conntrack.open()
  if not h then
    io.stderr:write("ct-lua summary: ", msg, "\n")
    return 1
  end
  local total, protos, states, dests = 0, {}, {}, {}
  local ok, dump_err = pcall(function()
    for f in h:dump{ proto = opts.proto } do
      total = total + 1
      increment(protos, f.proto)
      increment(states, f.state or "-")
      increment(dests, f.dst)
    end
  end)
  h:close()
  if not ok then
    io.stderr:write("ct-lua summary: ", tostring(dump_err), "\n")
    return 1
  end
  print(string.format("%d flows", total))
  print_section("by protocol", protos)
  print_section("by state", states)
  print_section("top destinations", dests, opts.top)
  return 0
end

os.exit(main(arg), true)
