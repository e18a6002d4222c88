-- Random -G lines, side by side with /usr/sbin/conntrack on one table: the tuple of an
-- entry as it is, reversed (the kernel finds an entry by either tuple, conntrack shows it
-- only by its original one), with a part changed or left out, with or without reply
-- parts, zones, --state and output formats, the options in a random order. The lines
-- come from a fixed seed (GET_LINES_SEED replaces it, GET_LINES_COUNT the number).
--
-- tests/run gives this file its own network namespace: the table here is ours.

local H = require "helpers"
local random_lines = require "helpers.random_lines"

local SEED = tonumber(os.getenv("GET_LINES_SEED")) or 20261127
local COUNT = tonumber(os.getenv("GET_LINES_COUNT")) or 300

-- The entries: proto, the original tuple's addresses and ids (ports, keys or ICMP), and
-- the conntrack -I options that make them.
local ENTRIES = {
  { proto = "tcp", src = "10.8.1.1", dst = "10.8.2.1", ids = { "--sport", "1000", "--dport", "80" },
    rev = { "--sport", "80", "--dport", "1000" }, extra = "--state ESTABLISHED" },
  { proto = "tcp", src = "10.8.1.1", dst = "10.8.2.1", ids = { "--sport", "1000", "--dport", "80" },
    rev = { "--sport", "80", "--dport", "1000" }, extra = "--state ESTABLISHED -w 7" },
  { proto = "udp", src = "10.8.1.2", dst = "10.8.2.2", ids = { "--sport", "53", "--dport", "53" },
    rev = { "--sport", "53", "--dport", "53" } },
  { proto = "udp", src = "10.8.1.4", dst = "10.8.2.2", ids = { "--sport", "6000", "--dport", "53" },
    rev = { "--sport", "53", "--dport", "6000" }, extra = "--src-nat 10.8.9.1:7000" },
  { proto = "icmp", src = "10.8.1.1", dst = "10.8.2.1",
    ids = { "--icmp-type", "8", "--icmp-code", "0", "--icmp-id", "5" },
    rev = { "--icmp-type", "0", "--icmp-code", "0", "--icmp-id", "5" } },
  { proto = "gre", src = "10.8.1.1", dst = "10.8.2.1", ids = { "--srckey", "1", "--dstkey", "2" },
    rev = { "--srckey", "2", "--dstkey", "1" } },
  { proto = "99", src = "10.8.1.1", dst = "10.8.2.1", ids = {}, rev = {} },
  { proto = "tcp", src = "2001:db8:8::1", dst = "2001:db8:8::2",
    ids = { "--sport", "2000", "--dport", "80" }, rev = { "--sport", "80", "--dport", "2000" },
    extra = "--state ESTABLISHED" },
  { proto = "icmpv6", src = "2001:db8:8::1", dst = "2001:db8:8::2",
    ids = { "--icmpv6-type", "128", "--icmpv6-code", "0", "--icmpv6-id", "9" },
    rev = { "--icmpv6-type", "129", "--icmpv6-code", "0", "--icmpv6-id", "9" } },
}

local function create_args(e)
  return table.concat({ "-I -t 3000 -p", e.proto, "-s", e.src, "-d", e.dst,
                        table.concat(e.ids, " "), e.extra or "" }, " ")
end

local function random_get(rand)
  local function maybe(p) return rand() < p end
  local function pick(list) return list[math.floor(rand() * #list) + 1] end
  local e = pick(ENTRIES)
  local reversed = maybe(0.2)
  local src, dst = e.src, e.dst
  local ids = reversed and e.rev or e.ids
  if reversed then src, dst = dst, src end
  local opts = { { "-G" }, { "-p", e.proto } }
  local function add(o, v) opts[#opts + 1] = { o, v } end
  -- an address or an id changed or left out, now and then
  if not maybe(0.1) then add("-s", maybe(0.1) and "10.8.3.3" or src) end
  if not maybe(0.1) then add("-d", dst) end
  for i = 1, #ids, 2 do
    if not maybe(0.08) then add(ids[i], maybe(0.08) and "4242" or ids[i + 1]) end
  end
  -- reply parts: reply ports only with a reply address (README: deviation 17)
  local reply_addr = false
  if maybe(0.2) then add("-r", maybe(0.8) and dst or src); reply_addr = true end
  if maybe(0.2) then add("-q", maybe(0.8) and src or dst); reply_addr = true end
  if reply_addr and (e.proto == "tcp" or e.proto == "udp") and maybe(0.4) then
    add(pick({ "--reply-port-src", "--reply-port-dst" }), pick({ "80", "1000", "53", "9" }))
  end
  if e.proto == "tcp" and maybe(0.15) then add("--state", pick({ "ESTABLISHED", "CLOSE" })) end
  if maybe(0.2) then add(pick({ "-w", "--orig-zone", "--reply-zone" }), pick({ "0", "7" })) end
  if maybe(0.25) then add("-o", pick({ "extended", "xml", "save", "id" })) end
  return random_lines.words(opts, rand)
end

local function outcome(who, words)
  local out, status, err = H.run_words(who, words)
  return { status = status, stderr = err, stdout = H.listing(out) }
end

describe("random -G lines", function()
  setup(function()
    H.reset()
    for _, e in ipairs(ENTRIES) do H.must(H.CONNTRACK .. " " .. create_args(e) .. " 2>/dev/null") end
  end)

  teardown(function() H.reset() end)

  it("get what conntrack gets, or fail as it does (seed " .. SEED .. ")", function()
    local outcomes = random_lines.side_by_side(SEED, COUNT, random_get, outcome)
    local shown = random_lines.count(outcomes, function(o) return #o.stdout > 0 end)
    local failed = #outcomes - shown
    assert.is_true(shown > COUNT // 10, "only " .. shown .. " lines showed an entry")
    assert.is_true(failed > COUNT // 10, "only " .. failed .. " lines showed none")
  end)
end)
