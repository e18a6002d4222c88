-- The fuzz_cli driver (fuzz/fuzz_cli.c): the conntrack command line and the
-- -R file reader of `ct-lua conntrack` (lua/conntrack/cli/), in process,
-- against the fake kernel, which answers nothing. Every input must end in
-- an exit status (main catches the CLI's own errors and reports them); an
-- "internal error" (a Lua error in the CLI's code, not a usage error) is a
-- finding when FUZZ_CLI_STRICT=1 (=report prints each one and goes on). Event commands (-E) are only parsed:
-- they would wait for events forever.
local _, input, sel = ...
local cli = require "conntrack.cli"

local function sink()
  local parts = {}
  return {
    write = function(self, ...)
      for i = 1, select("#", ...) do parts[#parts + 1] = tostring((select(i, ...))) end
      return self
    end,
    flush = function(self) return self end,
    text = function() return table.concat(parts) end,
  }
end

local function write_file(text)
  local f = assert(io.open(FUZZ_TMP, "wb"))
  f:write(text)
  f:close()
end

local argv = { [0] = "conntrack" }
if sel & 1 == 1 then
  -- the -R reader: the input is the file
  write_file(input)
  argv[1], argv[2] = (sel & 2 == 2) and "--load-file" or "-R", FUZZ_TMP
else
  for arg in (input .. "\0"):gmatch("([^%z]*)%z") do argv[#argv + 1] = arg end
  if argv[1] == "-R" or argv[1] == "--load-file" then
    -- never a path from the input (/dev/zero, stdin): the rest is the file
    write_file(table.concat(argv, "\n", 3))
    for i = #argv, 3, -1 do argv[i] = nil end
    argv[2] = FUZZ_TMP
  else
    local ok, cmd = pcall(require("conntrack.cli.parse").parse,
                          { out = sink(), err = sink(), counter = 0 }, argv, #argv + 1)
    if not ok or type(cmd) ~= "table" or cmd.command == "CT_EVENT" or cmd.command == "EXP_EVENT" then
      return
    end
  end
end

local out, err = sink(), sink()
local status = cli.main(argv, out, err)
if math.type(status) ~= "integer" then
  fuzz_abort("main returned " .. tostring(status) .. " for " .. table.concat(argv, " ", 1))
end
local strict = os.getenv("FUZZ_CLI_STRICT")
if strict and err.text():find("internal error", 1, true) then
  local what = err.text():gsub("\n$", "") .. " for " .. table.concat(argv, " | ", 1)
  if strict == "report" then io.stderr:write("internal: ", what, "\n") else fuzz_abort(what) end
end
