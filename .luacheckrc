-- luacheck over lua/, scripts/, examples/ and tests/ (make lint)
std = "lua54"
max_line_length = 100
files["tests/"] = {
  std = "+busted",
  max_line_length = 120,   -- assertion messages read better whole
  ignore = { "212/self", "431" },  -- method-shaped helpers; a spec's h shadows the file's
}
-- conntrack's messages and help text are kept whole, as conntrack prints them
files["lua/conntrack/cli/"] = { max_line_length = 120 }
