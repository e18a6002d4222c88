-- Random -I and -A command lines, side by side with /usr/sbin/conntrack: which options
-- are given, in which order, with which values, for every protocol handler. Each line
-- runs on an empty table in both programs; the exit status, the messages and the entry
-- made must be the same. The lines come from a fixed seed (CREATE_LINES_SEED replaces
-- it, CREATE_LINES_COUNT the number of lines), so a failure names a line that can be
-- run again by hand.
--
-- tests/run gives this file its own network namespace: the table here is ours.

local H = require "helpers"
local random_lines = require "helpers.random_lines"

local SEED = tonumber(os.getenv("CREATE_LINES_SEED")) or 20261127
local COUNT = tonumber(os.getenv("CREATE_LINES_COUNT")) or 250

-- What running the words did: the status, the messages and the table afterwards.
local function outcome(who, words)
  H.run(H.CONNTRACK .. " -F")
  local _, status, err = H.run_words(who, words)
  local listed = H.conntrack("-L -o extended 2>/dev/null")
  return { status = status, stderr = err, table = H.sorted(listed) }
end

describe("random -I and -A lines", function()
  it("make what conntrack makes, or fail as it does (seed " .. SEED .. ")", function()
    local outcomes = random_lines.side_by_side(SEED, COUNT, random_lines.create, outcome)
    local made = random_lines.count(outcomes, function(o) return o.status == 0 end)
    local failed = #outcomes - made
    H.run(H.CONNTRACK .. " -F")
    -- the mix must exercise both outcomes
    assert.is_true(made > COUNT // 10, "only " .. made .. " lines made an entry")
    assert.is_true(failed > COUNT // 10, "only " .. failed .. " lines failed")
  end)
end)
