-- Build-time generator: compiles Lua sources into a C file for the ct-lua binary.
--
--   lua5.4 tools/embed.lua OUT.c FILE...
--
-- Each FILE is a repository-relative path under lua/ (a module) or scripts/ (a bundled
-- script). OUT.c defines ct_embedded_modules[] and ct_embedded_scripts[] as declared in
-- core/embedded.h. Each file is stored precompiled: loading bytecode takes a tenth of the
-- time of compiling source, and ct-lua's start-up is what every short command pays
-- (`ct-lua conntrack -C`). The debug information keeps the source and its lines, so
-- tracebacks name the repository's files and lines, but not the names of locals and
-- upvalues (drop_names). The interpreter running this script
-- must be the Lua the binary links (the Makefile uses lua5.4 for both); a mismatch fails
-- loudly when the chunk is loaded. A syntax error fails the build. Chunks are emitted as
-- unsigned char arrays rather than string literals: C11 only guarantees 4095 characters per
-- (concatenated) literal, and byte lists need no escaping rules. Entries are sorted by name
-- so the output depends only on the file set and contents, never on argument order, time
-- or host.

local USAGE = "usage: lua5.4 tools/embed.lua OUT.c FILE..."

local function die(msg)
  io.stderr:write("embed.lua: ", msg, "\n")
  os.exit(1)
end

-- Repository path -> kind ("module" or "script") and require/script name.
local function classify(path)
  local mod = path:match("^lua/(.+)%.lua$")
  if mod then
    mod = mod:gsub("/init$", ""):gsub("/", ".")
    if mod == "init" or mod:find("..", 1, true) or mod:find("^%.") or mod:find("%.$") then
      die("cannot derive a module name from " .. path)
    end
    return "module", mod
  end
  -- Script names are matched against argv words and argv[0] basenames, so keep them to
  -- plain words that cannot look like an option or a path.
  local script = path:match("^scripts/([%w_][%w_.%-]*)%.lua$")
  if script then
    return "script", script
  end
  die(path .. ": not lua/**.lua or scripts/*.lua")
end

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then die(err) end
  local data = f:read("a")
  f:close()
  return data
end

-- Lua 5.4's binary chunk (lundump.c) without the names of locals and upvalues in its
-- debug information, which keeps the source and the line of every instruction, and the
-- name _ENV, by which messages say "global 'x'". Interning the names was a sixth of the
-- instructions of `ct-lua conntrack -G`, all of start-up. What they gave is a name in a
-- few messages of an error inside a bundled chunk: "(local 'x')" and "(upvalue 'x')",
-- and "bad argument #1 to 'find'" through a local alias of a library function, which
-- now say nothing, '?' and '?'.
local function drop_names(chunk)
  local pos, out = 1, {}
  local function take(n)
    local s = chunk:sub(pos, pos + n - 1)
    if #s < n then die("drop_names: truncated chunk") end
    pos = pos + n
    return s
  end
  local function keep(n) out[#out + 1] = take(n) end
  -- a size: 7-bit groups, most significant first, the last one with 0x80 set
  local function size()
    local start, v = pos, 0
    repeat
      local b = take(1):byte()
      v = (v << 7) | (b & 0x7f)
    until b & 0x80 ~= 0
    return v, chunk:sub(start, pos - 1)
  end
  local function keep_size()
    local v, raw = size()
    out[#out + 1] = raw
    return v
  end
  local function keep_string()    -- size + 1, then the bytes; 0 is no string
    local n = keep_size()
    if n > 0 then keep(n - 1) end
  end
  local function read_string()
    local n = size()
    return n > 0 and take(n - 1) or nil
  end
  local NONE = "\x80"            -- a count of 0, or no string
  -- the constants' type tags and the size of their value (a string's is its own)
  local VALUE = { [0x00] = 0, [0x01] = 0, [0x11] = 0, [0x03] = 8, [0x13] = 8, [0x04] = "s",
                  [0x14] = "s" }
  local function func()
    keep_string()                 -- source
    keep_size(); keep_size()      -- linedefined, lastlinedefined
    keep(3)                       -- numparams, is_vararg, maxstacksize
    keep(4 * keep_size())         -- code
    for _ = 1, keep_size() do     -- constants: a type tag, then the value
      local tag = take(1)
      local value = VALUE[tag:byte()]
      if not value then die(string.format("drop_names: constant of type 0x%02x", tag:byte())) end
      out[#out + 1] = tag
      if value == "s" then keep_string() else keep(value) end
    end
    keep(3 * keep_size())         -- upvalues: instack, idx, kind
    for _ = 1, keep_size() do func() end
    keep(keep_size())             -- lineinfo
    for _ = 1, keep_size() do keep_size(); keep_size() end   -- abslineinfo: pc, line
    out[#out + 1] = NONE          -- locvars: name, startpc, endpc
    for _ = 1, size() do read_string(); size(); size() end
    for _ = 1, keep_size() do     -- upvalue names
      local name = read_string()
      out[#out + 1] = name == "_ENV" and "\x85_ENV" or NONE
    end
  end
  -- the header: signature, version 5.4, format 0, LUAC_DATA, the sizes of an instruction,
  -- an integer and a number, LUAC_INT, LUAC_NUM; then the main closure's upvalue count
  local header = take(15)
  if header ~= "\x1bLua\x54\0\x19\x93\r\n\x1a\n\4\8\8" then
    die("drop_names: not a chunk of Lua 5.4 with 64-bit integers and numbers")
  end
  out[1] = header
  keep(8 + 8 + 1)
  func()
  if pos ~= #chunk + 1 then die("drop_names: bytes after the main function") end
  return table.concat(out)
end

-- The file compiled as luaL_loadfile would: a first line starting with '#' (a shebang) is
-- skipped, keeping its newline so that line numbers stay those of the file.
local function compile(path)
  local source = read_file(path):gsub("^#[^\n]*", "", 1)
  local chunk, err = load(source, "@" .. path, "t")
  if not chunk then die(err) end
  return drop_names(string.dump(chunk))
end

-- A C string literal for names and chunk names. Everything outside a conservative set is
-- written as a three-digit octal escape, which cannot run into a following digit and also
-- defuses trigraphs ("??=" is live under -std=c11).
local function c_string(s)
  return '"' .. s:gsub("[^%w_./%-@]", function(c)
    return string.format("\\%03o", c:byte())
  end) .. '"'
end

-- Byte-array initializer body: decimal bytes, 20 per line, then a NUL terminator (which
-- also keeps an empty file from becoming an illegal zero-length array).
local PER_LINE = 20
local LINE_FMT = "  " .. string.rep("%d,", PER_LINE) .. "\n"

local function c_bytes(data)
  local out, n = {}, #data
  local full = n - n % PER_LINE
  for i = 1, full, PER_LINE do
    out[#out + 1] = LINE_FMT:format(data:byte(i, i + PER_LINE - 1))
  end
  if full < n then
    out[#out + 1] = "  " .. string.rep("%d,", n - full):format(data:byte(full + 1, n)) .. "\n"
  end
  out[#out + 1] = "  0\n"
  return table.concat(out)
end

local function main(out_path, ...)
  -- OUT.c must look like C so a forgotten argument cannot overwrite a Lua source.
  if not out_path or not out_path:match("%.c$") then die(USAGE) end
  local files = { ... }

  local groups = { module = {}, script = {} }
  local seen = { module = {}, script = {} }
  for _, arg_path in ipairs(files) do
    local path = arg_path:gsub("^%./", "")
    local kind, name = classify(path)
    if seen[kind][name] then
      die(string.format("%s and %s both define %s '%s'", seen[kind][name], path, kind, name))
    end
    seen[kind][name] = path
    table.insert(groups[kind], { name = name, path = path, data = compile(path) })
  end

  local out = {
    "/* Generated by tools/embed.lua from lua/ and scripts/. Do not edit. */\n",
    "#include \"embedded.h\"\n",
  }
  local function emit_table(kind, c_name, prefix)
    local entries = groups[kind]
    table.sort(entries, function(a, b) return a.name < b.name end)
    for i, e in ipairs(entries) do
      out[#out + 1] = string.format("\n/* %s */\nstatic const unsigned char %s_%d[] = {\n",
                                    e.path:gsub("%*/", "* /"), prefix, i)
      out[#out + 1] = c_bytes(e.data)
      out[#out + 1] = "};\n"
    end
    out[#out + 1] = string.format("\nconst struct ct_embedded %s[] = {\n", c_name)
    for i, e in ipairs(entries) do
      out[#out + 1] = string.format("  { %s, %s, (const char *)%s_%d, %d },\n",
                                    c_string(e.name), c_string("@" .. e.path), prefix, i, #e.data)
    end
    out[#out + 1] = "  { NULL, NULL, NULL, 0 }\n};\n"
  end
  emit_table("module", "ct_embedded_modules", "module")
  emit_table("script", "ct_embedded_scripts", "script")

  -- Write beside the target and rename, so an interrupted run never leaves a truncated
  -- OUT.c that make would consider up to date.
  local tmp = out_path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then die(err) end
  local ok, werr = f:write(table.concat(out))
  if ok then ok, werr = f:close() else f:close() end
  if not ok then os.remove(tmp); die(tmp .. ": " .. tostring(werr)) end
  local renamed, rerr = os.rename(tmp, out_path)
  if not renamed then os.remove(tmp); die(rerr) end
end

main(...)
