--- A module loaded when one of its fields is first read, not when it is required: the
-- command line loads only what its command uses (start-up is most of -C's and -G's time).
--
--   local values = require "conntrack.cli.lazy" "conntrack.cli.values"
--   values.atoi("5")   -- loads conntrack.cli.values here
-- @module conntrack.cli.lazy
return function(name)
  return setmetatable({}, { __index = function(t, k)
    local m = require(name)
    setmetatable(t, { __index = m })
    return m[k]
  end })
end
