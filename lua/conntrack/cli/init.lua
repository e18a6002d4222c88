--- `ct-lua conntrack`: conntrack 1.4.7's command line over the ct-lua library.
--
--   local cli = require "conntrack.cli"
--   local status = cli.main(arg, io.stdout, io.stderr)
--
-- main(argv, out, err[, ready]) takes the script's `arg` table (argv[0] is the program
-- name) and two handles with :write (and :flush for -E), prints exactly what conntrack
-- prints, and returns the exit status. It never exits and keeps nothing between calls, so
-- tests can call it in-process. Modules are loaded only when a command needs them.
-- ready, if given, is called once start-up is over: the command line is parsed (or -R's
-- file is about to be read) and the command's own work begins.
-- @module conntrack.cli
local M = {}

local options = require "conntrack.cli.options"

local PREFIX = options.PREFIX
local TRY = "Try `conntrack -h' or 'conntrack --help' for more information.\n"

-- The summary line of each command (conntrack's exit_msg) on stderr.
local SUMMARY = {
  CT_LIST = "%d flow entries have been shown.\n",
  CT_CREATE = "%d flow entries have been created.\n",
  CT_UPDATE = "%d flow entries have been updated.\n",
  CT_DELETE = "%d flow entries have been deleted.\n",
  CT_GET = "%d flow entries have been shown.\n",
  EXP_LIST = "%d expectations have been shown.\n",
  EXP_DELETE = "%d expectations have been deleted.\n",
  CT_ADD = "%d flow entries have been added.\n",
}
-- commands for which showing or changing nothing is not a failure
local ZERO_IS_FINE = { CT_LIST = true, EXP_LIST = true, CT_ADD = true }

local MODULE = {
  CT_LIST = "commands", CT_GET = "commands", CT_CREATE = "create", CT_ADD = "create",
  CT_DELETE = "commands", CT_UPDATE = "commands", CT_FLUSH = "commands",
  CT_COUNT = "commands", CT_STATS = "commands", EXP_STATS = "commands",
  EXP_LIST = "expect", EXP_GET = "expect", EXP_DELETE = "expect", EXP_CREATE = "expect",
  EXP_FLUSH = "expect", EXP_COUNT = "expect",
  CT_EVENT = "events", EXP_EVENT = "events",
}

--- Runs one parsed command (do_command_ct); the summary is the caller's.
function M.execute(ctx, cmd)
  local c = cmd.command
  if c == "CT_VERSION" then
    ctx.out:write("conntrack v", options.VERSION, " (conntrack-tools)\n")
  elseif c == "CT_HELP" or c == "NONE" then
    ctx.out:write(options.usage(cmd.argv0))
    if c == "CT_HELP" and cmd.options.protonum then
      ctx.out:write(require("conntrack.cli.protocols").help(cmd.handler, cmd.protonum))
    end
  else
    require("conntrack.cli." .. MODULE[c])[c](ctx, cmd)
  end
end

--- The summary line; returns the exit status it implies (print_stats).
function M.summary(ctx, cmd)
  local msg = SUMMARY[cmd.command]
  if not msg then return 0 end
  ctx.err:write(PREFIX, string.format(msg, ctx.counter))
  if ctx.counter == 0 and not ZERO_IS_FINE[cmd.command] then return 1 end
  return 0
end

local function run(ctx, argv, argc, ready)
  if argc > 2 and (argv[1] == "-R" or argv[1] == "--load-file") then
    local load_file = require "conntrack.cli.loadfile"
    ready()
    return load_file.run(ctx, argv, argc)
  end
  local cmd = require("conntrack.cli.parse").parse(ctx, argv, argc)
  ready()
  M.execute(ctx, cmd)
  return M.summary(ctx, cmd)
end

local function nothing() end

--- conntrack's main: returns the exit status.
function M.main(argv, out, err, ready)
  local args, n = { [0] = argv[0] or options.PROGNAME }, 0
  while argv[n + 1] ~= nil do
    n = n + 1
    args[n] = tostring(argv[n])
  end
  local ctx = { out = out, err = err, counter = 0 }
  local labelmap = package.loaded["conntrack.cli.labelmap"]
  if labelmap then labelmap.reset() end
  local ok, res = pcall(run, ctx, args, n + 1, ready or nothing)
  if ctx.handle then ctx.handle:close() end
  if ok then return res end
  if type(res) == "table" and res.status then
    err:write(PREFIX, res.msg, "\n")
    if res.status == 2 then err:write(TRY) end
    return res.status
  end
  err:write(PREFIX, "internal error: ", tostring(res), "\n")
  return 1
end

return M
