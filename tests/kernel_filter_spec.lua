-- Filters the kernel applies to dumps (CTA_FILTER tuples, status, mark, family): every
-- filter returns exactly the entries an independent Lua check picks from a full dump,
-- whatever part of it ran in the kernel, and h:explain says which part that was. The
-- terms left to userspace first run on each entry's raw attributes, as a BPF program,
-- before it is parsed (bpf_run.c): the family-less cases at the end check that this
-- drops nothing the filter wants, with absent attributes (a zone or mark of 0) too.
--
-- tests/run gives this file its own network namespace, so the table belongs to us.

local H = require "helpers"

-- A table with one entry of each shape a filter can tell apart: both families, tcp,
-- udp, icmp, NATed reply tuples, zones, marks and status bits.
local ENTRIES = {
  { proto = "tcp", src = "10.1.0.1", dst = "10.2.0.1", sport = 1000, dport = 22,
    state = "ESTABLISHED", timeout = 300, mark = 1, status = { ASSURED = true } },
  { proto = "tcp", src = "10.1.0.1", dst = "10.2.0.1", sport = 1001, dport = 80,
    state = "ESTABLISHED", timeout = 300, mark = 2 },
  { proto = "tcp", src = "10.1.0.2", dst = "10.2.0.1", sport = 1000, dport = 22,
    state = "ESTABLISHED", timeout = 300, zone = 5 },
  { proto = "tcp", src = "10.1.0.3", dst = "10.2.0.9", sport = 1000, dport = 22,
    reply_src = "192.168.0.9", reply_dst = "10.1.0.3", reply_sport = 2222, reply_dport = 1000,
    state = "ESTABLISHED", timeout = 300, mark = 3 },
  { proto = "udp", src = "10.1.0.1", dst = "10.2.0.53", sport = 5353, dport = 53,
    timeout = 300, status = { ASSURED = true } },
  { proto = "udp", src = "10.1.0.4", dst = "10.2.0.53", sport = 5353, dport = 53,
    reply_src = "10.2.0.53", reply_dst = "100.64.0.1", reply_sport = 53, reply_dport = 4000,
    timeout = 300 },
  { proto = "icmp", src = "10.1.0.1", dst = "10.2.0.1", icmp_type = 8, icmp_code = 0,
    icmp_id = 7, timeout = 300 },
  { family = "ipv6", proto = "tcp", src = "fd00::1", dst = "fd00::2", sport = 1000, dport = 22,
    state = "ESTABLISHED", timeout = 300 },
  { family = "ipv6", proto = "udp", src = "fd00::1", dst = "fd00::3", sport = 53, dport = 53,
    timeout = 300, mark = 1 },
  -- zones of one direction: the kernel's zone filter takes them for any zone term
  { proto = "tcp", src = "10.1.0.5", dst = "10.2.0.1", sport = 1000, dport = 22,
    state = "ESTABLISHED", timeout = 300, orig_zone = 5 },
  { proto = "udp", src = "10.1.0.6", dst = "10.2.0.53", sport = 5353, dport = 53,
    timeout = 300, reply_zone = 5 },
  { family = "ipv6", proto = "udp", src = "fd00::1", dst = "fd00::4", sport = 53, dport = 53,
    timeout = 300, zone = 7 },
}

local function is_ipv4(f) return f.family == "ipv4" end

-- Each filter with the same question asked in plain Lua of a flow, and the terms the
-- kernel takes (nil: not asserted).
local CASES = {
  { { src = "10.1.0.1" }, function(f) return f.src == "10.1.0.1" end,
    kernel = { "src" } },
  { { src = "10.1.0.1", proto = "tcp", dport = 22 },
    function(f) return f.src == "10.1.0.1" and f.proto == "tcp" and f.dport == 22 end,
    kernel = { "dport", "proto", "src" } },
  { { dst = "10.2.0.53", proto = "udp", sport = 5353 },
    function(f) return f.dst == "10.2.0.53" and f.proto == "udp" and f.sport == 5353 end },
  { { family = "ipv4", proto = "tcp" }, function(f) return is_ipv4(f) and f.proto == "tcp" end,
    kernel = { "family", "proto" }, dumps = { "ipv4" } },
  { { reply_src = "192.168.0.9" }, function(f) return f.reply_src == "192.168.0.9" end,
    kernel = { "reply_src" } },
  { { reply_dst = "100.64.0.1", proto = "udp", reply_dport = 4000 },
    function(f) return f.reply_dst == "100.64.0.1" and f.reply_dport == 4000 end,
    kernel = { "proto", "reply_dport", "reply_dst" } },
  { { family = "ipv4", proto = "tcp", reply_sport = 22, dport = 22 },
    function(f) return is_ipv4(f) and f.proto == "tcp" and f.reply_sport == 22 end },
  { { src = "10.1.0.0/30" },
    function(f) return is_ipv4(f) and (f.src:match("^10%.1%.0%.[0-3]$")) ~= nil end,
    kernel = {} },
  { { family = "ipv4", src = "!10.1.0.1" }, function(f) return is_ipv4(f) and f.src ~= "10.1.0.1" end,
    kernel = { "family" } },
  { { family = "ipv4", proto = "!tcp" }, function(f) return is_ipv4(f) and f.proto ~= "tcp" end },
  { { src = "fd00::1" }, function(f) return f.src == "fd00::1" end, kernel = {} },
  { { src = "fd00::1", proto = "udp", dport = 53 },
    function(f) return f.src == "fd00::1" and f.proto == "udp" and f.dport == 53 end,
    kernel = { "dport", "proto" } },
  -- a protocol without a family: the dump is split, IPv4 then IPv6, each filtered by the kernel
  { { proto = "tcp", dport = 22 }, function(f) return f.proto == "tcp" and f.dport == 22 end,
    kernel = { "dport", "proto" }, dumps = { "ipv4", "ipv6" } },
  { { status = { ASSURED = true } }, function(f) return f.status.ASSURED == true end,
    kernel = { "status" } },
  { { status = "ASSURED" }, function(f) return f.status.ASSURED == true end,
    kernel = { "status" } },
  { { status = "ASSURED,!SEEN_REPLY", proto = "udp" },
    function(f) return f.proto == "udp" and f.status.ASSURED == true and not f.status.SEEN_REPLY end },
  { { status = {} }, function() return true end, kernel = {} },
  { { status = { ASSURED = false }, family = "ipv4" },
    function(f) return is_ipv4(f) and not f.status.ASSURED end },
  { { mark = 1 }, function(f) return f.mark == 1 end, kernel = { "mark" } },
  { { mark = "2/2", src = "10.1.0.1" }, function(f) return f.mark & 2 == 2 and f.src == "10.1.0.1" end },
  { { zone = 5, src = "10.1.0.2" }, function(f) return f.zone == 5 end,
    kernel = { "src", "zone" } },
  { { zone = 0, src = "10.1.0.2" }, function() return false end },
  { { family = "ipv4", proto = "icmp", icmp_type = 8, icmp_id = 7 },
    function(f) return f.proto == "icmp" and f.icmp_id == 7 end,
    kernel = { "family", "proto" } },
  { { family = "ipv4", proto = "sctp", dport = 22 }, function() return false end },
  { { src = "10.1.0.1", function(f) return f.dport ~= 22 end },
    function(f) return f.src == "10.1.0.1" and f.dport ~= 22 end },
  -- no family: the kernel filters zones (and with a protocol, the tuple in a dump per
  -- family), the prefilter what it can
  { { zone = 5 }, function(f) return f.zone == 5 end, kernel = { "zone" } },
  { { orig_zone = 5 }, function(f) return f.orig_zone == 5 end, kernel = { "orig_zone" } },
  { { reply_zone = 5, proto = "udp" }, function(f) return f.reply_zone == 5 and f.proto == "udp" end,
    kernel = { "proto", "reply_zone" } },
  { { zone = 7, family = "ipv6" }, function(f) return f.zone == 7 and f.family == "ipv6" end,
    kernel = { "family", "zone" } },
  { { zone = 5, orig_zone = 5 }, function(f) return f.zone == 5 and f.orig_zone == 5 end },
  { { zone = 0 }, function(f) return f.zone == 0 end, kernel = {} },
  { { zone = "!5" }, function(f) return f.zone ~= 5 end, kernel = {} },
  { { mark = 0, proto = "tcp" }, function(f) return f.mark == 0 and f.proto == "tcp" end },
  { { mark = "!1" }, function(f) return f.mark ~= 1 end },
  -- value bits outside the mask: (mark & 1) is never 3, so the negation passes everything
  { { mark = "!0x3/0x1" }, function() return true end },
  { { proto = "tcp", state = "ESTABLISHED", dport = "!80" },
    function(f) return f.proto == "tcp" and f.state == "ESTABLISHED" and f.dport ~= 80 end },
  { { proto = "udp", sport = 5353 }, function(f) return f.proto == "udp" and f.sport == 5353 end },
  { { dst = "!fd00::/16" }, function(f) return not (f.dst:find("^fd00:")) end },
  { { reply_src = "fd00::3" }, function(f) return f.reply_src == "fd00::3" end },
  { { reply_dport = 4000 }, function(f) return f.reply_dport == 4000 end },
  -- a negated family leaves the other one: one dump, the tuple in the kernel
  { { family = "!ipv6", proto = "icmp" }, function(f) return is_ipv4(f) and f.proto == "icmp" end,
    kernel = { "proto" }, dumps = { "ipv4" } },
  { { family = "!ipv4", proto = "udp", dport = 53 },
    function(f) return f.family == "ipv6" and f.proto == "udp" and f.dport == 53 end,
    kernel = { "dport", "proto" }, dumps = { "ipv6" } },
}

-- The family each request of a dump asks for (h:explain's dumps), by README's rule: a
-- family, given or implied by an address, is one dump of it, a negated one one of the
-- other; a protocol without either splits the dump, IPv4 then IPv6; else one of both.
local function expected_dumps(filter)
  local family
  for k, v in pairs(filter) do
    if k == "family" then
      family = v:sub(1, 1) == "!" and (v == "!ipv4" and "ipv6" or "ipv4") or v
    elseif type(v) == "string" and (k:find("src$") or k:find("dst$")) and v:sub(1, 1) ~= "!" then
      family = v:find(":", 1, true) and "ipv6" or "ipv4"
    end
  end
  if family then return { family } end
  if filter.proto and not tostring(filter.proto):find("^!") then return { "ipv4", "ipv6" } end
  return { "both" }
end

-- the entry's id: unlike its text, it does not change while the timeout counts down
local function key(f)
  return f.id
end

local function listing(h, filter)
  local out = {}
  for f in h:dump(filter) do out[#out + 1] = key(f) end
  table.sort(out)
  return out
end

describe("filters the kernel applies to dumps", function()
  local h, everything

  setup(function()
    H.reset()
    h = H.open()
    for _, spec in ipairs(ENTRIES) do assert(h:create(spec)) end
    everything = {}
    for f in h:dump() do everything[#everything + 1] = f end
    assert.equal(#ENTRIES, #everything)
  end)

  teardown(function()
    if h then h:close() end
  end)

  for i, case in ipairs(CASES) do
    local filter, wanted = case[1], case[2]
    it("case " .. i .. ": the dump returns exactly what the Lua check picks", function()
      local expected = {}
      for _, f in ipairs(everything) do
        if wanted(f) then expected[#expected + 1] = key(f) end
      end
      table.sort(expected)
      assert.same(expected, listing(h, filter))
    end)
    if case.kernel then
      it("case " .. i .. ": explain names the terms the kernel applies", function()
        local e = h:explain(filter)
        table.sort(e.kernel)
        assert.same(case.kernel, e.kernel)
        local all = {}
        for _, n in ipairs(e.kernel) do all[#all + 1] = n end
        for _, n in ipairs(e.c) do all[#all + 1] = n end
        local named = 0
        for k in pairs(filter) do
          if type(k) == "string" then named = named + 1 end
        end
        assert.equal(named, #all, "every term is placed once")
        assert.equal(filter[1] ~= nil, e.predicate)
        assert.same(case.dumps or expected_dumps(filter), e.dumps)
      end)
    end
  end

  it("a protocol without a family lists the IPv4 entries, then the IPv6 ones, each in the " ..
     "order of an unfiltered dump", function()
    -- 40 more of each family, so that one hash order all but surely interleaves them
    local more = {}
    for i = 1, 40 do
      more[#more + 1] = { proto = "udp", src = "10.9.0.1", dst = "10.9.0.2", sport = 2000 + i,
                          dport = 53, timeout = 300 }
      more[#more + 1] = { family = "ipv6", proto = "udp", src = "fd09::1", dst = "fd09::2",
                          sport = 2000 + i, dport = 53, timeout = 300 }
    end
    assert.equal(#more, h:create(more))
    finally(function() h:delete{ proto = "udp", function(f) return f.sport > 2000 end } end)
    local want, got, interleaved, last = { ipv4 = {}, ipv6 = {} }, {}, 0, nil
    for f in h:dump() do
      if f.proto == "udp" then
        table.insert(want[f.family], f:key())
        if last and f.family ~= last then interleaved = interleaved + 1 end
        last = f.family
      end
    end
    assert.is_true(interleaved > 1, "the unfiltered dump lists one family after the other")
    table.move(want.ipv6, 1, #want.ipv6, #want.ipv4 + 1, want.ipv4)
    for f in h:dump{ proto = "udp" } do got[#got + 1] = f:key() end
    assert.same(want.ipv4, got)
  end)

  it("most cases are not empty, so a kernel that dropped entries would be seen", function()
    local nonempty = 0
    for _, case in ipairs(CASES) do
      for _, f in ipairs(everything) do
        if case[2](f) then nonempty = nonempty + 1 break end
      end
    end
    assert.is_true(nonempty >= #CASES - 3, nonempty .. " of " .. #CASES)
  end)

  it("a bad filter raises before anything is sent, naming h:explain", function()
    local ok, err = pcall(function() return h:explain{ sport = "x" } end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'explain' (field 'sport' expects an integer", err, 1, true)
  end)
end)

describe("zeroing counters with a kernel filter", function()
  it("resets the counters of the entries the filter picks and leaves the others", function()
    H.reset()
    H.track_traffic()
    local peer = H.peer()
    local h = H.open()
    local ok, err = pcall(function()
      for port = 7001, 7003 do assert.equal("pong\n", H.udp_exchange(peer, port)) end
      local picked = { family = "ipv4", proto = "udp", dst = peer.addr, dport = 7001 }
      assert.same({ "dport", "dst", "family", "proto" },
                  (function() local k = h:explain(picked).kernel table.sort(k) return k end)())
      -- (a client that tried before the server listened made more than one entry)
      local seen = 0
      for f in h:dump(picked, { zero = true }) do
        assert.equal(7001, f.dport)
        assert.is_true(f.packets > 0, "the dump returns the counters before the reset")
        seen = seen + 1
      end
      assert.is_true(seen >= 1)
      -- without a family: a dump per family, each with the tuple in the kernel
      local unpicked = { proto = "udp", dport = 7002 }
      assert.same({ "dport", "proto" },
                  (function() local k = h:explain(unpicked).kernel table.sort(k) return k end)())
      for f in h:dump(unpicked, { zero = true }) do assert.equal(7002, f.dport) end
      local kept = 0
      for f in h:dump{ proto = "udp", dst = peer.addr } do
        if f.dport == 7001 or f.dport == 7002 then
          assert.equal(0, f.packets)
          assert.equal(0, f.reply_packets)
        else
          assert.is_true(f.packets > 0, "an entry the kernel filter excluded keeps them")
          kept = kept + 1
        end
      end
      assert.is_true(kept >= 1)
    end)
    h:close()
    peer:close()
    assert(ok, err)
  end)
end)
