-- What create and update write besides the tuple and the metadata, each checked against
-- /usr/sbin/conntrack on the same table: NAT set up by the kernel (snat/dnat), the TCP
-- window-tracking flags (tcp_flags/reply_tcp_flags) and SCTP state with verification tags.
--
-- tests/run gives this file its own network namespace, so the table belongs to us.

local H = require "helpers"

--- conntrack -L ARGS -o save, sorted, with the countdown timeout normalised.
local function saved(args)
  local out = H.must(H.CONNTRACK .. " -L -o save " .. args .. " 2>/dev/null")
  local lines = {}
  for _, line in ipairs(H.lines(out)) do lines[#lines + 1] = (line:gsub("%-t %d+", "-t T")) end
  table.sort(lines)
  return lines
end

local names, raised = H.sorted_keys, H.raised

describe("create and update beyond the tuple", function()
  local h

  before_each(function()
    H.reset()
    h = H.open()
  end)

  after_each(function()
    if h then h:close() end
  end)

  describe("NAT set up by the kernel", function()
    local CASES = {
      { spec = { proto = "tcp", dst = "10.9.4.2", sport = 1, dport = 2, state = "ESTABLISHED",
                 snat = "10.9.9.1:99" },
        cli = "-p tcp -d 10.9.4.2 --sport 1 --dport 2 --state ESTABLISHED --src-nat 10.9.9.1:99",
        snat = true, dnat = false },
      { spec = { proto = "udp", dst = "10.9.4.2", sport = 1, dport = 2, dnat = "10.9.9.2" },
        cli = "-p udp -d 10.9.4.2 --sport 1 --dport 2 --dst-nat 10.9.9.2",
        snat = false, dnat = true },
      { spec = { proto = "udp", dst = "10.9.4.2", sport = 3, dport = 4, snat = "10.9.9.1",
                 dnat = "10.9.9.2:53" },
        cli = "-p udp -d 10.9.4.2 --sport 3 --dport 4 -n 10.9.9.1 -g 10.9.9.2:53",
        snat = true, dnat = true },
      { spec = { proto = "udp", dst = "fd00:9::2", sport = 1, dport = 2,
                 snat = "[fd00:9::9]:53" },
        cli = "-p udp -d fd00:9::2 --sport 1 --dport 2 --src-nat [fd00:9::9]:53",
        snat = true, dnat = false, v6 = true },
      { spec = { proto = "udp", dst = "fd00:9::2", sport = 5, dport = 6, dnat = "fd00:9::8" },
        cli = "-p udp -d fd00:9::2 --sport 5 --dport 6 --dst-nat fd00:9::8",
        snat = false, dnat = true, v6 = true },
    }
    for i, case in ipairs(CASES) do
      it("case " .. i .. ": the entry is the one conntrack -I " .. case.cli .. " makes",
        function()
          local spec = { src = case.v6 and "fd00:9::1" or "10.9.4.1", timeout = 100 }
          for k, v in pairs(case.spec) do spec[k] = v end
          assert.is_true(h:create(spec))
          for f in h:dump() do
            assert.equal(case.snat, f.snat)
            assert.equal(case.dnat, f.dnat)
            assert.equal(case.snat, f.status.SRC_NAT == true)
            assert.equal(case.dnat, f.status.DST_NAT == true)
          end
          local ours = saved("")
          assert.equal(1, #ours)
          H.reset()
          H.must(H.CONNTRACK .. " -I -s " .. spec.src .. " -t 100 " .. case.cli .. " 2>&1")
          assert.same(saved(""), ours)
        end)
    end

    it("a NAT target must be an address with an optional port, of the entry's family",
      function()
        local base = { proto = "udp", src = "10.9.4.1", dst = "10.9.4.2", sport = 1, dport = 2,
                       timeout = 100 }
        local function create(k, v)
          local spec = { [k] = v }
          for key, value in pairs(base) do spec[key] = value end
          return raised(function() return h:create(spec) end)
        end
        assert.equal("bad argument #1 to 'create' (field 'snat': invalid NAT target '10.0.0.300')",
                     create("snat", "10.0.0.300"))
        assert.equal("bad argument #1 to 'create' (field 'dnat' is out of range (0..65535))",
                     create("dnat", "10.0.0.1:70000"))
        assert.equal("bad argument #1 to 'create' (field 'snat' expects \"ADDR\" or " ..
                     "\"ADDR:PORT\", got boolean)", create("snat", true))
        assert.equal("bad argument #1 to 'create' (field 'snat': invalid NAT target '[fd00::1')",
                     create("snat", "[fd00::1"))
        assert.equal("bad argument #1 to 'create' (field 'snat' mixes IPv4 and IPv6)",
                     create("snat", "fd00::1"))
        assert.equal(0, (h:count()))
      end)

    it("NAT cannot be changed by an update", function()
      assert(h:create{ proto = "udp", src = "10.9.4.1", dst = "10.9.4.2", sport = 1, dport = 2,
                       timeout = 100 })
      assert.matches("field 'snat' cannot be",
                     raised(function() return h:update({}, { snat = "10.9.9.1" }) end), 1, true)
    end)
  end)

  describe("TCP window-tracking flags", function()
    it("conntrack -I turns tracking off on its entries; create sets what it is given", function()
      H.must(H.CONNTRACK .. " -I -p tcp -s 10.9.1.1 -d 10.9.1.2 --sport 1 --dport 2 " ..
             "--state TIME_WAIT -t 100 2>&1")
      assert(h:create{ proto = "tcp", src = "10.9.1.3", dst = "10.9.1.2", sport = 1, dport = 2,
                       state = "ESTABLISHED", timeout = 100, tcp_flags = { BE_LIBERAL = true },
                       reply_tcp_flags = "SACK_PERM,WINDOW_SCALE" })
      local seen = {}
      for f in h:dump() do seen[f.src] = { names(f.tcp_flags), names(f.reply_tcp_flags) } end
      assert.same({ { "BE_LIBERAL", "CLOSE_INIT", "SACK_PERM" },
                    { "BE_LIBERAL", "CLOSE_INIT", "SACK_PERM" } }, seen["10.9.1.1"])
      assert.same({ { "BE_LIBERAL" }, { "SACK_PERM", "WINDOW_SCALE" } }, seen["10.9.1.3"])
    end)

    it("an update changes only the flags it names, and filters select by them", function()
      H.must(H.CONNTRACK .. " -I -p tcp -s 10.9.1.1 -d 10.9.1.2 --sport 1 --dport 2 " ..
             "--state ESTABLISHED -t 100 2>&1")
      assert.equal(1, (h:update({ proto = "tcp" }, { tcp_flags = { BE_LIBERAL = false,
                                                                   MAXACK_SET = true } })))
      for f in h:dump() do
        assert.same({ "MAXACK_SET", "SACK_PERM" }, names(f.tcp_flags))
        assert.same({ "BE_LIBERAL", "SACK_PERM" }, names(f.reply_tcp_flags))
      end
      local n = 0
      for _ in h:dump{ tcp_flags = "SACK_PERM,!BE_LIBERAL", reply_tcp_flags = { "BE_LIBERAL" } } do
        n = n + 1
      end
      assert.equal(1, n)
      for _ in h:dump{ tcp_flags = "BE_LIBERAL" } do error("BE_LIBERAL was cleared") end
    end)

    it("flags apply to TCP only, and their names are checked", function()
      local udp = { proto = "udp", src = "10.9.4.1", dst = "10.9.4.2", sport = 1, dport = 2,
                    timeout = 100, tcp_flags = "BE_LIBERAL" }
      assert.equal("bad argument #1 to 'create' (field 'tcp_flags' does not apply to this " ..
                   "protocol)", raised(function() return h:create(udp) end))
      assert.equal("bad argument #1 to 'dump' (field 'tcp_flags': unknown TCP flag 'LIBERAL')",
                   raised(function() return h:dump{ tcp_flags = "LIBERAL" } end))
    end)
  end)

  describe("SCTP state and verification tags", function()
    before_each(function()
      H.must(H.CONNTRACK .. " -I -p sctp -s 10.9.0.1 -d 10.9.0.2 --sport 10 --dport 20 " ..
             "--state ESTABLISHED --orig-vtag 5 --reply-vtag 6 -t 100 2>&1")
    end)

    it("a state change keeps the tags (the kernel needs all three)", function()
      assert.equal(1, (h:update({ proto = "sctp" }, { state = "CLOSED" })))
      assert.equal("--state CLOSED --orig-vtag 5 --reply-vtag 6",
                   saved("-p sctp")[1]:match("%-%-state.*$"))
    end)

    it("a tag change keeps the state and the other tag", function()
      -- conntrack prints a tag byte-swapped (see flow_spec): 7 here is 0x07000000
      for f in h:dump{ proto = "sctp" } do assert.equal(1, (h:update(f, { vtag = 0x07000000 }))) end
      assert.equal("--state ESTABLISHED --orig-vtag 7 --reply-vtag 6",
                   saved("-p sctp")[1]:match("%-%-state.*$"))
    end)
  end)
end)
