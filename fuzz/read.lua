-- Shared by the fuzz targets' Lua drivers: read every part of a flow or
-- an expectation the way a script would, so that whatever the fake kernel
-- made the module parse is also formatted and pushed to Lua.
local M = {}

function M.flow(core, f)
  local _ = tostring(f)
  for _, field in ipairs(core.fields) do
    if field.read then _ = f[field.name] end
  end
  for _, v in pairs(f) do _ = tostring(v) end
  -- core/print.c's and core/print_xml.c's, then libnfct's (the timestamp flag)
  f:format()
  f:format{ extended = true, id = true, event = "update" }
  f:format{ xml = true }
  f:format{ extended = true, id = true, ktimestamp = true, labels = true, event = "new" }
  f:format{ xml = true, labels = true, event = "destroy" }
  return true
end

function M.expect(core, e)
  local _ = tostring(e)
  for _, v in pairs(e) do _ = tostring(v) end
  for _, name in ipairs{ "expected", "mask", "master", "nat" } do
    if e[name] then M.flow(core, e[name]) end
  end
  e:format{ xml = true }
  e:format{ event = "new" }
  return true
end

return M
