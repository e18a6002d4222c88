-- Checks that the API reference covers the API, both ways: every function of the module and
-- every method of its object types has an LDoc entry (in doc/api.luadoc, or a doc comment in
-- lua/conntrack.lua), and every entry names something that exists. `make docs` runs it with
-- the freshly built interpreter, which has the module built in:
--
--   ./ct-lua doc/coverage.lua doc/api.luadoc lua/conntrack.lua
--
-- The flow fields need no check: their section is generated from conntrack.fields.

local conntrack = require "conntrack"
local registry = debug.getregistry()

-- LDoc class name -> the metatable name of the type.
local TYPES = {
  handle = "conntrack.handle", flow = "conntrack.flow", expect = "conntrack.expect",
  events = "conntrack.events", signals = "conntrack.signals", dump = "conntrack.dump",
  error = "conntrack.error",
}

-- The names a type answers: its methods (__index a table, or a function whose first upvalue
-- is the method table) and its metamethods. Keys that are not strings are the C code's own
-- marks (a flow's metatable is known by a light userdata key), not names.
local function members(metatable_name)
  local mt = assert(registry[metatable_name], metatable_name .. ": no such metatable")
  local names, index = {}, mt.__index
  if type(index) == "function" then
    index = select(2, debug.getupvalue(index, 1))
  end
  local function add(k)
    if type(k) == "string" then names[k] = true end
  end
  for k in pairs(type(index) == "table" and index or {}) do add(k) end
  for k in pairs(mt) do add(k) end
  return names
end

-- Documented names: "open", "handle:dump", "expect.flags" (fields of classes), ...; the
-- @table entries (filter, event, errors, ...) describe values and need not exist by name.
local documented, doc_tables, problems = {}, {}, {}
for _, path in ipairs(arg) do
  local f = assert(io.open(path))
  local class, previous = nil, ""
  for line in f:lines() do
    local tag, name = line:match("^%-%- @(%w+) ([%w_.:]+)")
    if tag == "type" then
      class = name
    elseif tag == "function" or tag == "table" then
      documented[name] = path
      doc_tables[name] = tag == "table" or nil
    elseif tag == "field" and not line:match("^%-%- @field .-%s%S") then
      -- a field item of its own (not a row of a table's field list)
      documented[class and class .. "." .. name or name] = path
    end
    local method = line:match("^function ([%w_]+:[%w_]+)")
    if method and previous:match("^%-%-") then documented[method] = path end
    previous = line
  end
  f:close()
end

-- Everything that exists must be documented.
for name in pairs(conntrack) do
  if not documented[name] then problems[#problems + 1] = "conntrack." .. name end
end
for class, mt_name in pairs(TYPES) do
  for name in pairs(members(mt_name)) do
    local is_meta = name:match("^__")
    if not is_meta and not documented[class .. ":" .. name] then
      problems[#problems + 1] = class .. ":" .. name
    end
  end
end

-- Everything documented must exist.
for name, path in pairs(documented) do
  local class, sep, member = name:match("^([%w_]+)([:.])([%w_]+)$")
  if class and sep == ":" then
    if not TYPES[class] or not members(TYPES[class])[member] then
      problems[#problems + 1] = path .. ": " .. name .. " does not exist"
    end
  elseif not class and conntrack[name] == nil and not doc_tables[name] then
    problems[#problems + 1] = path .. ": " .. name .. " does not exist"
  end
end

table.sort(problems)
if #problems > 0 then
  io.stderr:write("doc/coverage.lua: not documented, or documented but missing:\n  ",
                  table.concat(problems, "\n  "), "\n")
  os.exit(1)
end
