-- ct-lua watch: the reaction-script runner and the three examples of examples/.
--
-- Each test starts `./ct-lua watch SCRIPT` in the background of this private namespace
-- (output to temporary files, the process known by its pid) and drives it with real
-- traffic through a peer namespace or with entries made by h:create, with signals and
-- with rewrites of the script file. Waits are deadlines polled every 50 ms, never fixed
-- sleeps. Every runner still alive at the end of a test is killed.
local H = require "helpers"
local cjson = require "cjson"

local CT_LUA = "./ct-lua"
local POLL = "sleep 0.05"

---------------------------------------------------------------------------------------
-- helpers

--- Replaces a file in one step (write then rename), so a runner that reads it between
-- two checks sees either version, never half of one.
local function replace_file(path, text)
  H.write_file(path .. ".new", text)
  assert(os.rename(path .. ".new", path))
end

local function count_of(text, plain)
  local n, at = 0, 1
  while true do
    local s, e = text:find(plain, at, true)
    if not s then return n end
    n, at = n + 1, e + 1
  end
end

local eventually = H.eventually

local scratch    -- a directory for the scripts and outputs of one test
local processes  -- the background processes started by the current test

--- Starts `ct-lua watch script args...` and waits until it watches (it has subscribed).
local function start_watch(script, ...)
  local words = { CT_LUA, "watch", H.quote(script) }
  for _, a in ipairs({ ... }) do words[#words + 1] = H.quote(a) end
  local r = processes:spawn(table.concat(words, " "))
  eventually(5, "the runner to start watching", function()
    return r:stderr():find("watching", 1, true) or r:status()
  end, function() return r:describe() end)
  assert(not r:status(), "the runner exited at once:\n" .. r:describe())
  return r
end

--- Entries made through ctnetlink: UDP flows from src to 10.9.0.1:dport.
local function udp_specs(src, count, first_sport, dport)
  local specs = {}
  for i = 1, count do
    specs[i] = { proto = "udp", src = src, dst = "10.9.0.1", sport = first_sport + i - 1,
                 dport = dport or 9, timeout = 300 }
  end
  return specs
end

local function create(h, specs)
  assert.are.equal(#specs, h:create(specs))
end

--- conntrack -L ARGS; its lines.
local function listed(args)
  local lines, status, err = H.conntrack("-L " .. args)
  assert(status == 0, "conntrack -L " .. args .. ": " .. err)
  return lines
end

--- A counting script for the reload tests: version marks which code is running.
local function counter_script(version)
  return string.format([[
local state, ctx = ...
state.count = state.count or 0
return {
  filter = { proto = "udp", dport = 9 },
  interval = 0.1,
  on_new = function(flow) state.count = state.count + 1 end,
  on_tick = function() print("v%d count=" .. state.count) end,
  on_reload = function() print("reloaded v%d") end,
}
]], version, version)
end

---------------------------------------------------------------------------------------

describe("ct-lua watch", function()
  local h

  before_each(function()
    H.reset()
    -- with the default (2) entries made while nobody listens never emit events
    H.sysctl("nf_conntrack_events", 1)
    scratch = H.must("mktemp -d"):match("%S+")
    processes = H.processes(scratch)
    h = H.open()
  end)

  after_each(function()
    processes:kill()
    h:close()
    H.run("rm -rf " .. H.quote(scratch))
  end)

  describe("examples", function()
    it("ssh-log prints one JSON line per new port-22 flow and none for port 80", function()
      H.track_traffic()
      local peer = H.peer()
      finally(function() peer:close() end)
      -- the oracle: conntrack's own event listing of the same flows. The exchanges may
      -- make refused connections while the server starts; they are flows too, and some
      -- are gone from the table at once, so conntrack -L could not count them.
      local oracle = processes:spawn(H.CONNTRACK .. " -E -e NEW -p tcp --dport 22 -o id")
      local r = start_watch("examples/ssh-log.lua")
      -- both listen once a probe entry made through ctnetlink reaches both
      local probe = 0
      eventually(5, "conntrack -E and the runner to listen", function()
        probe = probe + 1
        create(h, { { proto = "tcp", src = "10.8.0.1", dst = "10.8.0.2", sport = probe,
                      dport = 22, timeout = 60, state = "ESTABLISHED" } })
        H.run(POLL)
        return oracle:stdout():find("src=10.8.0.1", 1, true)
      end, function() return oracle:describe() end)

      assert.are.equal("pong\n", H.tcp_exchange(peer, 80))
      assert.are.equal("pong\n", H.tcp_exchange(peer, 22))
      assert.are.equal("pong\n", H.tcp_exchange(peer, 22))

      --- The ids of the flows from here to the peer that a listing shows.
      local function oracle_ids()
        local ids = {}
        for _, line in ipairs(oracle:lines()) do
          if line:find("src=" .. peer.local_addr .. " ", 1, true) then
            ids[#ids + 1] = assert(math.tointeger(tonumber(line:match("id=(%d+)"))), line)
          end
        end
        table.sort(ids)
        return ids
      end
      local function logged()
        local events, ids = {}, {}
        for _, line in ipairs(r:lines()) do
          local e = cjson.decode(line)
          events[#events + 1] = e
          if e.flow.src == peer.local_addr then ids[#ids + 1] = math.tointeger(e.flow.id) end
        end
        table.sort(ids)
        return events, ids
      end

      -- the two connections' last lines came after their flows were made: wait for those
      local connected = {}
      for _, line in ipairs(listed("-p tcp --dport 22 -s " .. peer.local_addr .. " -o id")) do
        connected[#connected + 1] = math.tointeger(tonumber(line:match("id=(%d+)")))
      end
      assert.are.equal(2, #connected)
      local function has_all(ids)
        local set = {}
        for _, id in ipairs(ids) do set[id] = true end
        return set[connected[1]] and set[connected[2]]
      end
      eventually(5, "both connections in both listings", function()
        local _, ids = logged()
        return has_all(ids) and has_all(oracle_ids())
      end, function() return r:describe() .. oracle:describe() end)

      local events, ids = logged()
      for _, e in ipairs(events) do
        assert.are.equal("new", e.kind)
        assert.are.equal("tcp", e.flow.proto)
        assert.are.equal(22, e.flow.dport)
        assert.is_number(e.time)
      end
      assert.are.same(oracle_ids(), ids)  -- one line per new flow: none missing, none twice
      assert.are.equal(0, r:stop())
      assert.are.equal(0, oracle:stop())
    end)

    it("source-limit deletes the flows of a source over the limit and leaves the others",
       function()
      create(h, udp_specs("10.3.0.3", 2, 1000))  -- before the runner: counted by its dump
      local r = start_watch("examples/source-limit.lua", "5")
      create(h, udp_specs("10.1.0.1", 4, 1000))  -- 4: under the limit
      create(h, udp_specs("10.3.0.3", 4, 2000))  -- 2 + 4 = 6: over
      create(h, udp_specs("10.2.0.2", 6, 1000))  -- 6: over

      eventually(5, "the flows of 10.2.0.2 and 10.3.0.3 to be deleted", function()
        return #listed("-s 10.2.0.2") == 0 and #listed("-s 10.3.0.3") == 0
      end, function() return r:describe() end)
      -- events come in order: 10.1.0.1's were handled before the deletions above
      assert.are.equal(4, #listed("-s 10.1.0.1"))
      local err = r:stderr()
      assert.truthy(err:find("source 10.2.0.2 had 6 flows (limit 5): deleted 6", 1, true), err)
      assert.truthy(err:find("source 10.3.0.3 had 6 flows (limit 5): deleted 6", 1, true), err)
      assert.is_nil(err:find("10.1.0.1", 1, true))
      assert.are.equal(0, r:stop())
    end)

    it("states prints the flows per state of conntrack -L every second", function()
      local function tcp(i, state)
        return { proto = "tcp", src = "10.4.0.1", dst = "10.9.0.1", sport = 3000 + i,
                 dport = 443, timeout = 300, state = state }
      end
      create(h, { tcp(1, "ESTABLISHED"), tcp(2, "ESTABLISHED"), tcp(3, "ESTABLISHED"),
                  tcp(4, "TIME_WAIT") })
      create(h, udp_specs("10.4.0.2", 2, 1000))

      --- The line states.lua must print for conntrack -L now.
      local function expected_line()
        local counts, names = {}, {}
        for _, line in ipairs(listed("")) do
          local s = line:match("^%S+%s+%d+%s+%d+%s+(%u[%u_]*)%s") or "-"
          if not counts[s] then counts[s], names[#names + 1] = 0, s end
          counts[s] = counts[s] + 1
        end
        table.sort(names, function(a, b)
          if (a == "-") ~= (b == "-") then return b == "-" end
          return a < b
        end)
        local parts = {}
        for i, s in ipairs(names) do parts[i] = s .. "=" .. counts[s] end
        return table.concat(parts, " ")
      end

      local r = start_watch("examples/states.lua")
      assert.are.equal("ESTABLISHED=3 TIME_WAIT=1 -=2", expected_line())
      eventually(3, "a first line", function() return #r:lines() >= 1 end,
                 function() return r:describe() end)
      assert.are.equal("ESTABLISHED=3 TIME_WAIT=1 -=2", r:lines()[1])

      -- change the table; the second line printed after the change is surely a dump made
      -- after it, and must match conntrack -L (within a tick)
      local before = #r:lines()
      assert.are.equal(1, h:delete{ proto = "tcp", state = "TIME_WAIT" })
      create(h, { tcp(5, "SYN_SENT"), tcp(6, "SYN_SENT") })
      create(h, udp_specs("10.4.0.3", 1, 1000))
      local want = expected_line()
      assert.are.equal("ESTABLISHED=3 SYN_SENT=2 -=3", want)
      eventually(4, "two more lines", function() return #r:lines() >= before + 2 end,
                 function() return r:describe() end)
      assert.are.equal(want, r:lines()[before + 2])
      assert.are.equal(0, r:stop())
    end)
  end)

  describe("reload", function()
    it("on SIGHUP keeps the state and runs the new handler code", function()
      local path = scratch .. "/counter.lua"
      replace_file(path, counter_script(1))
      local r = start_watch(path)
      create(h, udp_specs("10.5.0.1", 3, 1000))
      r:last_line_is("v1 count=3")

      r:signal("HUP")  -- the same file: on_reload runs, the count stays
      r:stderr_has("reloaded " .. path .. " (SIGHUP)")
      eventually(5, "on_reload", function() return r:stdout():find("reloaded v1", 1, true) end)
      r:last_line_is("v1 count=3")

      replace_file(path, counter_script(2))
      r:signal("HUP")
      r:last_line_is("v2 count=3")
      assert.truthy(r:stdout():find("reloaded v2", 1, true))
      create(h, udp_specs("10.5.0.1", 2, 2000))
      r:last_line_is("v2 count=5")
      assert.are.equal(0, r:stop())
    end)

    it("follows a change of the file without a signal", function()
      local path = scratch .. "/counter.lua"
      replace_file(path, counter_script(1))
      local r = start_watch(path)
      create(h, udp_specs("10.5.0.1", 1, 1000))
      r:last_line_is("v1 count=1")
      replace_file(path, counter_script(2))
      r:last_line_is("v2 count=1", 4)
      assert.truthy(r:stderr():find("reloaded " .. path .. " (file changed)", 1, true))
      assert.are.equal(0, r:stop())
    end)

    it("reports a syntax error in the new version and keeps the old handlers", function()
      local path = scratch .. "/counter.lua"
      replace_file(path, counter_script(1))
      local r = start_watch(path)
      create(h, udp_specs("10.5.0.1", 1, 1000))
      r:last_line_is("v1 count=1")

      replace_file(path, "return { on_new = function(flow) end\n")  -- no closing brace
      r:stderr_has("failed, keeping the running handlers: " .. path .. ":2:", 4)
      create(h, udp_specs("10.5.0.1", 1, 2000))
      r:last_line_is("v1 count=2")
      r:signal("HUP")  -- tried again on request, and refused again
      eventually(5, "a second report", function()
        return count_of(r:stderr(), "keeping the running handlers") == 2
      end, function() return r:describe() end)
      r:last_line_is("v1 count=2")
      assert.is_nil(r:stderr():find("reloaded", 1, true))

      replace_file(path, counter_script(3))  -- fixed: taken up with the count intact
      r:last_line_is("v3 count=2", 4)
      assert.are.equal(0, r:stop())
    end)

    it("loses no event while reloading in the middle of a stream", function()
      local path = scratch .. "/seen.lua"
      -- Versions alternate filter and kinds, so every reload replaces the subscription.
      -- The script counts distinct ids, since the overlap may deliver an event twice, and
      -- is slow (0.5 ms of CPU per event), so that events wait in the old subscription
      -- when a reload comes: without the hand-over they would be lost.
      local function version(v)
        return string.format([[
local state = ...
state.seen = state.seen or {}
state.n = state.n or 0
return {
  filter = %s,
  events = %s,
  interval = 0.1,
  on_new = function(flow)
    local busy_until = os.clock() + 0.0005
    repeat until os.clock() >= busy_until
    if not state.seen[flow.id] then
      state.seen[flow.id] = true
      state.n = state.n + 1
    end
  end,
  on_tick = function() print("seen=" .. state.n) end,
}
]], v % 2 == 0 and '{ proto = "udp" }' or '{ src = "10.6.0.0/16" }',
    v % 2 == 0 and '{ "new" }' or '{ "new", "destroy" }')
      end
      replace_file(path, version(0))
      local r = start_watch(path)
      local rounds, per_batch, total = 6, 150, 0
      for round = 1, rounds do
        replace_file(path, version(round))
        create(h, udp_specs("10.6.0." .. round, per_batch, 1000))
        r:signal("HUP")
        create(h, udp_specs("10.6.0." .. round, per_batch, 2000))
        total = total + 2 * per_batch
        eventually(5, "reload " .. round, function()
          return count_of(r:stderr(), "reloaded ") >= round
        end, function() return r:describe() end)
      end
      r:last_line_is("seen=" .. total, 8)
      assert.is_nil(r:stderr():find("failed", 1, true))
      assert.are.equal(0, r:stop())
    end)
  end)

  describe("errors", function()
    it("reports a handler error once, with a traceback naming the script", function()
      local path = scratch .. "/failing.lua"
      H.write_file(path, [[
local state = ...
state.calls = 0
return {
  filter = { proto = "udp", dport = 9 },
  interval = 0.1,
  on_new = function(flow)
    state.calls = state.calls + 1
    error("no handler for " .. flow.proto)
  end,
  on_tick = function() print("calls=" .. state.calls) end,
}
]])
      local r = start_watch(path)
      create(h, udp_specs("10.5.0.1", 5, 1000))
      r:last_line_is("calls=5")  -- the stream went on
      local err = r:stderr()
      assert.are.equal(1, count_of(err, "no handler for udp"), err)
      assert.truthy(err:find("on_new failed", 1, true), err)
      local trace = err:match("stack traceback:.*")
      assert.truthy(trace, err)
      assert.truthy(trace:find(path .. ":8:", 1, true), trace)
      assert.is_nil(trace:find("watch.lua", 1, true), trace)  -- the runner's frames are cut
      assert.are.equal(0, r:stop())
    end)

    it("exits with status 1 on a handler error when stop_on_error is set", function()
      local path = scratch .. "/strict.lua"
      H.write_file(path, [[
return {
  stop_on_error = true,
  filter = { proto = "udp", dport = 9 },
  on_new = function(flow) error("strict") end,
}
]])
      local r = start_watch(path)
      create(h, udp_specs("10.5.0.1", 1, 1000))
      assert.are.equal(1, r:wait())
      assert.truthy(r:stderr():find("strict", 1, true))
    end)

    it("exits with the status a script gives ctx.stop", function()
      local path = scratch .. "/stop.lua"
      H.write_file(path, [[
local state, ctx = ...
return { on_new = function(flow) ctx.stop(tonumber(ctx.args[1])) end }
]])
      local r = start_watch(path, "3")
      create(h, udp_specs("10.5.0.1", 1, 1000))
      assert.are.equal(3, r:wait())
    end)

    it("exits with status 0 on SIGTERM and SIGINT", function()
      local path = scratch .. "/quiet.lua"
      H.write_file(path, "return { on_destroy = function() end }\n")
      assert.are.equal(0, start_watch(path):stop())
      local r = start_watch(path)
      r:signal("INT")
      assert.are.equal(0, r:wait())
    end)

    it("exits with status 2 and a usage line on a usage error", function()
      local _, status, err = H.run(CT_LUA .. " watch")
      assert.are.equal(2, status)
      assert.truthy(err:find("usage: ct-lua watch SCRIPT.lua", 1, true), err)
      _, status, err = H.run(CT_LUA .. " watch " .. scratch .. "/missing.lua")
      assert.are.equal(2, status)
      assert.truthy(err:find("missing.lua", 1, true), err)
      assert.truthy(err:find("usage: ct-lua watch SCRIPT.lua", 1, true), err)
    end)
  end)
end)
