--- The Lua API's dump loop, reading four fields of every entry: compared
-- with build/rawdump (the same dump, received and counted only). Prints the
-- number of entries.
local conntrack = require "conntrack"
local h = assert(conntrack.open())
local n = 0
for f in h:dump() do
  local a, b, c, d = f.src, f.dst, f.sport, f.state  -- luacheck: no unused
  n = n + 1
end
print(n)
