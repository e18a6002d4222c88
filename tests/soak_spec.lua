-- Overload (issue 8, item 4): real traffic plus ctnetlink churn, an events listener and
-- periodic dumps, all at once for SOAK_SECONDS (default 24, so that the file stays under
-- a minute in `make test`; tools/soak.sh runs the same for many minutes).
--
--   traffic   repeated H.exchange loops (TCP and UDP) to a peer namespace: kernel-made
--             entries and events, which the listener's filter keeps out
--   churn     a ct-lua process creating, updating and deleting entries of 10.99.0.0/16
--             (batches, single flows and filters); it counts what it created and deleted
--   listener  a ct-lua process with two subscriptions to new and destroy events of
--             src 10.99.0.0/16 (the kernel filter does the selecting): one with the
--             default buffer, one with an 8 KiB buffer that overflows on every batch
--   dumper    a ct-lua process dumping the table (whole, and with a filter and a
--             predicate), counting and reading stats, ten times a second
--
-- Checked: the RSS (VmRSS of /proc/PID/status) and the descriptor count of the listener
-- and the dumper stay flat: over the second half of the run the floor of each grows by
-- less than a small bound. And for each subscription, the events received plus the losses
-- reported add up to exactly what the churn made (its creates plus its deletes).
local H = require "helpers"

local SECONDS = tonumber(os.getenv("SOAK_SECONDS")) or 24
local WARMUP = math.min(4, SECONDS // 5)   -- seconds not measured: heaps and buffers settle
local RSS_SLACK_KIB = 512                  -- allowed growth of the RSS floor, second half
local CT_LUA = "./ct-lua"

local read_file = H.file_text

local now, eventually = H.now, H.eventually

-- The scripts of the background processes; arg[1] is where each reports.
local CHURN = [[
local conntrack = require "conntrack"
local report, seconds = arg[1], tonumber(arg[2])
local h = assert(conntrack.open())
local creates, deletes, rounds = 0, 0, 0
local deadline = conntrack.monotonic() + seconds
while conntrack.monotonic() < deadline do
  rounds = rounds + 1
  local net = "10.99." .. rounds % 250
  local list = {}
  for i = 1, 200 do
    list[i] = { proto = i % 3 == 0 and "tcp" or "udp", src = net .. "." .. (i % 250 + 1),
                dst = "10.98.0.1", sport = 1000 + i, dport = 53 + i % 7, timeout = 600,
                state = i % 3 == 0 and "ESTABLISHED" or nil }
  end
  creates = creates + assert(h:create(list))
  assert(h:update({ src = net .. ".0/24", function(f) return f.sport % 2 == 0 end },
                  { mark = rounds }))
  local n = 0
  for f in h:dump{ src = net .. ".0/24", proto = "udp" } do
    deletes = deletes + assert(h:delete(f))
    n = n + 1
    if n == 50 then break end
  end
  deletes = deletes + assert(h:delete{ src = net .. ".0/24" })
  conntrack.poll({}, 0.02)
end
local f = assert(io.open(report .. ".tmp", "w"))
f:write(creates, " ", deletes, " ", rounds, "\n")
f:close()
assert(os.rename(report .. ".tmp", report))
]]

local LISTENER = [[
local conntrack = require "conntrack"
local report = arg[1]
local h = assert(conntrack.open())
local filter = { src = "10.99.0.0/16" }
local subs = {
  big = assert(h:listen{ events = { "new", "destroy" }, filter = filter }),
  tiny = assert(h:listen{ events = { "new", "destroy" }, filter = filter,
                          bufsize = 8192, bufsize_max = 8192 }),
}
local counts = {}
for name in pairs(subs) do counts[name] = { new = 0, destroy = 0, lost = 0, overruns = 0 } end
local stop = assert(conntrack.signals{ "TERM" })
local function write()
  local f = assert(io.open(report .. ".tmp", "w"))
  for _, name in ipairs{ "big", "tiny" } do
    local c = counts[name]
    f:write(name, " ", c.new, " ", c.destroy, " ", c.lost, " ", c.overruns, "\n")
  end
  f:close()
  assert(os.rename(report .. ".tmp", report))
end
local last = 0
while true do
  local ready = conntrack.poll({ subs.big, subs.tiny, stop }, 0.1)
  for _, name in ipairs{ "big", "tiny" } do
    for _, e in ipairs(assert(subs[name]:recv())) do
      local c = counts[name]
      if e.kind == "overrun" then
        c.lost, c.overruns = c.lost + e.lost, c.overruns + 1
      else
        c[e.kind] = c[e.kind] + 1
        local _ = e.flow.src, e.flow.sport, tostring(e.flow)  -- use the flow
      end
    end
  end
  for _, obj in ipairs(ready) do
    if obj == stop then write() os.exit(0, true) end
  end
  if conntrack.monotonic() - last > 0.2 then
    write()
    last = conntrack.monotonic()
  end
end
]]

local DUMPER = [[
local conntrack = require "conntrack"
local report = arg[1]
local h = assert(conntrack.open())
local dumps = 0
while true do
  local n = 0
  for f in h:dump() do n = n + 1 local _ = f.src, f.state end
  for f in h:dump{ src = "10.99.0.0/16", function(f) return f.sport % 2 == 0 end } do
    local _ = tostring(f)
  end
  assert(h:count())
  assert(h:stats())
  dumps = dumps + 2
  local f = assert(io.open(report .. ".tmp", "w"))
  f:write(dumps, "\n")
  f:close()
  assert(os.rename(report .. ".tmp", report))
  conntrack.poll({}, 0.1)
end
]]

local TRAFFIC = [[
local H = require "tests.helpers"
local pid, proto, report, stop = arg[1], arg[2], arg[3], arg[4]
local peer = { pid = pid, addr = "10.7.0.2" }
function peer:spawn(cmd)
  return H.must("nsenter -t " .. pid .. " -n sh -c " .. H.quote("exec " .. cmd) ..
                " >/dev/null 2>&1 & echo $!"):match("%d+")
end
local done = 0
-- until the stop file appears: killed in the middle of an exchange, the loop would leave
-- that exchange's server running in the peer
for i = 1, math.huge do
  local stopped = io.open(stop)
  if stopped then stopped:close() break end
  if H.exchange(proto, peer, 7000 + i % 40) then done = done + 1 end
  local f = assert(io.open(report .. ".tmp", "w"))
  f:write(done, "\n")
  f:close()
  assert(os.rename(report .. ".tmp", report))
end
]]

--- VmRSS in KiB and the number of open descriptors of process pid.
local function sample(pid)
  local status = read_file("/proc/" .. pid .. "/status")
  if not status then return nil end
  local rss = tonumber(status:match("VmRSS:%s+(%d+)"))
  local fds = #H.lines(H.run("ls /proc/" .. pid .. "/fd 2>/dev/null"))
  return rss, fds
end

local function floor_of(series, first, last)
  local least = math.huge
  for i = first, last do least = math.min(least, series[i]) end
  return least
end

describe("soak", function()
  local dir, peer, pids

  before_each(function()
    H.reset()
    H.track_traffic()
    dir = H.must("mktemp -d /tmp/ct-soak.XXXXXX"):match("%S+")
    pids = {}
    peer = H.peer()
  end)

  after_each(function()
    for _, pid in pairs(pids) do H.run("kill -9 " .. pid .. " 2>/dev/null") end
    peer:close()
    H.run("rm -rf " .. H.quote(dir))
  end)

  --- Starts command in the background; returns its pid.
  local function start(name, command)
    local pid = H.must(command .. " >" .. dir .. "/" .. name .. ".out 2>" .. dir .. "/" ..
                       name .. ".err & echo $!"):match("%d+")
    pids[name] = pid
    return pid
  end

  local function script(name, text)
    local path = dir .. "/" .. name .. ".lua"
    H.write_file(path, text)
    return path
  end

  local function running(name)
    return H.run("kill -0 " .. pids[name] .. " 2>/dev/null && echo yes"):find("yes") ~= nil
  end

  local function numbers(name)
    local t = {}
    for n in (read_file(dir .. "/" .. name) or ""):gmatch("%d+") do t[#t + 1] = tonumber(n) end
    return t
  end

  it("traffic + churn + events + dumps for " .. SECONDS .. " s: RSS and fds flat, every " ..
     "event received or reported lost", function()
    local listener = start("listener", CT_LUA .. " " .. script("listener", LISTENER) .. " " ..
                                       dir .. "/events")
    local dumper = start("dumper", CT_LUA .. " " .. script("dumper", DUMPER) .. " " ..
                                   dir .. "/dumps")
    eventually(5, "the listener", function() return read_file(dir .. "/events") end)
    local traffic = script("traffic", TRAFFIC)
    for _, proto in ipairs{ "tcp", "udp" } do
      start("traffic_" .. proto, CT_LUA .. " " .. traffic .. " " .. peer.pid .. " " .. proto ..
                                 " " .. dir .. "/" .. proto .. " " .. dir .. "/stop-traffic")
    end
    start("churn", CT_LUA .. " " .. script("churn", CHURN) .. " " .. dir .. "/churned " ..
                   SECONDS)

    -- one sample a second of both processes while the churn runs
    local series = { listener = { rss = {}, fds = {} }, dumper = { rss = {}, fds = {} } }
    local started = now()
    while running("churn") do
      for name, pid in pairs{ listener = listener, dumper = dumper } do
        local rss, fds = sample(pid)
        assert(rss, name .. " died: " .. (read_file(dir .. "/" .. name .. ".err") or ""))
        table.insert(series[name].rss, rss)
        table.insert(series[name].fds, fds)
      end
      H.run("sleep 1")
      assert(now() - started < SECONDS + 30, "the churn does not end")
    end
    local churned = numbers("churned")
    assert.equal(3, #churned, read_file(dir .. "/churn.err"))
    local creates, deletes = churned[1], churned[2]
    H.write_file(dir .. "/stop-traffic", "")
    eventually(20, "the traffic loops to finish their exchange", function()
      return not running("traffic_tcp") and not running("traffic_udp")
    end)

    -- every event of the churn has arrived, or been reported lost, once the counts add up
    local function counted()
      local t = {}
      for line in (read_file(dir .. "/events") or ""):gmatch("[^\n]+") do
        local name, new, destroy, lost, overruns = line:match("^(%a+) (%d+) (%d+) (%d+) (%d+)$")
        t[name] = { new = tonumber(new), destroy = tonumber(destroy), lost = tonumber(lost),
                    overruns = tonumber(overruns) }
      end
      return t
    end
    local function total(c) return c.new + c.destroy + c.lost end
    pcall(eventually, 10, "the events to add up", function()
      local c = counted()
      return c.big and total(c.big) >= creates + deletes and total(c.tiny) >= creates + deletes
    end)
    H.run("kill " .. listener .. " " .. dumper)
    H.run("sleep 0.3")
    local c = counted()

    local n = #series.listener.rss
    local first, middle = WARMUP + 1, (WARMUP + 1 + n) // 2
    local report = { string.format("soak: %d s, %d creates, %d deletes, %d dumps, " ..
                                   "%d+%d exchanges", SECONDS, creates, deletes,
                                   numbers("dumps")[1] or 0, numbers("tcp")[1] or 0,
                                   numbers("udp")[1] or 0) }
    for _, name in ipairs{ "big", "tiny" } do
      report[#report + 1] = string.format("%s: %d new, %d destroy, %d lost in %d overruns",
                                          name, c[name].new, c[name].destroy, c[name].lost,
                                          c[name].overruns)
    end
    for _, name in ipairs{ "listener", "dumper" } do
      local s = series[name]
      report[#report + 1] = string.format("%s: RSS floor %d -> %d KiB (peak %d), fds floor " ..
                                          "%d -> %d", name, floor_of(s.rss, first, middle),
                                          floor_of(s.rss, middle, n), math.max(table.unpack(s.rss)),
                                          floor_of(s.fds, first, middle), floor_of(s.fds, middle, n))
    end
    print("# " .. table.concat(report, "\n# "))

    -- the run did real work
    assert.is_true(creates >= 1000 and deletes == creates, creates .. " " .. deletes)
    assert.is_true((numbers("dumps")[1] or 0) >= SECONDS, "too few dumps")
    assert.is_true((numbers("tcp")[1] or 0) + (numbers("udp")[1] or 0) >= 10, "too little traffic")
    assert.is_true(n >= 8, "too few samples")
    -- nothing lost silently
    for _, name in ipairs{ "big", "tiny" } do
      assert.equal(creates + deletes, total(c[name]), name)
    end
    assert.is_true(c.tiny.lost > 0, "the 8 KiB buffer never overflowed: the loss path went untested")
    -- flat: the floor of the second half is no higher than that of the first. Under
    -- make check-asan, ASan's quarantine holds freed memory on purpose: RSS says nothing.
    if os.getenv("CT_SANITIZE") == "asan" then return end
    for _, name in ipairs{ "listener", "dumper" } do
      local s = series[name]
      local growth = floor_of(s.rss, middle, n) - floor_of(s.rss, first, middle)
      assert.is_true(growth <= RSS_SLACK_KIB, name .. " RSS floor grew by " .. growth .. " KiB")
      assert.is_true(floor_of(s.fds, middle, n) <= floor_of(s.fds, first, middle),
                     name .. " descriptors grew")
    end
  end)
end)
