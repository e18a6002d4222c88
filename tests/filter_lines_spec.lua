-- Random -L filters, side by side with /usr/sbin/conntrack on one table of varied
-- entries: addresses with and without prefixes, protocols and their ports, keys and ICMP
-- fields, marks with masks, status lists, zones, NAT, families and output formats, in
-- random combinations. ct-lua sends what it can of a filter to the kernel and checks the
-- rest in C; conntrack filters in userspace: the listings, messages and exit statuses
-- must be the same. The lines come from a fixed seed (FILTER_LINES_SEED replaces it,
-- FILTER_LINES_COUNT the number of lines).
--
-- tests/run gives this file its own network namespace: the table here is ours.

local H = require "helpers"
local random_lines = require "helpers.random_lines"

local SEED = tonumber(os.getenv("FILTER_LINES_SEED")) or 20261127
local COUNT = tonumber(os.getenv("FILTER_LINES_COUNT")) or 300

-- The table: conntrack -I lines over a few addresses, so that filters match some.
local TABLE = {
  "-p tcp -s 10.8.1.1 -d 10.8.2.1 --sport 1000 --dport 80 --state ESTABLISHED -u ASSURED -m 1",
  "-p tcp -s 10.8.1.2 -d 10.8.2.1 --sport 1001 --dport 443 --state TIME_WAIT -m 42",
  "-p tcp -s 10.8.1.1 -d 10.8.2.2 --sport 1002 --dport 22 --state SYN_SENT -w 7",
  "-p tcp -s 10.8.1.3 -d 10.8.2.2 --sport 1003 --dport 80 --state ESTABLISHED --src-nat 10.8.9.1",
  "-p tcp -s 10.8.1.3 -d 10.8.2.3 --sport 1004 --dport 8080 --state CLOSE --dst-nat 10.8.9.2:80",
  "-p udp -s 10.8.1.1 -d 10.8.2.1 --sport 5353 --dport 53 -u SEEN_REPLY",
  "-p udp -s 10.8.1.2 -d 10.8.2.3 --sport 5354 --dport 53 -m 7 -w 1",
  "-p udp -s 10.8.1.4 -d 10.8.2.1 --sport 123 --dport 123 --orig-zone 3",
  "-p udp -s 10.8.1.4 -d 10.8.2.2 --sport 6000 --dport 53 --src-nat 10.8.9.1:7000",
  "-p icmp -s 10.8.1.1 -d 10.8.2.1 --icmp-type 8 --icmp-code 0 --icmp-id 5",
  "-p icmp -s 10.8.1.2 -d 10.8.2.2 --icmp-type 13 --icmp-code 0 --icmp-id 6 -m 1",
  "-p gre -s 10.8.1.1 -d 10.8.2.3 --srckey 1 --dstkey 2",
  "-p sctp -s 10.8.1.2 -d 10.8.2.1 --sport 3868 --dport 3868 --state ESTABLISHED --orig-vtag 1 --reply-vtag 2",
  "-p 99 -s 10.8.1.3 -d 10.8.2.1",
  "-p tcp -s 2001:db8:8::1 -d 2001:db8:8::2 --sport 2000 --dport 80 --state ESTABLISHED -m 1",
  "-p udp -s 2001:db8:8::1 -d 2001:db8:8::3 --sport 2001 --dport 53 -w 7",
  "-p icmpv6 -s 2001:db8:8::2 -d 2001:db8:8::3 --icmpv6-type 128 --icmpv6-code 0 --icmpv6-id 9",
}

-- The words of a random filter after command (-L or -D).
local function random_filter(rand, command)
  local function maybe(p) return rand() < p end
  local function pick(list) return list[math.floor(rand() * #list) + 1] end
  local v6 = maybe(0.2)
  local addrs = v6 and { "2001:db8:8::1", "2001:db8:8::2", "2001:db8:8::3", "2001:db8:8::/64" }
                    or { "10.8.1.1", "10.8.1.2", "10.8.2.1", "10.8.2.2", "10.8.9.1" }
  local words = { command }
  local function add(...) for _, w in ipairs({ ... }) do words[#words + 1] = w end end
  if maybe(0.35) then add("-s", pick(v6 and addrs or { "10.8.1.1", "10.8.1.0/30", "10.8.0.0/16" })) end
  if maybe(0.3) then add("-d", pick(v6 and addrs or { "10.8.2.1", "10.8.2.0/31", "10.8.2.2" })) end
  if maybe(0.15) then add("-r", pick(addrs):gsub("/.*", "")) end
  if maybe(0.15) then add("-q", pick(addrs):gsub("/.*", "")) end
  if maybe(0.5) then
    local proto = pick(v6 and { "tcp", "udp", "icmpv6" } or { "tcp", "udp", "icmp", "gre", "sctp", "99" })
    add("-p", proto)
    if proto == "tcp" or proto == "udp" or proto == "sctp" then
      if maybe(0.4) then add("--sport", pick({ "1000", "5353", "2000", "3868" })) end
      if maybe(0.4) then add("--dport", pick({ "80", "53", "443", "3868" })) end
      if maybe(0.15) then add("--reply-port-src", pick({ "80", "53", "7000" })) end
      if proto == "tcp" and maybe(0.3) then add("--state", pick({ "ESTABLISHED", "TIME_WAIT", "CLOSE" })) end
    elseif proto == "icmp" or proto == "icmpv6" then
      if maybe(0.4) then add("--" .. proto .. "-type", pick({ "8", "13", "128" })) end
      if maybe(0.3) then add("--" .. proto .. "-id", pick({ "5", "6", "9" })) end
    elseif proto == "gre" then
      if maybe(0.4) then add("--srckey", pick({ "1", "2" })) end
    end
  end
  -- -u or -m, not both (README, deviation 5); no -u with -D (deviation 9)
  if command == "-L" and maybe(0.2) then
    add("-u", pick({ "ASSURED", "SEEN_REPLY", "UNSET", "SEEN_REPLY,ASSURED" }))
  elseif maybe(0.25) then
    add("-m", pick({ "1", "42", "7", "0", "1/1", "40/0xfff0" }))
  end
  if maybe(0.2) then add(pick({ "-w", "--orig-zone", "--reply-zone" }), pick({ "0", "1", "3", "7" })) end
  -- --any-nat with an address only alone among the comparisons (README, deviation 14)
  if #words == 1 and maybe(0.1) then
    add("--any-nat", "10.8.9.1")
  elseif maybe(0.15) then
    add(pick({ "--src-nat", "--dst-nat", "--any-nat" }))
  end
  if maybe(0.15) then add("-f", v6 and "ipv6" or "ipv4") end
  if maybe(0.25) then add("-o", pick({ "extended", "xml", "save", "id", "extended,id" })) end
  return words
end

-- What running the words printed: status, messages, lines (sorted, normalised).
local function outcome(who, words)
  local out, status, err = H.run_words(who, words)
  return { status = status, stderr = err, stdout = H.listing(out) }
end

local function make_table()
  H.reset()
  for _, line in ipairs(TABLE) do H.must(H.CONNTRACK .. " -I -t 3000 " .. line .. " 2>/dev/null") end
end

-- The table as sorted, normalised lines.
local function table_now()
  return H.sorted(H.conntrack("-L 2>/dev/null"))
end

describe("random -L filters", function()
  setup(make_table)
  teardown(function() H.reset() end)

  it("list what conntrack lists (seed " .. SEED .. ")", function()
    local outcomes = random_lines.side_by_side(SEED, COUNT,
                                               function(rand) return random_filter(rand, "-L") end,
                                               outcome)
    local listed = random_lines.count(outcomes,
                                      function(o) return o.status == 0 and #o.stdout > 0 end)
    assert.is_true(listed > COUNT // 5, "only " .. listed .. " filters listed anything")
  end)
end)

describe("random -D filters", function()
  teardown(function() H.reset() end)

  it("delete what conntrack deletes (seed " .. SEED .. ")", function()
    -- each line on a fresh table, which is compared afterwards
    local function delete_outcome(who, words)
      make_table()
      local o = outcome(who, words)
      o.table = table_now()
      return o
    end
    local outcomes = random_lines.side_by_side(SEED, COUNT // 3,
                                               function(rand) return random_filter(rand, "-D") end,
                                               delete_outcome)
    local deleted = random_lines.count(outcomes, function(o) return #o.table < #TABLE end)
    assert.is_true(deleted > COUNT // 15, "only " .. deleted .. " filters deleted anything")
  end)
end)
