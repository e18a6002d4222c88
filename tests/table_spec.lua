-- The table API of a handle (create, get, dump, update, delete, flush, count), checked
-- against /usr/sbin/conntrack on the same private table, plus the error tiers, closing,
-- garbage collection and bounded memory of dumps.
--
-- tests/run gives this file its own network namespace, so every table seen here starts
-- empty and belongs to us; before_each empties it again so tests do not see each other.

local H = require "helpers"
local conntrack = require "conntrack"

local PROC_MAX = "/proc/sys/net/netfilter/nf_conntrack_max"

---------------------------------------------------------------------------------------
-- helpers

--- Every value a call returned, nils included: { n = N, ... }.
local function results(...)
  return table.pack(...)
end

local without_position, raised = H.without_position, H.raised

--- The lowest of four readings of H.fd_count. H.fd_count lists
-- /proc/PID/fd through io.popen, and the listing can win the race against popen
-- closing the pipe's write end in this process: it then counts one fd too many. The
-- extra fd is only ever added, never missed, so the minimum of a few readings is exact.
local fd_count = H.fd_count

--- conntrack -L ARGS, which must succeed; its lines.
local function listed(args)
  local lines, status, err = H.conntrack("-L " .. (args or ""))
  assert(status == 0, "conntrack -L " .. (args or "") .. " failed: " .. err)
  return lines
end

--- The kernel's entry count as conntrack -C prints it.
local function conntrack_count()
  local lines, status = H.conntrack("-C")
  assert(status == 0, "conntrack -C failed")
  return assert(tonumber(lines[1]), "conntrack -C printed no number")
end

--- The countdown timeout of a conntrack -L line ("tcp      6 49 ESTABLISHED ...").
local function timeout_of(line)
  return tonumber(line:match("^%S+%s+%d+%s+(%d+)"))
end

--- Normalised lines as a set, and the lines of `all` that are not in `removed`.
local function line_set(lines)
  local set = {}
  for _, line in ipairs(lines) do set[H.normalize(line)] = true end
  return set
end

local function without(all, removed)
  local gone, kept = line_set(removed), {}
  for _, line in ipairs(all) do
    if not gone[H.normalize(line)] then kept[#kept + 1] = line end
  end
  return H.sorted(kept)
end

--- Specs. A spec is what create takes; tuple_of keeps what get takes.
local function udp(i, extra)
  local spec = { proto = "udp", src = "10.2.0." .. i, dst = "10.9.0.1", sport = 1000 + i,
                 dport = 53, timeout = 300 }
  for k, v in pairs(extra or {}) do spec[k] = v end
  return spec
end

local function tcp(i, extra)
  local spec = { proto = "tcp", src = "10.1.0." .. i, dst = "10.9.0.1", sport = 2000 + i,
                 dport = 80, timeout = 300, state = "ESTABLISHED" }
  for k, v in pairs(extra or {}) do spec[k] = v end
  return spec
end

local TUPLE_FIELDS = { "proto", "src", "dst", "sport", "dport", "icmp_type", "icmp_code",
                       "icmp_id" }

local function tuple_of(spec_or_flow)
  local t = {}
  for _, k in ipairs(TUPLE_FIELDS) do t[k] = spec_or_flow[k] end
  return t
end

--- The reply direction of an un-NATed entry with ports: addresses and ports swapped.
local function reply_tuple_of(spec)
  return { proto = spec.proto, reply_src = spec.dst, reply_dst = spec.src,
           reply_sport = spec.dport, reply_dport = spec.sport }
end

--- A mixed table: tcp/udp, IPv4/IPv6, marks 5 and 6; for filter tests.
local function populate_mixed(h)
  local list = {}
  for i = 1, 3 do
    list[#list + 1] = tcp(i, { mark = 5 })
    list[#list + 1] = udp(i, { mark = 6 })
    list[#list + 1] = udp(i, { src = "fd00:2::" .. i, dst = "fd00:9::1", mark = 5 })
    list[#list + 1] = tcp(i, { src = "fd00:1::" .. i, dst = "fd00:9::1", mark = 6 })
  end
  assert.equal(#list, h:create(list))
  assert.equal(#list, conntrack_count())
  return list
end

---------------------------------------------------------------------------------------

describe("conntrack table", function()
  local h

  before_each(function()
    H.reset()
    h = H.open()
  end)

  after_each(function()
    if h then h:close() end
  end)

  -------------------------------------------------------------------------------------
  describe("round trips with conntrack(8)", function()
    -- One of each tuple shape: ports, ICMP ids, both families.
    local cases = {
      { name = "tcp",      spec = tcp(1) },
      { name = "udp",      spec = udp(1) },
      { name = "icmp",     spec = { proto = "icmp", src = "10.3.0.1", dst = "10.3.0.2",
                                    icmp_type = 8, icmp_code = 0, icmp_id = 77, timeout = 300 } },
      { name = "tcp ipv6", spec = tcp(1, { src = "fd00:1::1", dst = "fd00:9::1" }) },
      { name = "udp ipv6", spec = udp(1, { src = "fd00:2::1", dst = "fd00:9::1" }) },
      { name = "icmpv6",   spec = { proto = "icmpv6", src = "fd00:3::1", dst = "fd00:3::2",
                                    icmp_type = 128, icmp_code = 0, icmp_id = 9, timeout = 300 } },
    }

    for _, case in ipairs(cases) do
      it("create, then conntrack -L, get and dump agree: " .. case.name, function()
        assert.is_true(h:create(case.spec))
        local lines = listed()
        assert.equal(1, #lines)

        local flow = assert(h:get(tuple_of(case.spec)))
        assert.equal(H.normalize(lines[1]), H.normalize(tostring(flow)))
        for _, k in ipairs(TUPLE_FIELDS) do
          assert.equal(case.spec[k], flow[k], "field " .. k)
        end
        assert.same(H.sorted(lines), H.sorted(H.dump_lines(h)))
      end)
    end

    it("get finds an entry by its reply tuple alone", function()
      for _, case in ipairs(cases) do
        if case.spec.sport then
          assert.is_true(h:create(case.spec))
          local r = results(h:get(reply_tuple_of(case.spec)))
          local flow = assert(r[1], r[2])
          local by_original = assert(h:get(tuple_of(case.spec)))
          assert.equal(by_original.id, flow.id)
          assert.equal(H.normalize(tostring(by_original)), H.normalize(tostring(flow)))
        end
      end
    end)

    it("update of one flow sets mark and timeout as conntrack -L shows", function()
      assert.is_true(h:create(tcp(1)))
      local flow = assert(h:get(tuple_of(tcp(1))))
      assert.equal(0, flow.mark)

      assert.equal(1, h:update(flow, { mark = 7, timeout = 50 }))
      local lines = listed()
      assert.equal(1, #lines)
      assert.truthy(lines[1]:find(" mark=7 ", 1, true), lines[1])
      local left = timeout_of(lines[1])
      assert.truthy(left and left <= 50 and left > 0, lines[1])
      assert.equal(7, assert(h:get(tuple_of(tcp(1)))).mark)
    end)

    it("update with a mask changes only the mask's bits", function()
      assert.is_true(h:create(udp(1, { mark = 0x107 })))
      local flow = assert(h:get(tuple_of(udp(1))))
      assert.equal(1, h:update(flow, { mark = "0x30/0xf0" }))
      assert.equal(1, #listed("-m 0x137"))
    end)

    it("update of a filter returns the number of matches, as conntrack counts them", function()
      populate_mixed(h)
      local udp_lines = listed("-p udp")
      assert.equal(6, #udp_lines)

      assert.equal(#udp_lines, h:update({ proto = "udp" }, { mark = 9 }))
      assert.equal(#udp_lines, #listed("-p udp -m 9"))
      assert.equal(#udp_lines, #listed("-m 9"))  -- no tcp entry was touched

      -- a filter that matches nothing changes nothing and says so
      assert.equal(0, h:update({ src = "192.0.2.0/24" }, { mark = 1 }))
      assert.equal(0, #listed("-m 1"))
    end)

    it("delete of one flow removes it from conntrack -L", function()
      assert.is_true(h:create(tcp(1)))
      assert.is_true(h:create(tcp(2)))
      local flow = assert(h:get(tuple_of(tcp(1))))
      assert.equal(1, h:delete(flow))
      local lines = listed()
      assert.equal(1, #lines)
      assert.truthy(lines[1]:find("sport=2002 ", 1, true), lines[1])
    end)

    -- Each filter is compared with the conntrack -L options that select the same entries.
    local filter_cases = {
      { filter = { proto = "udp" },        args = "-p udp" },
      { filter = { src = "10.1.0.0/16" },  args = "-s 10.1.0.0/16" },
      { filter = { mark = 5 },             args = "-m 5" },
      { filter = { family = "ipv6" },      args = "-f ipv6" },
      { filter = { proto = "tcp", mark = "6/0xff" }, args = "-p tcp -m 6/0xff" },
    }

    for _, case in ipairs(filter_cases) do
      it("delete of a filter removes exactly what conntrack -L " .. case.args .. " lists",
         function()
        populate_mixed(h)
        local before, matching = listed(), listed(case.args)
        assert.truthy(#matching > 0 and #matching < #before, "the case must split the table")

        assert.equal(#matching, h:delete(case.filter))
        assert.same(without(before, matching), H.sorted(listed()))
      end)
    end

    it("flush empties the table", function()
      populate_mixed(h)
      assert.is_true(h:flush())
      assert.equal(0, conntrack_count())
      assert.same({}, listed())
    end)

    -- mark and family are flushed by the kernel, proto by deleting the matches.
    local flush_cases = {
      { filter = { mark = 5 },          args = "-m 5" },
      { filter = { family = "ipv6" },   args = "-f ipv6" },
      { filter = { proto = "udp" },     args = "-p udp" },
    }

    for _, case in ipairs(flush_cases) do
      it("flush of a filter removes only what conntrack -L " .. case.args .. " lists",
         function()
        populate_mixed(h)
        local before, matching = listed(), listed(case.args)
        assert.truthy(#matching > 0 and #matching < #before, "the case must split the table")

        assert.is_true(h:flush(case.filter))
        local after = listed()
        assert.same(without(before, matching), H.sorted(after))
      end)
    end

    it("count equals conntrack -C, and the maximum equals nf_conntrack_max", function()
      local f = assert(io.open(PROC_MAX))
      local max = assert(tonumber(f:read("l")))
      f:close()

      assert.same({ n = 2, 0, max }, results(h:count()))
      populate_mixed(h)
      local entries, kernel_max = h:count()
      assert.equal(conntrack_count(), entries)
      assert.equal(12, entries)
      assert.equal(max, kernel_max)
    end)

    it("entries made by conntrack -I are seen by get and dump", function()
      H.must(H.CONNTRACK .. " -I -p tcp -s 10.5.0.1 -d 10.5.0.2 --sport 4000 --dport 443" ..
             " -t 120 --state ESTABLISHED -m 3 2>/dev/null")
      H.must(H.CONNTRACK .. " -I -p udp -s fd00:5::1 -d fd00:5::2 --sport 5 --dport 6" ..
             " -t 120 2>/dev/null")

      local flow = assert(h:get{ proto = "tcp", src = "10.5.0.1", dst = "10.5.0.2",
                                 sport = 4000, dport = 443 })
      assert.equal("ESTABLISHED", flow.state)
      assert.equal(3, flow.mark)
      assert.equal("ipv4", flow.family)
      local v6 = assert(h:get{ proto = "udp", src = "fd00:5::1", dst = "fd00:5::2",
                               sport = 5, dport = 6 })
      assert.equal("ipv6", v6.family)
      assert.same(H.sorted(listed()), H.sorted(H.dump_lines(h)))
    end)

    it("entries made by create are updated and deleted by conntrack -U and -D", function()
      local spec = tcp(1)
      assert.is_true(h:create(spec))
      local select_it = string.format("-p tcp -s %s -d %s --sport %d --dport %d",
                                      spec.src, spec.dst, spec.sport, spec.dport)

      H.must(H.CONNTRACK .. " -U " .. select_it .. " -m 11 >/dev/null 2>&1")
      assert.equal(11, assert(h:get(tuple_of(spec))).mark)

      H.must(H.CONNTRACK .. " -D " .. select_it .. " >/dev/null 2>&1")
      assert.same({ n = 3, nil, "conntrack.get: No such file or directory", 2 },
                  results(h:get(tuple_of(spec))))
    end)

    it("create of a list creates every spec and returns the count", function()
      local list = {}
      for i = 1, 150 do list[i] = udp(i % 250 + 1, { sport = 10000 + i }) end  -- > 2 batches
      assert.equal(150, h:create(list))
      assert.equal(150, conntrack_count())
      assert.same(H.sorted(listed()), H.sorted(H.dump_lines(h)))
    end)

    it("create of a list with one existing spec fails with EEXIST and creates the others",
       function()
      assert.is_true(h:create(udp(2)))
      local r = results(h:create{ udp(1), udp(2), udp(3) })
      assert.same({ n = 4, nil, "conntrack.create: File exists", 17, {
        done = 2, { index = 2, errno = 17, message = "conntrack.create: File exists" } } }, r)
      assert.equal(3, conntrack_count())
      for _, i in ipairs{ 1, 3 } do assert.truthy(h:get(tuple_of(udp(i)))) end
    end)
  end)

  -------------------------------------------------------------------------------------
  describe("errors", function()
    it("create of an existing entry returns nil, message, EEXIST", function()
      assert.is_true(h:create(tcp(1)))
      assert.same({ n = 3, nil, "conntrack.create: File exists", 17 },
                  results(h:create(tcp(1))))
    end)

    it("get, update and delete of a flow that is gone return nil, message, ENOENT", function()
      assert.is_true(h:create(tcp(1)))
      local flow = assert(h:get(tuple_of(tcp(1))))
      assert.equal(1, h:delete(flow))

      assert.same({ n = 3, nil, "conntrack.get: No such file or directory", 2 },
                  results(h:get(tuple_of(flow))))
      assert.same({ n = 3, nil, "conntrack.delete: No such file or directory", 2 },
                  results(h:delete(flow)))
      assert.same({ n = 3, nil, "conntrack.update: No such file or directory", 2 },
                  results(h:update(flow, { mark = 1 })))
      assert.equal(0, conntrack_count())  -- update must not have re-created it
    end)

    -- Every method called as a method, so the message names it and counts from self.
    local unknown_field = {
      { "dump",   function(h) for _ in h:dump{ dprot = 1 } do end end },
      { "get",    function(h) h:get{ dprot = 1 } end },
      { "create", function(h) h:create{ dprot = 1 } end },
      { "create", function(h) h:create{ { dprot = 1 } } end },
      { "update", function(h) h:update({ dprot = 1 }, { mark = 1 }) end },
      { "update", function(h) h:update({ proto = "tcp" }, { dprot = 1 }) end, 2 },
      { "delete", function(h) h:delete{ dprot = 1 } end },
      { "flush",  function(h) h:flush{ dprot = 1 } end },
    }

    it("an unknown field raises 'bad argument #N to METHOD (unknown field ...)'", function()
      for _, case in ipairs(unknown_field) do
        local method, call, argn = case[1], case[2], case[3] or 1
        assert.equal(string.format("bad argument #%d to '%s' (unknown field 'dprot')",
                                   argn, method),
                     raised(function() call(h) end))
      end
    end)

    -- A bad value names the field; each case is a method call and the expected text.
    local function with(base, changes)
      local t = {}
      for k, v in pairs(base) do t[k] = v end
      for k, v in pairs(changes) do t[k] = v end
      return t
    end
    local tuple = tuple_of(tcp(1))
    local bad_values = {
      { function(h) h:get(with(tuple, { src = "10.0.0.300" })) end,
        "bad argument #1 to 'get' (field 'src': invalid address '10.0.0.300')" },
      { function(h) h:get(with(tuple, { sport = 70000 })) end,
        "bad argument #1 to 'get' (field 'sport' is out of range (0..65535))" },
      { function(h) h:get(with(tuple, { proto = "tcpp" })) end,
        "bad argument #1 to 'get' (field 'proto': unknown protocol 'tcpp')" },
      { function(h) h:get(with(tuple, { dst = "fd00::1" })) end,
        "bad argument #1 to 'get' (field 'dst' mixes IPv4 and IPv6)" },
      { function(h) h:create(with(tcp(1), { state = "FOO" })) end,
        "bad argument #1 to 'create' (field 'state': unknown state 'FOO')" },
      { function(h) h:create(with(tcp(1), { mark = "x" })) end,
        "bad argument #1 to 'create' (field 'mark' expects a number, got 'x')" },
      { function(h) h:create(with(tcp(1), { dst = "fd00::1" })) end,
        "bad argument #1 to 'create' (field 'dst' mixes IPv4 and IPv6)" },
      { function(h) h:update({ proto = "tcp" }, { mark = "x" }) end,
        "bad argument #2 to 'update' (field 'mark' expects a number, got 'x')" },
      { function(h) h:update({ proto = "tcp" }, { state = "FOO" }) end,
        "bad argument #2 to 'update' (field 'state': unknown state 'FOO')" },
      { function(h) for _ in h:dump{ mark = "x" } do end end,
        "bad argument #1 to 'dump' (field 'mark' expects a number, got 'x')" },
      { function(h) for _ in h:dump{ proto = "tcpp" } do end end,
        "bad argument #1 to 'dump' (field 'proto': unknown protocol 'tcpp')" },
      { function(h) h:delete{ sport = 70000 } end,
        "bad argument #1 to 'delete' (field 'sport' is out of range (0..65535))" },
      { function(h) h:flush{ src = "10.0.0.300" } end,
        "bad argument #1 to 'flush' (field 'src': invalid address '10.0.0.300')" },
    }

    it("a bad value raises naming the field", function()
      for _, case in ipairs(bad_values) do
        assert.equal(case[2], raised(function() case[1](h) end))
      end
      -- a filter names whichever address it met second: the order of pairs()
      local msg = raised(function() for _ in h:dump{ src = "10.0.0.1", dst = "fd00::1" } do end end)
      assert.truthy(msg == "bad argument #1 to 'dump' (field 'dst' mixes IPv4 and IPv6)" or
                    msg == "bad argument #1 to 'dump' (field 'src' mixes IPv4 and IPv6)", msg)
    end)

    it("a missing tuple field raises naming it (get), and create needs proto and timeout",
       function()
      local missing = {
        { function(h) local t = tuple_of(tcp(1)); t.dport = nil; h:get(t) end,
          "bad argument #1 to 'get' (field 'dport' is required)" },
        { function(h) local t = tuple_of(tcp(1)); t.src = nil; h:get(t) end,
          "bad argument #1 to 'get' (field 'src' is required)" },
        { function(h) h:get{ proto = "icmp", src = "10.0.0.1", dst = "10.0.0.2",
                             icmp_code = 0, icmp_id = 1 } end,
          "bad argument #1 to 'get' (field 'icmp_type' is required)" },
        { function(h) h:create{ src = "10.0.0.1", dst = "10.0.0.2", timeout = 10 } end,
          "bad argument #1 to 'create' (field 'proto' is required)" },
        { function(h) local s = tcp(1); s.timeout = nil; h:create(s) end,
          "bad argument #1 to 'create' (field 'timeout' is required)" },
        { function(h) local s = udp(1); s.timeout = nil; h:create{ udp(2), s } end,
          "bad argument #1 to 'create' (field 'timeout' is required)" },
      }
      for _, case in ipairs(missing) do
        assert.equal(case[2], raised(function() case[1](h) end))
      end
      -- every spec of a list is checked before any is sent
      assert.equal(0, conntrack_count())
    end)

    it("create raises naming a missing tuple field", function()
      local function minus(spec, field) spec[field] = nil return spec end
      local icmp = { proto = "icmp", src = "10.3.0.1", dst = "10.3.0.2", icmp_type = 8,
                     icmp_code = 0, icmp_id = 77, timeout = 300 }
      local cases = {
        { minus(tcp(1), "src"), "src" },
        { minus(tcp(1), "dst"), "dst" },
        { minus(tcp(1), "sport"), "sport" },
        { minus(udp(1), "dport"), "dport" },
        { minus(icmp, "icmp_type"), "icmp_type" },
      }
      for _, case in ipairs(cases) do
        local ok, err = pcall(function() h:create(case[1]) end)
        assert.is_false(ok)
        assert.equal("bad argument #1 to 'create' (field '" .. case[2] .. "' is required)",
                     without_position(err))
      end
      assert.equal(0, conntrack_count())
    end)

    it("a closed handle raises for every method; close is idempotent; tostring says so",
       function()
      local c = H.open()
      assert.truthy(tostring(c):match("^conntrack%.handle %(0x%x+%)$"), tostring(c))
      c:close()
      assert.equal("conntrack.handle (closed)", tostring(c))
      assert.has_no.errors(function() c:close() end)

      local calls = {
        dump   = function() for _ in c:dump() do end end,
        get    = function() c:get(tuple_of(tcp(1))) end,
        create = function() c:create(tcp(1)) end,
        update = function() c:update({ proto = "tcp" }, { mark = 1 }) end,
        delete = function() c:delete{ proto = "tcp" } end,
        flush  = function() c:flush() end,
        count  = function() c:count() end,
      }
      for name, call in pairs(calls) do
        assert.equal("attempt to use a closed conntrack.handle", raised(call), name)
      end
      assert.equal(0, conntrack_count())  -- nothing reached the kernel
    end)

    it("a <close> handle is closed at the end of its scope, and on an error", function()
      -- load(): the attribute syntax is Lua 5.4 only; keep it out of this file's parse
      local chunk = assert(load([[
        local conntrack, seen, fail = ...
        do
          local h <close> = assert(conntrack.open())
          seen.h, seen.inside = h, tostring(h)
          if fail then error("fail inside the scope", 0) end
        end
        seen.after = tostring(seen.h)
      ]], "=close-chunk", "t"))

      local seen = {}
      chunk(conntrack, seen, false)
      assert.truthy(seen.inside:match("^conntrack%.handle %(0x%x+%)$"), seen.inside)
      assert.equal("conntrack.handle (closed)", seen.after)

      local failed = {}
      assert.same({ false, "fail inside the scope" }, { pcall(chunk, conntrack, failed, true) })
      assert.equal("conntrack.handle (closed)", tostring(failed.h))
    end)

    it("the dump iterator raises once its loop broke, or ended", function()
      populate_mixed(h)
      local iter, dump, ctl, closing = h:dump()
      assert.equal(dump, closing)  -- the dump is the loop's to-be-closed value
      for _ in iter, dump, ctl, closing do break end  -- luacheck: ignore 512
      assert.equal("conntrack.dump (closed)", tostring(dump))
      assert.equal("attempt to use a closed conntrack.dump", raised(function() iter(dump) end))

      local iter2, dump2 = h:dump()
      for _ in iter2, dump2 do end
      assert.equal("attempt to use a closed conntrack.dump", raised(function() iter2(dump2) end))
    end)

    it("without CAP_NET_ADMIN, count/get/create/flush return EPERM with a hint, dump raises",
       function()
      -- A nested user namespace owns no capability over this network namespace.
      local child = [[
        local conntrack = require "conntrack"
        local h = assert(conntrack.open())
        local function show(name, a, b, c)
          io.write(name, "\t", tostring(a), "\t", tostring(b), "\t", tostring(c), "\n")
        end
        show("count", h:count())
        show("get", h:get{ proto = "tcp", src = "10.0.0.1", dst = "10.0.0.2", sport = 1, dport = 2 })
        show("create", h:create{ proto = "tcp", src = "10.0.0.1", dst = "10.0.0.2", sport = 1,
                                 dport = 2, timeout = 10 })
        show("flush", h:flush())
        local ok, e = pcall(function() for _ in h:dump() do end end)
        show("dump", ok, type(e) == "table" and e.errno, tostring(e))
        show("dumpop", type(e) == "table" and e.op, getmetatable(e) ~= nil, nil)
      ]]
      local out, status, err = H.run("unshare -U ./ct-lua -e " .. H.quote(child))
      assert.equal(0, status, err)
      local got = {}
      for _, line in ipairs(H.lines(out)) do
        local name, a, b, c = line:match("^(%w+)\t([^\t]*)\t([^\t]*)\t([^\t]*)$")
        assert.truthy(name, line)
        got[name] = { a, b, c }
      end

      local function has_hint(msg)
        return msg:find("CAP_NET_ADMIN", 1, true) and msg:find("unshare -rn", 1, true)
      end
      for _, op in ipairs{ "count", "get", "create", "flush" } do
        local r = assert(got[op], "no line for " .. op)
        assert.equal("nil", r[1], op)
        assert.truthy(r[2]:find("^conntrack%." .. op .. ": Operation not permitted"), r[2])
        assert.truthy(has_hint(r[2]), r[2])
        assert.equal("1", r[3], op)
      end
      assert.same({ "false", "1" }, { got.dump[1], got.dump[2] })
      assert.truthy(got.dump[3]:find("^conntrack%.dump: Operation not permitted"), got.dump[3])
      assert.truthy(has_hint(got.dump[3]), got.dump[3])
      assert.same({ "dump", "true" }, { got.dumpop[1], got.dumpop[2] })
    end)
  end)

  -------------------------------------------------------------------------------------
  describe("Lua errors and early exits inside dumps", function()
    -- Enough entries for several datagrams, so a dump that stops early has unread data.
    local function populate(n)
      local list = {}
      for i = 1, n do list[i] = udp(i % 250 + 1, { sport = 10000 + i }) end
      assert.equal(n, h:create(list))
    end

    -- GC stays stopped while a test measures fds, so only the library can free them.
    before_each(function() collectgarbage("stop") end)
    after_each(function() collectgarbage("restart") end)

    local sentinel = setmetatable({}, { __tostring = function() return "sentinel" end })
    local raisers = {
      { "the loop body", function(h, err)
          for _ in h:dump() do error(err, 0) end
        end },
      { "a filter predicate", function(h, err)
          for _ in h:dump{ proto = "udp", function() error(err, 0) end } do end
        end },
      { "a predicate-only filter", function(h, err)
          for _ in h:dump(function() error(err, 0) end) do end
        end },
    }

    for _, case in ipairs(raisers) do
      it("an error in " .. case[1] .. " propagates, frees the dump, and the handle works",
         function()
        populate(300)
        local base = fd_count()
        for _, err in ipairs{ "boom from Lua", sentinel } do
          local ok, got = pcall(case[2], h, err)
          assert.is_false(ok)
          assert.equal(err, got)  -- its own message, or the very same object
          assert.equal(base, fd_count())
        end
        assert.truthy(h:get(tuple_of(udp(2, { sport = 10001 }))))
        assert.equal(300, (h:count()))
      end)
    end

    it("update and delete call their function with each entry done, in the dump's order",
       function()
      populate(300)
      local order, updated, deleted = {}, {}, {}
      for f in h:dump{ proto = "udp" } do order[#order + 1] = f.id end
      assert.equal(300, (h:update({ proto = "udp" }, { mark = 5 }, function(f)
        updated[#updated + 1] = f.id
      end)))
      assert.same(order, updated)
      assert.equal(300, (h:delete({ mark = 5 }, function(f)
        assert.equal(5, f.mark)
        deleted[#deleted + 1] = f.id
      end)))
      assert.same(order, deleted)
      local one = udp(7, { sport = 7 })
      assert(h:create(one))
      local flow = assert(h:get(tuple_of(one)))
      local called
      assert.equal(1, (h:delete(flow, function(f) called = f end)))
      assert.equal(flow, called)
    end)

    it("an error in the function given to delete stops it: the error propagates, the " ..
       "dump is freed, only requests already sent were applied, the handle works", function()
      populate(300)
      local base, calls = fd_count(), 0
      local ok, got = pcall(h.delete, h, {}, function()
        calls = calls + 1
        if calls == 70 then error(sentinel, 0) end
      end)
      assert.is_false(ok)
      assert.equal(sentinel, got)
      assert.equal(70, calls)
      assert.equal(base, fd_count())
      local left = h:count()
      assert.is_true(left <= 300 - 70 and left > 0, left .. " entries left")
      assert.equal(left, (h:delete{}))
    end)

    it("a function that is not one is refused before anything is sent", function()
      populate(10)
      assert.equal("bad argument #2 to 'delete' (function expected, got number)",
                   raised(function() return h:delete({}, 5) end))
      assert.equal("bad argument #3 to 'update' (function expected, got string)",
                   raised(function() return h:update({}, { mark = 1 }, "x") end))
      assert.equal(10, (h:count()))
    end)

    it("breaking out of a dump frees its socket at once", function()
      populate(300)
      local base, inside = fd_count(), nil
      for _ in h:dump() do  -- luacheck: ignore 512 (one step, then break)
        inside = fd_count()
        break
      end
      assert.equal(base + 1, inside)  -- the dump had a socket of its own ...
      assert.equal(base, fd_count())  -- ... and break closed it, without the GC
    end)

    it("deleting each flow while dumping empties the table", function()
      populate(500)
      local deleted = 0
      for f in h:dump() do deleted = deleted + assert(h:delete(f)) end
      assert.equal(500, deleted)
      assert.equal(0, conntrack_count())
    end)

    -- update and delete of a filter run the predicate inside their own dump
    local mutators = {
      delete = function(h, pred) return h:delete{ proto = "udp", pred } end,
      update = function(h, pred) return h:update({ proto = "udp", pred }, { mark = 3 }) end,
    }

    for name, mutate in pairs(mutators) do
      it("an error in the predicate of " .. name .. " propagates and the handle works",
         function()
        populate(300)
        local seen = 0
        local ok, err = pcall(mutate, h, function()
          seen = seen + 1
          if seen == 100 then error("stop at 100", 0) end
          return true
        end)
        assert.same({ false, "stop at 100" }, { ok, err })
        -- ACKs of the batches already sent were all read: the socket is in step
        assert.is_true(h:create(tcp(1)))
        assert.equal(tcp(1).sport, assert(h:get(tuple_of(tcp(1)))).sport)
        assert.equal(conntrack_count(), (h:count()))
        assert.equal(1, h:update({ proto = "tcp" }, { mark = 4 }))
      end)

      it("an error in the predicate of " .. name .. " frees its dump socket at once",
         function()
        populate(300)
        local base = fd_count()
        local ok = pcall(mutate, h, function() error("stop", 0) end)
        assert.is_false(ok)
        assert.equal(base, fd_count())
      end)
    end
  end)

  -------------------------------------------------------------------------------------
  describe("write", function()
    local path

    before_each(function()
      path = os.tmpname()
      assert(h:create(tcp(1)))
      assert(h:create(udp(2)))
      assert(h:create(udp(3, { src = "fd00:1::1", dst = "fd00:9::1" })))
    end)

    after_each(function() os.remove(path) end)

    --- h:write(file, format, filter, options) into a fresh file: its text and the count.
    local function written(format, filter, options)
      local f = assert(io.open(path, "w"))
      local n = h:write(f, format, filter, options)
      f:close()
      return H.read_file(path), n
    end

    --- What a dump loop prints with flow:format.
    local function formatted(format, filter)
      local lines = {}
      for fl in h:dump(filter) do lines[#lines + 1] = fl:format(format) .. "\n" end
      return table.concat(lines), #lines
    end

    for _, case in ipairs{
      { "the default line", nil },
      { "extended with ids", { extended = true, id = true } },
      { "XML", { xml = true } },
      { "a filter", { extended = true }, { proto = "udp" } },
      { "a predicate", nil, { function(f) return f.sport ~= 2 end } },
    } do
      it("writes what flow:format gives for each entry of the dump: " .. case[1], function()
        local text, n = written(case[2], case[3])
        local want, count = formatted(case[2], case[3])
        assert.is_true(count > 0)
        assert.equal(count, n)
        local function same(t)   -- each line normalised (the XML timeout counts down too)
          local lines = {}
          for _, line in ipairs(H.lines(t)) do
            lines[#lines + 1] = H.normalize(line)  -- (timeouts of XML too)
          end
          return lines
        end
        assert.same(same(want), same(text))
      end)
    end

    it("writes IPv6 addresses as inet_ntop does: the longest zero run as ::, IPv4 tails " ..
       "(lines and address fields)", function()
      local addrs = { "::1", "2001:db8::1", "fe80::", "1:0:0:2::3", "::ffff:1.2.3.4",
                      "::1.2.3.4", "::0.2.0.3", "1:0:2:3:4:5:6:7", "2001:db8:0:0:1:0:0:1",
                      "::", "1::", "abcd:ef01:2345:6789:abcd:ef01:2345:6789", "0:0:1::" }
      for i, a in ipairs(addrs) do
        assert(h:create(udp(i, { src = a, dst = "fd00::" .. i, sport = 20000 + i })))
      end
      local checked = 0
      for f in h:dump{ family = "ipv6" } do
        local line = tostring(f)  -- libnetfilter_conntrack's, through glibc's inet_ntop
        assert.equal(H.normalize(line), H.normalize(f:format()))  -- core/print.c's
        assert.same({ line:match("src=(%S+) dst=(%S+) .* src=(%S+) dst=(%S+)") },
                    { f.src, f.dst, f.reply_src, f.reply_dst })
        checked = checked + 1
      end
      assert.equal(#addrs + 1, checked)
    end)

    it("writes the header before the first line only, and nothing for no entry", function()
      local text, n = written({ header = "<h>\n" }, { proto = "tcp" })
      assert.equal(1, n)
      assert.equal("<h>\n", text:sub(1, 4))
      text, n = written({ header = "<h>\n" }, { proto = "icmp" })
      assert.same({ "", 0 }, { text, n })
    end)

    it("a predicate that raises leaves the lines it passed before in the file; one that " ..
       "closes the file stops the write", function()
      local seen = 0
      local f = assert(io.open(path, "w"))
      local ok, err = pcall(h.write, h, f, nil, { function()
        seen = seen + 1
        if seen == 3 then error("stop", 0) end
        return true
      end })
      f:close()
      assert.same({ false, "stop" }, { ok, err })
      assert.equal(2, #H.lines(H.read_file(path)))
      f = assert(io.open(path, "w"))
      assert.equal("attempt to use a closed file", raised(function()
        return h:write(f, nil, { function() f:close() return true end })
      end))
    end)

    it("checks its file and format, and reports an output error", function()
      local closed = assert(io.open(path, "w"))
      closed:close()
      assert.equal("bad argument #1 to 'write' (attempt to use a closed file)",
                   raised(function() return h:write(closed) end))
      assert.equal("bad argument #1 to 'write' (FILE* expected, got string)",
                   raised(function() return h:write("out") end))
      assert.equal("bad argument #2 to 'write' (unknown option 'bogus')",
                   raised(function() return h:write(io.stdout, { bogus = true }) end))
      assert.equal("bad argument #3 to 'write' (unknown field 'dprot')",
                   raised(function() return h:write(io.stdout, nil, { dprot = 1 }) end))
      local readonly = assert(io.open(path, "r"))
      local n, msg, errno = h:write(readonly)
      readonly:close()
      assert.is_nil(n)
      assert.equal("conntrack.write: Bad file descriptor", msg)
      assert.equal(9, errno)
      -- a full disk, not the kernel's ENOSPC (an entry without label storage)
      local full = assert(io.open("/dev/full", "w"))
      full:setvbuf("no")   -- each line goes out at once
      n, msg, errno = h:write(full)
      full:close()
      assert.same({ nil, "conntrack.write: No space left on device", 28 }, { n, msg, errno })
    end)
  end)

  describe("garbage collection", function()
    -- With the GC stopped the fds must pile up (the test can fail), then the
    -- collector alone must give every one back.
    local function fds_returned_by_gc(make, n)
      collectgarbage()
      collectgarbage()
      local base = fd_count()
      collectgarbage("stop")
      for _ = 1, n do make() end
      local held = fd_count()
      collectgarbage("restart")
      collectgarbage()
      collectgarbage()
      return base, held, fd_count()
    end

    it("1000 dropped handles give their sockets back", function()
      local base, held, after = fds_returned_by_gc(function() assert(conntrack.open()) end, 1000)
      assert.equal(base + 1000, held)
      assert.equal(base, after)
    end)

    -- 200, not 1000: each started dump makes the kernel walk all 262144 hash
    -- buckets of the namespace (about 9 ms here), and 200 prove the same.
    it("200 started and abandoned dumps give their sockets back", function()
      for i = 1, 20 do assert.is_true(h:create(udp(i))) end
      local base, held, after = fds_returned_by_gc(function()
        local iter, dump = h:dump()
        assert(iter(dump))  -- started: the kernel has begun to send
      end, 200)
      assert.equal(base + 200, held)
      assert.equal(base, after)
      assert.equal(20, #H.dump_lines(h))  -- the handle is unharmed
    end)
  end)

  -------------------------------------------------------------------------------------
  describe("bounded memory", function()
    it("a dump of 100,000 entries runs in a few MiB", function()
      local N, CHUNK = 100000, 1000
      for first = 0, N - 1, CHUNK do
        local list = {}
        for i = 1, CHUNK do
          local n = first + i
          list[i] = { proto = "udp",
                      src = string.format("10.%d.%d.%d", n >> 16, n >> 8 & 255, n & 255),
                      dst = "10.255.0.1", sport = 1024 + n % 60000, dport = 53, timeout = 600 }
        end
        assert.equal(CHUNK, h:create(list))
      end
      local expected = conntrack_count()
      assert.equal(N, expected)

      collectgarbage()
      collectgarbage()
      local start, peak, seen, ports = H.rss_kib(), 0, 0, 0
      for f in h:dump() do
        seen = seen + 1
        ports = ports + f.sport + f.dport  -- read a few fields: flows are really built
        assert(f.proto == "udp" and f.src)
        if seen % 1000 == 0 then peak = math.max(peak, H.rss_kib()) end
      end
      assert.equal(expected, seen)
      assert.truthy(ports > 0)
      -- under make check-asan, ASan's quarantine (16 MiB there) holds the flows' freed
      -- memory on purpose: RSS says nothing (the plain run grows by well under 1 MiB)
      if os.getenv("CT_SANITIZE") ~= "asan" then
        assert.truthy(peak - start < 8 * 1024,
                      string.format("RSS grew by %d KiB during the dump", peak - start))
      end
      assert.is_true(h:flush())
    end)
  end)
end)
