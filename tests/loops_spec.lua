-- The event-loop examples (examples/luv-loop.lua, examples/cqueues-loop.lua)
-- run as users run them, while another process changes the table: each must
-- print the events of those changes and periodic dumps.
local H = require "helpers"

-- Runs an example for `seconds` while `changes` entries are created and
-- deleted by conntrack(8); returns its stdout lines.
local function run_with_churn(example, seconds, changes)
  local out = os.tmpname()
  local before = H.subscribed_sockets()
  local pid = H.must("./ct-lua " .. example .. " " .. seconds .. " > " .. out ..
                     " 2>&1 & echo $!"):match("%d+")
  -- it subscribes at start: no change before that (a fixed 0.5 s lost the first event on
  -- a loaded machine)
  H.eventually(5, example .. " to subscribe", function() return H.subscribed_sockets() > before end,
               function() return H.read_file(out) end)
  for i = 1, changes do
    H.must(H.CONNTRACK .. " -I -p udp -s 10.3.0." .. i .. " -d 10.3.1.1 --sport 1 --dport 2 " ..
           "-t 60 2>/dev/null")
  end
  H.must(H.CONNTRACK .. " -D -s 10.3.0.0/24 >/dev/null 2>&1 || true")
  H.run("while kill -0 " .. pid .. " 2>/dev/null; do sleep 0.05; done")
  local lines = H.lines(assert(io.open(out)):read("a"))
  os.remove(out)
  return lines
end

local function count(lines, pattern)
  local n = 0
  for _, line in ipairs(lines) do
    if line:match(pattern) then n = n + 1 end
  end
  return n
end

describe("event-loop examples", function()
  before_each(function()
    H.reset()
    H.sysctl("nf_conntrack_events", 1)
  end)

  for _, example in ipairs{ "examples/luv-loop.lua", "examples/cqueues-loop.lua" } do
    it(example .. " prints the events of the changes and periodic dumps", function()
      local lines = run_with_churn(example, 2, 5)
      assert.equal(5, count(lines, "^event\tnew\t10%.3%.0%.%d+$"), table.concat(lines, "\n"))
      assert.equal(5, count(lines, "^event\tdestroy\t10%.3%.0%.%d+$"))
      assert.is_true(count(lines, "^dump\t%d+$") >= 4, table.concat(lines, "\n"))
      assert.equal(0, count(lines, "rror"))
    end)
  end
end)
