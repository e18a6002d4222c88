-- Real packets through the conntrack table: TCP and UDP exchanges over a veth pair to a peer
-- namespace (IPv4 and IPv6), NAT by nft rules, deleting a live flow, and a large dump. Every
-- check compares the binding with /usr/sbin/conntrack reading the same table, matching
-- entries by the kernel's id so that two reads of the table are never compared by position.
local H = require "helpers"
local conntrack = require "conntrack"

-- ctime(3)'s layout, as conntrack prints [start=...] (local time zone, day padded by a space)
local CTIME = "%a %b %e %H:%M:%S %Y"
-- seconds allowed between os.time() around the traffic and the kernel's start timestamp
local CLOCK_SLACK = 2

--- conntrack ARGS, which must succeed; its stdout lines.
local function oracle(args)
  local lines, status, err = H.conntrack(args)
  assert(status == 0, "conntrack " .. args .. ": " .. err)
  return lines
end

--- conntrack -L ARGS listed with ids; its lines by id, " id=N" removed so a line is exactly
-- what the same listing prints without -o id.
local function oracle_by_id(args, formats)
  local by_id = {}
  local output = (formats and formats .. "," or "") .. "id"
  for _, line in ipairs(oracle("-L " .. args .. " -o " .. output)) do
    local rest, id = line:match("^(.*) id=(%d+)$")
    assert(id, "no id in conntrack's line: " .. line)
    by_id[tonumber(id)] = rest
  end
  return by_id
end

--- The set of ids conntrack -L ARGS lists.
local function oracle_ids(args)
  local ids = {}
  for id in pairs(oracle_by_id(args)) do ids[id] = true end
  return ids
end

--- The set of ids our dump with filter returns.
local function our_ids(h, filter)
  local ids = {}
  for id in pairs(H.flows_by_id(h, filter)) do ids[id] = true end
  return ids
end

--- The original and reply counters of a conntrack line (acct on), in field order.
local function line_counters(line)
  local c = {}
  for packets, bytes in line:gmatch("packets=(%d+) bytes=(%d+)") do
    c[#c + 1] = { packets = tonumber(packets), bytes = tonumber(bytes) }
  end
  assert(#c == 2, "expected two counter pairs in: " .. line)
  return { packets = c[1].packets, bytes = c[1].bytes,
           reply_packets = c[2].packets, reply_bytes = c[2].bytes }
end

--- The original and reply tuples of a conntrack line of a TCP or UDP entry.
local function line_tuples(line)
  local t = {}
  for src, dst, sport, dport in line:gmatch("src=(%S+) dst=(%S+) sport=(%d+) dport=(%d+)") do
    t[#t + 1] = { src = src, dst = dst, sport = tonumber(sport), dport = tonumber(dport) }
  end
  assert(#t == 2, "expected two tuples in: " .. line)
  return t[1], t[2]
end

--- The one entry of an exchange that got its answer. An attempt made before the peer's
-- server listened leaves an entry too, but a refused TCP connection is never ASSURED and an
-- unanswered UDP request never SEEN_REPLY.
local function answered_flow(h, filter)
  filter.status = filter.proto == "tcp" and "ASSURED" or "SEEN_REPLY"
  local found = {}
  for f in h:dump(filter) do found[#found + 1] = f end
  assert(#found == 1, ("%d answered entries for dport %s"):format(#found, filter.dport))
  return found[1]
end

local function exchange(case, peer)
  local run = case.proto == "tcp" and H.tcp_exchange or H.udp_exchange
  assert.equal("pong\n", run(peer, case.port, case.addr, case.to_port))
end

describe("real traffic", function()
  local peer, h

  lazy_setup(function()
    peer = H.peer()
    h = H.open()
  end)

  lazy_teardown(function()
    if h then h:close() end
    if peer then peer:close() end
  end)

  before_each(function()
    H.reset()
    H.track_traffic()  -- after the reset: acct and timestamps only reach newer entries
  end)

  describe("counters and timestamps", function()
    local EXCHANGES = {
      { family = "ipv4", proto = "tcp", addr = "10.7.0.2", port = 8080 },
      { family = "ipv4", proto = "udp", addr = "10.7.0.2", port = 5353 },
      { family = "ipv6", proto = "tcp", addr = "fd07::2", port = 8081 },
      { family = "ipv6", proto = "udp", addr = "fd07::2", port = 5354 },
    }

    it("match conntrack's for every entry of real TCP and UDP exchanges", function()
      local before = os.time()
      for _, case in ipairs(EXCHANGES) do exchange(case, peer) end
      local after = os.time()

      local extended = oracle_by_id("", "extended")
      local stamped = oracle_by_id("", "ktimestamp")
      local plain = oracle_by_id("")
      local seen = 0
      for f in h:dump() do
        seen = seen + 1
        local line = assert(plain[f.id], "conntrack does not list id " .. f.id)
        assert.equal(H.normalize(line), H.normalize(tostring(f)))
        assert.same(line_counters(extended[f.id]),
                    { packets = f.packets, bytes = f.bytes,
                      reply_packets = f.reply_packets, reply_bytes = f.reply_bytes })
        -- status flags as conntrack prints them
        assert.equal(line:find("[ASSURED]", 1, true) ~= nil, f.status.ASSURED == true, line)
        assert.equal(line:find("[UNREPLIED]", 1, true) == nil, f.status.SEEN_REPLY == true, line)
        -- a nanosecond timestamp taken while the exchanges ran, the same second as conntrack's
        local start_s = f.start // 1000000000
        assert.is_true(start_s >= before - CLOCK_SLACK and start_s <= after + CLOCK_SLACK,
                       ("start %d outside [%d, %d]"):format(f.start, before, after))
        local stamped_line = assert(stamped[f.id], "no -o ktimestamp line for id " .. f.id)
        assert.equal(stamped_line:match("%[start=(.-)%]"), os.date(CTIME, start_s))
        assert.is_nil(f.stop)  -- the entry is alive
      end
      local listed = 0
      for _ in pairs(plain) do listed = listed + 1 end
      assert.equal(listed, seen, "entries listed by conntrack and dumped by us")

      for _, case in ipairs(EXCHANGES) do
        local f = answered_flow(h, { family = case.family, proto = case.proto,
                                     dst = case.addr, dport = case.port })
        -- traffic went both ways, so the equal counters above compared real numbers
        assert.is_true(f.packets > 0 and f.bytes > 0 and f.reply_packets > 0 and f.reply_bytes > 0)
        assert.is_true(f.status.SEEN_REPLY)
        if case.proto == "tcp" then
          assert.is_true(f.status.ASSURED)
          -- final, not a moment of the close: the last packet (the client's ACK of the
          -- server's FIN) passed this namespace's hooks before the client saw EOF and exited
          assert.equal("TIME_WAIT", f.state)
          assert.equal("TIME_WAIT", plain[f.id]:match("^tcp%s+6%s+%d+ (%u[%u_]*) "))
          local got = assert(h:get{ proto = "tcp", src = f.src, dst = f.dst,
                                    sport = f.sport, dport = f.dport })
          assert.equal(f.id, got.id)
        end
      end
    end)
  end)

  describe("NAT", function()
    -- nft rules for locally generated traffic: DNAT in output, SNAT in postrouting to a
    -- second local address. fd07::3 is deprecated (preferred_lft 0) so that IPv6 source
    -- selection never picks it by itself, and the SNAT to it is a real translation.
    local RULES = [[
table ip nat {
  chain out {
    type nat hook output priority -100;
    ip daddr 10.7.0.99 tcp dport 80 dnat to 10.7.0.2:8080
    ip daddr 10.7.0.98 tcp dport 81 dnat to 10.7.0.2:8081
  }
  chain post {
    type nat hook postrouting priority 100;
    ip daddr 10.7.0.2 tcp dport 8081 snat to 10.7.0.3
    ip daddr 10.7.0.2 udp dport 5355 snat to 10.7.0.3
  }
}
table ip6 nat {
  chain out {
    type nat hook output priority -100;
    ip6 daddr fd07::99 tcp dport 80 dnat to [fd07::2]:8080
  }
  chain post {
    type nat hook postrouting priority 100;
    ip6 daddr fd07::2 udp dport 5355 snat to fd07::3
  }
}]]
    -- the SNAT targets, on ctl0 for the duration of each test
    local EXTRA_ADDRS = { "10.7.0.3/24", "fd07::3/64 nodad preferred_lft 0" }

    -- reply_src/reply_dst: where the answer comes from and goes to after translation
    local EXCHANGES = {
      { family = "ipv4", proto = "tcp", addr = "10.7.0.99", to_port = 80, port = 8080,
        dnat = true, snat = false, reply_src = "10.7.0.2", reply_dst = "10.7.0.1" },
      { family = "ipv4", proto = "tcp", addr = "10.7.0.98", to_port = 81, port = 8081,
        dnat = true, snat = true, reply_src = "10.7.0.2", reply_dst = "10.7.0.3" },
      { family = "ipv4", proto = "udp", addr = "10.7.0.2", to_port = 5355, port = 5355,
        dnat = false, snat = true, reply_src = "10.7.0.2", reply_dst = "10.7.0.3" },
      { family = "ipv4", proto = "tcp", addr = "10.7.0.2", to_port = 8082, port = 8082,
        dnat = false, snat = false, reply_src = "10.7.0.2", reply_dst = "10.7.0.1" },
      { family = "ipv6", proto = "tcp", addr = "fd07::99", to_port = 80, port = 8080,
        dnat = true, snat = false, reply_src = "fd07::2", reply_dst = "fd07::1" },
      { family = "ipv6", proto = "udp", addr = "fd07::2", to_port = 5355, port = 5355,
        dnat = false, snat = true, reply_src = "fd07::2", reply_dst = "fd07::3" },
    }

    -- our filter and the conntrack -L options that must select the same entries
    local FILTERS = {
      { filter = { dnat = true }, args = "--dst-nat" },
      { filter = { snat = true }, args = "--src-nat" },
      { filter = { reply_src = "10.7.0.2" }, args = "-r 10.7.0.2" },
      { filter = { reply_dst = "10.7.0.3" }, args = "-q 10.7.0.3" },
      { filter = { family = "ipv6", dnat = true }, args = "-f ipv6 --dst-nat" },
    }

    before_each(function()
      for _, addr in ipairs(EXTRA_ADDRS) do H.must("ip addr add " .. addr .. " dev ctl0") end
      H.nft(RULES)
    end)

    after_each(function()
      for _, addr in ipairs(EXTRA_ADDRS) do
        H.run("ip addr del " .. addr:match("^%S+") .. " dev ctl0")
      end
    end)

    --- Runs every exchange; returns, for each, { case =, flow = the entry that got the
    -- answer, what = a label for messages }.
    local function nat_exchanges()
      for _, case in ipairs(EXCHANGES) do exchange(case, peer) end
      local results = {}
      for i, case in ipairs(EXCHANGES) do
        results[i] = {
          case = case,
          flow = answered_flow(h, { family = case.family, proto = case.proto,
                                    dst = case.addr, dport = case.to_port }),
          what = ("%s %s to %s:%d"):format(case.family, case.proto, case.addr, case.to_port),
        }
      end
      return results
    end

    it("is reported as conntrack reports it", function()
      local results = nat_exchanges()
      local plain = oracle_by_id("")
      for _, r in ipairs(results) do
        local case, f, what = r.case, r.flow, r.what
        assert.equal(case.dnat, f.dnat, what .. ": dnat")
        assert.equal(case.snat, f.snat, what .. ": snat")
        local _, reply = line_tuples(assert(plain[f.id], what .. ": not listed by conntrack"))
        assert.same(reply, { src = f.reply_src, dst = f.reply_dst,
                             sport = f.reply_sport, dport = f.reply_dport }, what)
        assert.same({ src = case.reply_src, dst = case.reply_dst, sport = case.port },
                    { src = f.reply_src, dst = f.reply_dst, sport = f.reply_sport }, what)
      end

      -- the flags over the whole table, failed early attempts included
      local dnat, snat = {}, {}
      for f in h:dump() do
        if f.dnat then dnat[f.id] = true end
        if f.snat then snat[f.id] = true end
      end
      assert.same(oracle_ids("--dst-nat"), dnat)
      assert.same(oracle_ids("--src-nat"), snat)

      for _, case in ipairs(FILTERS) do
        local expected = oracle_ids(case.args)
        assert.is_not_nil(next(expected), case.args .. " lists nothing: a vacuous comparison")
        assert.same(expected, our_ids(h, case.filter), case.args)
      end
    end)

    -- -o save writes a NATed entry's reply addresses as its NAT targets (-g, -n): such
    -- lines are read in C too, and restoring them must do what conntrack's -R does.
    it("is saved with -L -o save in lines that -R restores as conntrack restores them",
       function()
      nat_exchanges()
      local file = os.tmpname()
      H.must("./ct-lua conntrack -L -o save >" .. file .. " 2>/dev/null")
      local nat_lines = 0
      for line in io.lines(file) do
        assert.is_not_nil(conntrack.save_command(line), line)
        if line:find(" %-[gn] ") then nat_lines = nat_lines + 1 end
      end
      assert.is_true(nat_lines >= 4, nat_lines .. " NATed lines")
      local function restored(who)   -- into the peer's table: status, messages, listing
        peer:exec(H.CONNTRACK .. " -F 2>/dev/null || true")
        local out = peer:exec("{ " .. who .. " -R " .. file .. " 2>&1; echo status $?; } | " ..
                              "sed 's/^/R /'; " .. H.CONNTRACK .. " -L -o save 2>/dev/null | " ..
                              "sed -E 's/-t [0-9]+ //' | sort")
        return out:gsub("ct%-lua ", "")
      end
      local theirs, ours = restored(H.CONNTRACK), restored("./ct-lua conntrack")
      os.remove(file)
      assert.equal(theirs, ours)
      -- (not two failures alike: conntrack restored the NATed entries)
      assert.matches("R status 0\n", theirs, 1, true)
      local _, restored_nat = theirs:gsub("\n%-A [^\n]* %-[gn] ", "")
      assert.is_true(restored_nat >= nat_lines, restored_nat .. " of " .. nat_lines .. " NATed")
    end)

    it("finds a NATed entry by its reply tuple", function()
      for _, r in ipairs(nat_exchanges()) do
        local f = r.flow
        local got, message = h:get{ proto = f.proto, reply_src = f.reply_src,
                                    reply_dst = f.reply_dst, reply_sport = f.reply_sport,
                                    reply_dport = f.reply_dport }
        assert(got, r.what .. ": " .. tostring(message))
        assert.equal(f.id, got.id, r.what)
      end
    end)
  end)

  describe("deleting a live flow", function()
    it("removes exactly that entry, once", function()
      exchange({ proto = "tcp", addr = "10.7.0.2", port = 8083 }, peer)
      exchange({ proto = "udp", addr = "10.7.0.2", port = 5356 }, peer)
      local f = answered_flow(h, { proto = "tcp", dport = 8083 })
      local bystander = answered_flow(h, { proto = "udp", dport = 5356 })
      assert.is_not_nil(oracle_by_id("")[f.id])

      assert.equal(1, h:delete(f))
      local listed = oracle_by_id("")
      assert.is_nil(listed[f.id])
      assert.is_not_nil(listed[bystander.id])

      local n, message, errno = h:delete(f)
      assert.is_nil(n)
      assert.equal("conntrack.delete: No such file or directory", message)
      assert.equal(2, errno)  -- ENOENT
    end)
  end)

  describe("a dump of live and created entries", function()
    local CREATED = 500
    -- shapes of created entries, taken in turn; i makes each tuple unique
    local SHAPES = {
      function(i)
        return { proto = "tcp", src = "10.9.0.1", dst = "10.9.1.1", sport = 10000 + i,
                 dport = 443, state = "ESTABLISHED", timeout = 300, mark = i }
      end,
      function(i)
        return { proto = "udp", src = "10.9.0.2", dst = "10.9.1.2", sport = 10000 + i,
                 dport = 53, timeout = 300 }
      end,
      function(i)
        return { proto = "tcp", src = "fd09::1", dst = "fd09::2", sport = 10000 + i,
                 dport = 80, state = "SYN_SENT", timeout = 300 }
      end,
    }

    it("returns exactly what conntrack -L returns, and count() is conntrack -C", function()
      exchange({ proto = "tcp", addr = "10.7.0.2", port = 8084 }, peer)
      exchange({ proto = "udp", addr = "fd07::2", port = 5357 }, peer)
      local live = #oracle("-L")
      assert.is_true(live >= 2)
      for i = 1, CREATED do
        assert(h:create(SHAPES[i % #SHAPES + 1](i)))
      end

      local ours = H.dump_lines(h)
      assert.equal(live + CREATED, #ours)
      assert.same(H.sorted(oracle("-L")), H.sorted(ours))
      assert.equal(tonumber(oracle("-C")[1]), (h:count()))
    end)
  end)
end)
