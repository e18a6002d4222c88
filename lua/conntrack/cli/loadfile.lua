--- -R FILE / --load-file FILE (only as the first argument): every line is a command line
-- of -I, -A, -U, -D or -F. All lines are parsed first, then run in order; the first
-- failure stops the run. No summary lines are printed, and acting on nothing is no error.
-- @module conntrack.cli.loadfile
local parse = require "conntrack.cli.parse"

local M = {}

local MAX_ARGC = 255
local PARAM_MAX = 1024

local ALLOWED = { CT_CREATE = true, CT_ADD = true, CT_UPDATE = true, CT_DELETE = true,
                  CT_FLUSH = true }
-- how conntrack names the commands it refuses (sic: -I expect is "-C expect")
local NAMES = {
  CT_LIST = "-L", CT_GET = "-G", CT_EVENT = "-E", CT_VERSION = "-V", CT_HELP = "-h",
  EXP_LIST = "-L expect", EXP_CREATE = "-C expect", EXP_DELETE = "-D expect",
  EXP_GET = "-G expect", EXP_FLUSH = "-F expect", EXP_EVENT = "-E expect", CT_COUNT = "-C",
  EXP_COUNT = "-C expect", CT_STATS = "-S", EXP_STATS = "-S expect",
}

local sub = string.sub

local function fail(status, msg) error({ status = status, msg = msg }, 0) end

-- iptables' add_param_to_argv: words split on blanks; double quotes group (inside them a
-- backslash escapes the next character) and a closing quote ends the word, even an
-- empty one.
local function split_quoted(line, argv)
  local quote_open, escaped = false, false
  local param = {}
  local function add(c)
    param[#param + 1] = c
    if #param >= PARAM_MAX then fail(2, "Parameter too long!") end
  end
  local function push()
    if #argv + 2 >= MAX_ARGC then fail(2, "too many arguments") end
    argv[#argv + 1] = table.concat(param)
    param = {}
  end
  for i = 1, #line do
    local c = line:sub(i, i)
    if quote_open then
      if escaped then
        add(c); escaped = false
      elseif c == "\\" then
        escaped = true
      elseif c == '"' then
        quote_open = false
        push()
      else
        add(c)
      end
    elseif c == '"' then
      quote_open = true
    elseif c == " " or c == "\t" or c == "\n" then
      if #param > 0 then push() end
    else
      add(c)
    end
  end
  if #param > 0 then push() end
end

-- The same for the usual line without quotes, a word at a time.
local function split(line, argv)
  if line:find('"', 1, true) then return split_quoted(line, argv) end
  for word in line:gmatch("[^ \t\n]+") do
    if #word >= PARAM_MAX then fail(2, "Parameter too long!") end
    if #argv + 2 >= MAX_ARGC then fail(2, "too many arguments") end
    argv[#argv + 1] = word
  end
end

-- Calls fn with each buffer fgets(buffer, 10240) reads from f: a line, or a 10239-byte
-- piece of a longer one.
local function each_buffer(f, fn)
  for line in f:lines("L") do
    while #line > 10239 do
      fn(sub(line, 1, 10239))
      line = sub(line, 10240)
    end
    fn(line)
  end
end

-- Parses every command line of f in order with parse_line (a parse.parser()) and calls
-- fn with each. The -o flags of one
-- line carry over to the next (conntrack's are one global mask); returns their sum.
local function each_command(ctx, f, argv0, parse_line, fn)
  local output = {}
  each_buffer(f, function(buffer)
    buffer = buffer:gsub("^[ \t]+", "")
    local first = sub(buffer, 1, 1)
    if first ~= "\n" and first ~= "#" then
      local words = { [0] = argv0 }
      split(buffer, words)
      local cmd = parse_line(ctx, words, #words + 1, output)
      output = cmd.output
      fn(cmd)
    end
  end)
  return output
end

-- The file to read twice: FILE itself, or for "-" (or anything that cannot seek) a copy
-- of it in a temporary file, so that memory does not grow with the input.
local function open_input(name)
  local path = name == "-" and "/dev/stdin" or name
  local f = io.open(path, "rb")
  if not f then fail(2, "Failed to open file " .. path .. " for reading") end
  if name ~= "-" and f:seek("set", 0) then return f end
  local copy = assert(io.tmpfile())
  for block in f:lines(65536) do copy:write(block) end
  f:close()
  copy:seek("set", 0)
  return copy
end

local SILENT = { write = function(self) return self end }

--- -R FILE: parses every line (a parse error stops everything, exit 2), checks that each
-- command may be loaded, then parses and runs them in order. Lines are read twice rather
-- than kept, so memory does not grow with the file.
function M.run(ctx, argv)
  local f <close> = open_input(argv[2])
  local refused
  -- one parser for both passes: the plans of the first serve the second
  local parse_line = parse.parser()
  local output = each_command(ctx, f, argv[0], parse_line, function(cmd)
    if not ALLOWED[cmd.command] then refused = refused or cmd.command end
  end)
  if refused then
    fail(2, string.format("Cannot use command `%s' with --load-file", NAMES[refused] or "unknown"))
  end
  local cli = require "conntrack.cli"
  f:seek("set", 0)
  -- the second parse says nothing: its warnings were printed by the first
  local quiet = setmetatable({ err = SILENT }, { __index = ctx })
  each_command(quiet, f, argv[0], parse_line, function(cmd)
    cmd.output = output
    cli.execute(ctx, cmd)
  end)
  return 0
end

return M
