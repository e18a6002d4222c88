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

local function fail(status, msg) error({ status = status, msg = msg }, 0) end

-- iptables' add_param_to_argv: words split on blanks; double quotes group (inside them a
-- backslash escapes the next character) and a closing quote ends the word, even an
-- empty one.
local function split(line, argv)
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

-- The lines as fgets(buffer, 10240) reads them.
local function lines_of(data)
  local out, pos, n = {}, 1, #data
  while pos <= n do
    local nl = data:find("\n", pos, true)
    local stop = nl or n
    if stop - pos + 1 > 10239 then stop = pos + 10238 end
    out[#out + 1] = data:sub(pos, stop)
    pos = stop + 1
  end
  return out
end

function M.run(ctx, argv)
  local name = argv[2]
  if name == "-" then name = "/dev/stdin" end
  local f = io.open(name, "rb")
  if not f then fail(2, "Failed to open file " .. name .. " for reading") end
  local data = f:read("a") or ""
  f:close()
  local cmds, output = {}, {}
  for _, buffer in ipairs(lines_of(data)) do
    buffer = buffer:gsub("^[ \t]+", "")
    local first = buffer:sub(1, 1)
    if first ~= "\n" and first ~= "#" then
      local words = { [0] = argv[0] }
      local list = {}
      split(buffer, list)
      for i, w in ipairs(list) do words[i] = w end
      local cmd = parse.parse(ctx, words, #list + 1, output)
      output = cmd.output
      cmds[#cmds + 1] = cmd
    end
  end
  -- conntrack's -o flags are one global mask: every line prints with all of them
  for _, cmd in ipairs(cmds) do cmd.output = output end
  for _, cmd in ipairs(cmds) do
    if not ALLOWED[cmd.command] then
      fail(2, string.format("Cannot use command `%s' with --load-file",
                            NAMES[cmd.command] or "unknown"))
    end
  end
  local cli = require "conntrack.cli"
  for _, cmd in ipairs(cmds) do cli.execute(ctx, cmd) end
  return 0
end

return M
