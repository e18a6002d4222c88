--- ssh-log.lua: print every new SSH connection as one JSON line.
--
--   ct-lua watch examples/ssh-log.lua >> ssh.jsonl
--
-- A reaction script is a chunk that ct-lua watch runs with two values, the
-- state table it keeps across reloads and a context (ctx), and that returns a
-- table of handlers. This one keeps no state: it only prints.
local json = require "conntrack.json"

return {
  -- Only TCP flows to port 22 reach the script; the filter runs in the kernel
  -- and in C, so other traffic costs no Lua at all.
  filter = { proto = "tcp", dport = 22 },

  -- Called once per new flow. `event` holds the kind ("new"), the time and
  -- the flow; json.event writes all of it on one line, e.g.
  -- {"kind":"new","time":1795777568.928259,"flow":{"family":"ipv4",...}}
  on_new = function(_, event)
    print(json.event(event))
  end,
}
