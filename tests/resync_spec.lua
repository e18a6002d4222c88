-- Resync: after the kernel drops events, an events object with resync on
-- re-dumps the table and delivers the difference, so that a subscriber that
-- keeps a view of the table ends up with what a fresh dump shows.
local H = require "helpers"

-- The view a subscriber keeps: flow:key() -> mark, from the events it receives (not the
-- id alone: the kernel's id is a 32-bit hash, which two of a few thousand entries share
-- about once in a thousand runs).
local function new_view()
  return { entries = {}, counts = {} }
end

local function apply(view, batch)
  for _, e in ipairs(batch) do
    local key = (e.resync and "resync " or "") .. e.kind
    view.counts[key] = (view.counts[key] or 0) + 1
    if e.kind == "new" or e.kind == "update" then
      view.entries[e.flow:key()] = e.flow.mark
    elseif e.kind == "destroy" then
      view.entries[e.flow:key()] = nil
    end
  end
end

-- Receives until nothing is queued.
local function drain(ev, view)
  while true do
    local batch = assert(ev:recv(100000))
    if #batch == 0 then return end
    apply(view, batch)
  end
end

local function table_now(h, filter)
  local marks = {}
  for f in h:dump(filter) do marks[f:key()] = f.mark end
  return marks
end

local function udp_specs(n, first)
  local specs = {}
  for i = 1, n do
    local k = (first or 0) + i
    specs[i] = { proto = "udp", src = string.format("10.%d.%d.%d", k >> 16, k >> 8 & 255, k & 255),
                 dst = "10.255.0.1", sport = 1024 + k % 60000, dport = 53, timeout = 300 }
  end
  return specs
end

-- A burst that overflows a 4 KiB buffer: creates, updates of a part and
-- deletes of another part, while the subscriber does not read.
local function churn(h)
  assert.equal(3000, h:create(udp_specs(3000)))
  assert.truthy(h:update({ function(f) return f.sport % 2 == 1 end }, { mark = 7 }) > 0)
  assert.truthy(h:delete{ function(f) return f.sport % 4 == 2 end } > 0)
end

describe("resync", function()
  local h

  before_each(function()
    H.reset()
    H.sysctl("nf_conntrack_events", 1)
    h = H.open()
  end)

  after_each(function()
    h:close()
  end)

  it("without resync, the view is left wrong after an overrun (the case it exists for)", function()
    local ev = assert(h:listen{ bufsize = 4096, bufsize_max = 4096 })
    local view = new_view()
    churn(h)
    drain(ev, view)
    assert.equal(1, view.counts.overrun)
    assert.are_not.same(table_now(h), view.entries)
  end)

  it("with resync, the view equals a fresh dump after an overrun", function()
    local ev = assert(h:listen{ bufsize = 4096, bufsize_max = 4096, resync = true })
    local view = new_view()
    -- some entries the subscriber has seen before the overrun, which it
    -- must get updates and destroys for
    assert.equal(20, h:create(udp_specs(20, 5000)))
    drain(ev, view)
    assert.truthy(h:update({ sport = 1024 + 5001 }, { mark = 3 }) == 1)
    assert.truthy(h:delete{ sport = 1024 + 5002 } == 1)
    churn(h)
    drain(ev, view)
    assert.truthy(view.counts.overrun >= 1)  -- the 20 may overflow 4 KiB already
    assert.truthy(view.counts["resync new"] > 0)
    assert.same(table_now(h), view.entries)
  end)

  it("synthetic events are marked and come after the overrun event", function()
    local ev = assert(h:listen{ bufsize = 4096, bufsize_max = 4096, resync = true })
    churn(h)
    local batch, seen_overrun = assert(ev:recv(100000)), false
    for _, e in ipairs(batch) do
      if e.kind == "overrun" then seen_overrun = true end
      if e.resync then
        assert.is_true(seen_overrun, "a resync event before the overrun")
        assert.truthy(e.kind == "new" or e.kind == "update" or e.kind == "destroy")
        assert.equal("udp", e.flow.proto)
      end
    end
    assert.is_true(seen_overrun)
  end)

  it("keeps the filter: only matching entries are resynced", function()
    local filter = { proto = "udp", mark = 7 }
    local ev = assert(h:listen{ filter = filter, bufsize = 4096, bufsize_max = 4096,
                                resync = true })
    local view = new_view()
    assert.equal(500, h:create(udp_specs(500, 9000)))
    assert.truthy(h:create{ proto = "tcp", src = "10.9.9.9", dst = "10.9.9.8", sport = 1,
                            dport = 2, state = "ESTABLISHED", timeout = 300, mark = 7 })
    churn(h)
    drain(ev, view)
    assert.same(table_now(h, filter), view.entries)
    for k in pairs(view.entries) do assert.equal(7, view.entries[k], k) end
  end)

  it("converges while the table keeps changing during the resync", function()
    local ev = assert(h:listen{ bufsize = 4096, bufsize_max = 4096, resync = true })
    local view = new_view()
    churn(h)
    -- changes made by another process while we resync
    local _, status = H.run("for i in $(seq 1 200); do " .. H.CONNTRACK ..
                            " -I -p udp -s 10.200.0.1 -d 10.255.0.1 --sport $((2000 + i)) " ..
                            "--dport 53 -t 300 2>/dev/null; done & " ..
                            "sleep 0.05; echo")
    assert.equal(0, status)
    for _ = 1, 200 do
      drain(ev, view)
      H.run("sleep 0.02")
      local done = H.run(H.CONNTRACK .. " -C"):match("%d+")
      if tonumber(done) == 2250 + 200 then break end
    end
    drain(ev, view)
    assert.same(table_now(h), view.entries)
  end)
end)
