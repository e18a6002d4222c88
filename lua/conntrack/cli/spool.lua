--- What a -R file asks for, between its two passes. The first pass parses every line and
-- spools a record of it to a temporary file; the second reads the records back in order
-- and runs them. So each line is parsed once, and memory does not grow with the file.
--
-- A record is one of:
--   "create"   -I or -A: the command, its --netns (or nil) and the library spec, packed
--   "failure"  what running the line will raise (a spec the kernel would refuse), and its
--              --netns
--   "line"     the line itself, parsed again when it runs (-U, -D and -F act on the table
--              as the lines before them left it)
--   "saved"    a run of -I and -A lines of conntrack's save format, which the library
--              takes as they are (h:restore): newline-terminated, in order
-- @module conntrack.cli.spool
local M = {}

local pack, unpack, concat, byte = string.pack, string.unpack, table.concat, string.byte
local NEWLINE = byte("\n")

-- The fields of a create spec (create.create_spec) in packing order, and how each is
-- packed: an integer, a string, or a list or set of names as one comma-separated string.
local FIELDS = {
  { "proto", "int" }, { "src", "str" }, { "dst", "str" }, { "sport", "int" },
  { "dport", "int" }, { "srckey", "int" }, { "dstkey", "int" }, { "icmp_type", "int" },
  { "icmp_code", "int" }, { "icmp_id", "int" }, { "reply_src", "str" },
  { "reply_dst", "str" }, { "reply_sport", "int" }, { "reply_dport", "int" },
  { "reply_srckey", "int" }, { "reply_dstkey", "int" }, { "snat", "str" },
  { "dnat", "str" }, { "timeout", "int" }, { "state", "str" }, { "status", "int" },
  { "mark", "int" }, { "zone", "int" }, { "orig_zone", "int" }, { "reply_zone", "int" },
  { "vtag", "int" }, { "reply_vtag", "int" }, { "labels", "list" },
  { "tcp_flags", "set" }, { "reply_tcp_flags", "set" },
}
local INDEX = {}
for i, f in ipairs(FIELDS) do INDEX[f[1]] = i end

-- Per set of fields present (a bit mask): the string.pack format of a create record
-- holding them (kind, mask, netns given, netns, then the fields), and the fields' indexes
-- in packing order. Save-format files hold a handful of sets.
local layouts = {}
local function layout(mask)
  local l = layouts[mask]
  if not l then
    local fmt, present = { "<c1I4Bs4" }, {}
    for i, f in ipairs(FIELDS) do
      if mask & (1 << (i - 1)) ~= 0 then
        present[#present + 1] = i
        fmt[#fmt + 1] = f[2] == "int" and "j" or "s4"
      end
    end
    l = { format = concat(fmt), present = present }
    layouts[mask] = l
  end
  return l
end

-- The sets of names recur (create.create_spec gives every tcp entry one of two tables
-- of window flags): their texts are kept by table, and the tables read back by text, to
-- be shared by the specs (the library only reads a spec).
local set_texts = setmetatable({}, { __mode = "k" })
local function set_text(set)
  local text = set_texts[set]
  if not text then
    local names = {}
    for name in pairs(set) do names[#names + 1] = name end
    table.sort(names)
    text = concat(names, ",")
    set_texts[set] = text
  end
  return text
end

local read_sets = {}
local function set_of(text)
  local set = read_sets[text]
  if not set then
    set = {}
    for name in text:gmatch("[^,]+") do set[name] = true end
    read_sets[text] = set
  end
  return set
end

local function names_of(text)
  local names = {}
  for name in text:gmatch("[^,]+") do names[#names + 1] = name end
  return names
end

-- A create record: kind "I" or "A", netns (or nil) and the spec.
local packed = {}   -- pack_create's scratch: only packed[1 .. n] are read
local function pack_create(kind, netns, spec)
  local mask, n = 0, 0
  for i = 1, #FIELDS do
    local f = FIELDS[i]
    local v = spec[f[1]]
    if v ~= nil then
      mask = mask | (1 << (i - 1))
      local how = f[2]
      if how == "list" then v = concat(v, ",") elseif how == "set" then v = set_text(v) end
      n = n + 1
      packed[n] = v
    end
  end
  local count = 0
  for _ in pairs(spec) do count = count + 1 end
  if count ~= n then   -- a field not in FIELDS, which the record would lose
    for k in pairs(spec) do
      if not INDEX[k] then error("spool: a create spec field it cannot keep: " .. tostring(k)) end
    end
  end
  return pack(layout(mask).format, kind, mask, netns and 1 or 0, netns or "",
              table.unpack(packed, 1, n))
end

local function unpack_create(body)
  local l = layout((unpack("<I4", body, 2)))
  local record = { unpack(l.format, body) }   -- kind, mask, netns given, netns, the fields
  local spec = {}
  for n, i in ipairs(l.present) do
    local f, v = FIELDS[i], record[n + 4]
    if f[2] == "list" then v = names_of(v) elseif f[2] == "set" then v = set_of(v) end
    spec[f[1]] = v
  end
  return record[1] == "A" and "CT_ADD" or "CT_CREATE", record[3] == 1 and record[4] or nil, spec
end

local Spool = {}
Spool.__index = Spool

local SAVED_RUN = 16384   -- bytes of lines per "saved" record, at least

--- A new, empty spool in a temporary file; close it (or let `<close>` do it) when done.
function M.new()
  local f, msg = io.tmpfile()
  if not f then error({ status = 1, msg = "cannot make a temporary file: " .. tostring(msg) }, 0) end
  return setmetatable({ file = f, run = {}, run_bytes = 0 }, Spool)
end

local function write_record(self, body)
  local ok, msg = self.file:write(pack("<I4", #body), body)
  if not ok then error({ status = 1, msg = "cannot write a temporary file: " .. msg }, 0) end
end

-- The run of saved lines so far as a record.
local function end_run(self)
  local run = self.run
  if #run > 0 then
    write_record(self, "S" .. concat(run))
    self.run, self.run_bytes = {}, 0
  end
end

function Spool:write(body)
  end_run(self)
  write_record(self, body)
end

--- Spools -I and -A lines of conntrack's save format (conntrack.save_lines), as one text
-- (the last line may lack its newline).
function Spool:saved(text)
  local run = self.run
  run[#run + 1] = byte(text, -1) == NEWLINE and text or text .. "\n"
  self.run_bytes = self.run_bytes + #text
  if self.run_bytes >= SAVED_RUN then end_run(self) end
end

--- Spools a create: command is CT_CREATE or CT_ADD, netns a string or nil.
function Spool:create(command, netns, spec)
  self:write(pack_create(command == "CT_ADD" and "A" or "I", netns, spec))
end

--- Spools the error { status =, msg = } that running a line will raise, and the line's
-- --netns (or nil): the run opens its handle first, as the line would have.
function Spool:failure(err, netns)
  self:write(pack("<c1js4Bs4", "F", err.status, err.msg, netns and 1 or 0, netns or ""))
end

--- Spools a line to parse again when it runs.
function Spool:line(text)
  self:write("L" .. text)
end

-- The record at the file's position: kind and its values, or nil at the end.
function Spool:read()
  local f = self.file
  local header = f:read(4)
  if not header then return nil end
  local body = f:read((unpack("<I4", header)))
  local kind = body:sub(1, 1)
  if kind == "I" or kind == "A" then return "create", unpack_create(body) end
  if kind == "S" then return "saved", body:sub(2) end
  if kind == "F" then
    local status, msg, has_netns, netns = unpack("<js4Bs4", body, 2)
    return "failure", { status = status, msg = msg }, has_netns == 1 and netns or nil
  end
  return "line", body:sub(2)
end

--- Iterates over the records from the first: kind, then its values ("saved": the
-- lines, each ending in a newline, as one string).
function Spool:records()
  end_run(self)
  assert(self.file:seek("set", 0))
  return function() return self:read() end
end

function Spool:close()
  if self.file then
    self.file:close()
    self.file = nil
  end
end
Spool.__close = Spool.close

return M
