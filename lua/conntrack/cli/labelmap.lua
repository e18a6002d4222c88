--- connlabel.conf as libnetfilter_conntrack reads it (nfct_labelmap_new), for checking
-- label names while the command line is parsed. conntrack calls labelmap_init for each
-- option that uses labels until a map is loaded, printing perror's line each time it fails.
-- @module conntrack.cli.labelmap
local M = {}

M.PATH = "/etc/xtables/connlabel.conf"

local map           -- name -> bit, once loaded
local MAX_BITS = 1024

local function parse(f)
  local names, seen, added = {}, {}, 0
  for line in f:lines() do
    line = line:sub(1, 1023)
    if line:sub(1, 1) ~= "#" then
      -- strtoul(line, &end, 0): a number first
      local values = require "conntrack.cli.values"
      local v, e = values.strtoul(line, 0)
      if not (v == 0 and e == 1) and not math.ult(MAX_BITS - 1, v) and not seen[v] then
        local name = line:sub(e):gsub("^[ \f\r\t\v]+", ""):gsub("[ \f\r\t\v]+$", "")
        if name ~= "" and not name:find("[^%w %-]") and not names[name] then
          names[name] = v
          seen[v] = true
          added = added + 1
        end
      end
    end
  end
  return added > 0 and names or nil
end

--- labelmap_init: loads the map unless it is loaded; on failure writes
-- "nfct_labelmap_new: <strerror>" to ctx.err, as perror does.
function M.init(ctx)
  if map then return end
  local f, err, code = io.open(M.PATH, "r")
  if not f then
    local msg = err and err:match(": ([^:]+)$") or "No such file or directory"
    ctx.err:write("nfct_labelmap_new: ", msg, "\n")
    return
  end
  map = parse(f)
  f:close()
  if not map then ctx.err:write("nfct_labelmap_new: Success\n") end
  return code
end

--- The bit of a label name, or nil (also when no map is loaded).
function M.bit(name)
  return map and map[name]
end

--- Whether a map is loaded (conntrack then prints labels in every output).
function M.loaded()
  return map ~= nil
end

--- Forget the map (tests call main more than once).
function M.reset()
  map = nil
end

return M
