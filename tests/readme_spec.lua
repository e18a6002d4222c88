-- README's tutorial: every ```lua block that starts with "-- NAME.lua:" is run
-- as it stands, against a table whose content the checks know.
local H = require "helpers"

local function tutorial_scripts()
  local scripts = {}
  local readme = assert(io.open("README.md")):read("a")
  for block in readme:gmatch("```lua\n(.-)```") do
    local name = block:match("^%-%- ([%w%-]+%.lua):")
    if name then scripts[name] = block end
  end
  return scripts
end

local SCRIPTS = tutorial_scripts()

-- Runs a tutorial script with ct-lua; returns its stdout lines.
local function run(name)
  local path = os.tmpname()
  H.write_file(path, assert(SCRIPTS[name], name .. " is not in README"))
  local out = H.must("./ct-lua " .. path)
  os.remove(path)
  return H.lines(out)
end

local function entry(proto, src, dport, extra)
  local spec = { proto = proto, src = src, dst = "192.0.2.1", sport = 40000, dport = dport,
                 timeout = 300 }
  for k, v in pairs(extra or {}) do spec[k] = v end
  return spec
end

describe("README tutorial", function()
  local h

  before_each(function()
    H.reset()
    h = H.open()
    assert.equal(5, h:create{
      entry("tcp", "10.1.0.1", 22, { state = "ESTABLISHED" }),
      entry("tcp", "10.1.0.2", 80, { state = "ESTABLISHED" }),
      entry("udp", "10.2.0.1", 53),
      entry("udp", "10.2.0.2", 123),
      entry("udp", "172.16.0.1", 53),
    })
  end)

  after_each(function() h:close() end)

  it("has exactly the scripts tested here", function()
    local names = {}
    for name in pairs(SCRIPTS) do names[#names + 1] = name end
    table.sort(names)
    assert.same({ "aggregate.lua", "change.lua", "query.lua", "react.lua", "top-talkers.lua" },
                names)
  end)

  it("top-talkers.lua lists the flows that moved bytes, most first", function()
    H.track_traffic()
    local peer = H.peer()
    assert.equal("pong\n", H.tcp_exchange(peer, 8080))
    assert.equal("pong\n", H.udp_exchange(peer, 5353))
    local lines = run("top-talkers.lua")
    peer:close()
    assert.is_true(#lines >= 2 and #lines <= 5)
    local last = math.huge
    for _, line in ipairs(lines) do
      local bytes = tonumber(line:match("^(%d+)\t"))
      assert.is_true(bytes > 0 and bytes <= last, line)
      last = bytes
    end
  end)

  it("query.lua lists the flows to port 22 and counts the table", function()
    assert.same({ "10.1.0.1\t40000\t->\t192.0.2.1\tESTABLISHED", "flows in the table:\t5" },
                run("query.lua"))
  end)

  it("change.lua marks the UDP flows of 10/8 and deletes those to port 53", function()
    assert.same({ "marked\t2", "deleted\t1" }, run("change.lua"))
    assert.equal(1, #H.conntrack("-L -p udp -m 0x10/0xf0"))
    assert.equal(1, #H.conntrack("-L -p udp --dport 53"))  -- 172.16.0.1's stays
  end)

  it("react.lua prints the next three new connections", function()
    local out = os.tmpname()
    H.write_file(out .. ".lua", SCRIPTS["react.lua"])
    local pid = H.must("./ct-lua " .. out .. ".lua > " .. out .. " 2>&1 & echo $!"):match("%d+")
    -- it listens once it started: make flows until three lines come
    local lines = {}
    for i = 1, 100 do
      assert(h:create(entry("udp", "10.9.0." .. i, 9)))
      H.run("sleep 0.02")
      lines = H.lines(assert(io.open(out)):read("a"))
      if #lines >= 3 then break end
    end
    H.run("kill " .. pid)
    os.remove(out .. ".lua")
    os.remove(out)
    assert.equal(3, #lines)
    for _, line in ipairs(lines) do
      assert.matches("^new:\tudp +17 %d+ src=10%.9%.0%.%d+ dst=192%.0%.2%.1 ", line)
    end
  end)

  it("aggregate.lua sums bytes per source, as conntrack -L counts them", function()
    H.track_traffic()
    local peer = H.peer()
    assert.equal("pong\n", H.udp_exchange(peer, 5353))
    assert.equal("pong\n", H.tcp_exchange(peer, 8080))
    local want = {}
    for _, line in ipairs(H.conntrack("-L")) do
      local src = line:match("src=(%S+)")
      local total = 0
      for b in line:gmatch("bytes=(%d+)") do total = total + tonumber(b) end
      want[src] = (want[src] or 0) + total
    end
    local got = {}
    for _, line in ipairs(run("aggregate.lua")) do
      local src, bytes = line:match("^(%S+)\t(%d+)$")
      got[src] = tonumber(bytes)
    end
    peer:close()
    assert.same(want, got)
    assert.truthy(got[peer.local_addr] > 0)
  end)
end)

describe("API reference", function()
  it("documents every function and method, and nothing that does not exist " ..
     "(doc/coverage.lua, which make docs runs)", function()
    local fields = os.tmpname()
    finally(function() os.remove(fields) end)
    H.must("./ct-lua doc/fields.lua " .. fields)
    local out, status, err = H.run("./ct-lua doc/coverage.lua doc/api.luadoc " .. fields ..
                                   " lua/conntrack.lua")
    assert.equal(0, status, out .. err)
  end)
end)
