--- The conntrack module: read, change and react to the Linux connection
-- tracking table. A thin public layer over the C core (conntrack.core).
-- @module conntrack
local core = require "conntrack.core"

local M = {
  --- conntrack.open([opts]) -> handle | nil, message, errno
  open = core.open,
  --- Every flow field: { name =, doc =, filter =, tuple =, create =, change = }.
  fields = core.fields,
  version = core.version,
}

return M
