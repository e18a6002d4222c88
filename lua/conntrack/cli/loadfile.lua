--- -R FILE / --load-file FILE (only as the first argument): every line is a command line
-- of -I, -A, -U, -D or -F. All lines are parsed first, then run in order; the first
-- failure stops the run. No summary lines are printed, and acting on nothing is no error.
-- Each line is parsed once (spool.lua keeps what it asks for between the passes), except
-- -U, -D and -F, parsed again when they run. The -I and -A lines of conntrack's save
-- format, most of a file that `-o save` wrote, go to the library as they are: it finds
-- and reads them in C (conntrack.save_lines, h:restore), with the meaning this parser
-- gives them.
-- @module conntrack.cli.loadfile
local parse = require "conntrack.cli.parse"
local create = require "conntrack.cli.create"
local kernel = require "conntrack.cli.kernel"
local spool = require "conntrack.cli.spool"
local conntrack = require "conntrack"
local save_command, save_lines = conntrack.save_command, conntrack.save_lines

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

local sub, find, gmatch, concat = string.sub, string.find, string.gmatch, table.concat

local function fail(status, msg) error({ status = status, msg = msg }, 0) end

-- iptables' add_param_to_argv: words split on blanks; double quotes group (inside them a
-- backslash escapes the next character) and a closing quote ends the word, even an
-- empty one. The words go to argv[1..n]; returns n.
local function split_quoted(line, argv)
  local quote_open, escaped = false, false
  local param, n = {}, 0
  local function add(c)
    param[#param + 1] = c
    if #param >= PARAM_MAX then fail(2, "Parameter too long!") end
  end
  local function push()
    if n + 2 >= MAX_ARGC then fail(2, "too many arguments") end
    n = n + 1
    argv[n] = concat(param)
    param = {}
  end
  for i = 1, #line do
    local c = sub(line, i, i)
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
  return n
end

-- The same for the usual line without quotes, a word at a time. (%S stops at the same
-- blanks when the line has no \v, \f or \r, and finds them faster than a set.)
local function split(line, argv)
  if find(line, '"', 1, true) then return split_quoted(line, argv) end
  local other_blanks = find(line, "\v", 1, true) or find(line, "\f", 1, true) or
                       find(line, "\r", 1, true)
  local n = 0
  for word in gmatch(line, other_blanks and "[^ \t\n]+" or "%S+") do
    if #word >= PARAM_MAX then fail(2, "Parameter too long!") end
    if n + 2 >= MAX_ARGC then fail(2, "too many arguments") end
    n = n + 1
    argv[n] = word
  end
  return n
end

local BLOCK = 16384   -- bytes read at a time
local PIECE = 10239   -- the most a buffer holds (fgets into 10240 bytes)

-- Reads f as conntrack's fgets(buffer, 10240) loop does, in order: saved(text) with each
-- run of lines that conntrack.save_lines takes (newline-ended, one string), and
-- other(buffer) with each other buffer: a line, or a 10239-byte piece of a longer one.
local function each_buffer(f, saved, other)
  local rest = ""   -- the start of a buffer that the next block ends
  for block in function() return f:read(BLOCK) end do
    local text, pos = rest .. block, 1
    while true do
      local n, after = save_lines(text, pos)
      if n > 0 then
        saved(sub(text, pos, after - 1))
        pos = after
      end
      local newline = find(text, "\n", pos, true)
      local last = math.min(newline or math.huge, pos + PIECE - 1)
      if last > #text then break end
      other(sub(text, pos, last))
      pos = last + 1
    end
    rest = sub(text, pos)
  end
  if rest ~= "" then other(rest) end   -- (a last line without a newline)
end

-- The command of a buffer (parse_line is a parse.parser()), with output as its -o seed.
-- words is the argv to fill (argv[0] set): one table serves every line, its words past
-- the line's argc left over from longer lines.
local function parse_buffer(ctx, buffer, words, parse_line, output)
  return parse_line(ctx, words, split(buffer, words) + 1, output)
end

-- Parses every command line of f in order and calls fn with each command and its text,
-- or saved with the text of lines that the library takes as they are (-I and -A lines of
-- conntrack's save format: their meaning is the parse's, and they have no -o). The -o
-- flags of one line carry over to the next (conntrack's are one global mask); returns
-- their sum.
local function each_command(ctx, f, argv0, parse_line, fn, saved)
  local output, words = {}, { [0] = argv0 }
  each_buffer(f, saved, function(buffer)
    -- (a last line without a newline, or what follows a piece of a longer one)
    if save_command(buffer) then return saved(buffer) end
    local nul = find(buffer, "\0", 1, true)   -- (the end of fgets' line as C reads it)
    if nul then buffer = sub(buffer, 1, nul - 1) end
    local start = find(buffer, "[^ \t]")
    if start and start > 1 then buffer = sub(buffer, start) end
    local first = sub(buffer, 1, 1)
    if first ~= "\n" and first ~= "#" then
      local cmd = parse_buffer(ctx, buffer, words, parse_line, output)
      output = cmd.output
      fn(cmd, buffer)
    end
  end)
  return output
end

-- FILE, or standard input for "-".
local function open_input(name)
  local path = name == "-" and "/dev/stdin" or name
  local f = io.open(path, "rb")
  if not f then fail(2, "Failed to open file " .. path .. " for reading") end
  return f
end

local SILENT = { write = function(self) return self end }
local CREATES = { CT_CREATE = true, CT_ADD = true }

-- The record of a command for the second pass: a create's spec, or the failure building
-- it found, or (any other command) the line to parse again then.
local function spool_command(records, cmd, buffer)
  if not CREATES[cmd.command] then return records:line(buffer) end
  local ok, spec = pcall(create.create_spec, cmd, cmd.command)
  if ok then return records:create(cmd.command, cmd.netns, spec) end
  if type(spec) ~= "table" or not spec.status then error(spec, 0) end
  records:failure(spec, cmd.netns)
end

--- -R FILE: parses every line (a parse error stops everything, exit 2) into a spool,
-- checks that each command may be loaded, then runs them in order: the creates in
-- pipelined batches, the other commands (parsed again) as they come.
function M.run(ctx, argv)
  local f <close> = open_input(argv[2])
  local records <close> = spool.new()
  local refused
  local parse_line = parse.parser()
  local output = each_command(ctx, f, argv[0], parse_line, function(cmd, buffer)
    if not ALLOWED[cmd.command] then
      refused = refused or cmd.command
    elseif not refused then
      spool_command(records, cmd, buffer)
    end
  end, function(text)
    if not refused then records:saved(text) end
  end)
  if refused then
    fail(2, string.format("Cannot use command `%s' with --load-file", NAMES[refused] or "unknown"))
  end
  local cli = require "conntrack.cli"
  -- a line parsed again says nothing: its warnings were printed by the first pass
  local quiet = setmetatable({ err = SILENT }, { __index = ctx })
  local creates = create.queue(ctx, function(line)   -- (the spec of a saved line)
    local cmd = parse_buffer(quiet, line, { [0] = argv[0] }, parse_line)
    return create.create_spec(cmd, cmd.command)
  end)
  for kind, a, b, c in records:records() do
    if kind == "create" then
      creates.add(a, b, c)
    elseif kind == "saved" then
      creates.restore(a)
    else
      creates.flush()
      if kind == "failure" then
        kernel.handle(ctx, { netns = b })   -- (its errors come first, as for any line)
        error(a, 0)
      end
      local cmd = parse_buffer(quiet, a, { [0] = argv[0] }, parse_line, output)
      cmd.output = output
      cli.execute(ctx, cmd)
    end
  end
  creates.flush()
  return 0
end

return M
