-- Random -I, -G and -D expect lines, side by side with /usr/sbin/conntrack, on the masters
-- of real ftp control connections (tests/helpers/ftp.lua), whose helper lets the kernel
-- take expectations: the master, expected and mask tuples in every protocol, each now and
-- then left out or wrong, in a random order. Before each line one expectation is made on
-- the IPv4 master, for -G and -D to find and -I to replace. Compared are where each line
-- fails and with which message, its output and the expect table it leaves. The lines come
-- from a fixed seed (EXPECT_LINES_SEED replaces it, EXPECT_LINES_COUNT the number of lines).
--
-- tests/run gives this file its own network namespace: the table here is ours.

local H = require "helpers"
local ftp = require "helpers.ftp"
local random_lines = require "helpers.random_lines"

local SEED = tonumber(os.getenv("EXPECT_LINES_SEED")) or 20261128
local COUNT = tonumber(os.getenv("EXPECT_LINES_COUNT")) or 150

-- The ports of expected tuples. For tcp and sctp their high byte is the protocol's number:
-- conntrack 1.4.7 stores the high byte of the last one given as the expectation's
-- protocol (README, deviation 12), and these make that what -p says.
-- The first two are a line's usual source and destination, other than the fixture's.
local TUPLE_PORTS = { tcp = { "1700", "1791", "1536", "1600" }, sctp = { "33792", "33800" },
                      udp = { "0", "5000", "65535" } }

-- The expectation each line finds: from the IPv4 master, for 127.0.0.1:1536 -> 127.0.0.1:1600.
local FIXTURE = "-I expect -p tcp -s 127.0.0.1 -d 127.0.0.1 --sport 40021 --dport 21 " ..
                "--tuple-src 127.0.0.1 --tuple-dst 127.0.0.1 --tuple-port-src 1536 " ..
                "--tuple-port-dst 1600 --mask-src 255.255.255.255 --mask-dst 255.255.255.255 " ..
                "--mask-port-src 65535 --mask-port-dst 65535 -t 100"

local function random_expect(rand)
  local function maybe(p) return rand() < p end
  local function pick(list) return list[math.floor(rand() * #list) + 1] end
  local master = ftp.MASTERS[maybe(0.25) and 2 or 1]
  local v6 = master.family == "ipv6"
  local addrs = v6 and { "::1", "2001:db8::1", "::" } or { "127.0.0.1", "127.0.0.2", "0.0.0.0" }
  local masks = v6 and { "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff::", "::" }
                    or { "255.255.255.255", "255.255.255.0", "0.0.0.0" }
  local proto = maybe(0.7) and "tcp" or pick({ "udp", "icmp", "gre", "sctp" })
  local command = pick({ "-I", "-I", "-I", "-G", "-D" })
  local opts = { { "expect" }, { "-p", proto } }
  local function add(o, v) opts[#opts + 1] = { o, v } end
  -- now and then left out, now and then another value than the right one
  local function option(o, right, others)
    if maybe(0.98) then add(o, maybe(0.95) and tostring(right) or pick(others)) end
  end
  if command == "-I" then
    option("-s", master.src, addrs)
    option("-d", master.dst, addrs)
    local ports = TUPLE_PORTS[proto]
    if ports then
      option("--sport", master.sport, { "1", "21" })
      option("--dport", master.dport, { "40021", "0" })
    elseif proto == "gre" then
      option("--srckey", 1, { "2" })
      option("--dstkey", 1, { "2" })
    end
    if proto == "sctp" then
      option("--orig-vtag", 1, { "2" })
      option("--reply-vtag", 1, { "2" })
    end
    for _, o in ipairs({ "--tuple-src", "--tuple-dst" }) do option(o, master.src, addrs) end
    for _, o in ipairs({ "--mask-src", "--mask-dst" }) do option(o, masks[1], masks) end
    if ports then
      option("--tuple-port-src", ports[1], ports)
      option("--tuple-port-dst", ports[2], ports)
      option("--mask-port-src", 65535, { "0", "255" })
      option("--mask-port-dst", 65535, { "0", "255" })
    elseif proto == "gre" then
      for _, o in ipairs({ "--tuple-key-src", "--tuple-key-dst", "--mask-key-src",
                           "--mask-key-dst" }) do
        option(o, 1, { "2", "0" })
      end
    elseif proto == "icmp" then
      option("--icmp-type", 8, { "0", "3" })
      option("--icmp-code", 0, { "1" })
    end
    option("-t", 100, { "300", "30" })  -- (none that could expire between two listings)
    if maybe(0.1) then add("-u", pick({ "PERMANENT", "INACTIVE" })) end
  else
    -- -G and -D name the expected tuple: the fixture's, or another
    option("-s", "127.0.0.1", addrs)
    option("-d", "127.0.0.1", addrs)
    if TUPLE_PORTS[proto] then
      option("--sport", 1536, { "1537" })
      option("--dport", 1600, { "1601" })
      option("--reply-port-src", 0, { "1" })
      option("--reply-port-dst", 0, { "1" })
    end
  end
  if maybe(0.05) then add(pick({ "-f", "-m", "--reply-port-src" }), pick({ "ipv4", "ipv6", "1" })) end
  -- the command and the table name stay first; -p is shuffled with the rest
  local words = random_lines.words(opts, rand)
  table.insert(words, 1, command)
  return words
end

local SHOWN_NONE = "conntrack v1.4.7 (conntrack-tools): 0 expectations have been shown.\n"
local DELETED_ONE = "conntrack v1.4.7 (conntrack-tools): 1 expectations have been deleted.\n"

-- What the line did, and for conntrack what ct-lua must do instead: -D expect that deleted
-- says so and exits 0, where 1.4.7 says "0 expectations have been shown." and exits 1
-- (README, deviation 6).
local function outcome(who, words)
  H.must(H.CONNTRACK .. " -F expect 2>&1 && " .. H.CONNTRACK .. " " .. FIXTURE .. " 2>&1")
  local out, status, err = H.run_words(who, words)
  local expectations = H.listing(H.must(H.CONNTRACK .. " -L expect 2>/dev/null"))
  if who == "conntrack" and words[1] == "-D" and status == 1 and err == SHOWN_NONE and
     #expectations == 0 then
    status, err = 0, DELETED_ONE
  end
  return { status = status, stderr = err, stdout = H.listing(out), expect = expectations,
           command = words[1] }
end

describe("random expect lines", function()
  local env, dir

  setup(function()
    H.reset()
    dir = H.must("mktemp -d"):gsub("%s+$", "")
    env = ftp.start(dir)
  end)

  teardown(function()
    if env then env:stop() end
    if dir then H.run("rm -rf " .. H.quote(dir)) end
  end)

  it("do what conntrack does, on masters with the ftp helper (seed " .. SEED .. ")", function()
    local outcomes = random_lines.side_by_side(SEED, COUNT, random_expect, outcome)
    local function count(command, status)
      return random_lines.count(outcomes, function(o)
        return o.command == command and o.status == status
      end)
    end
    local created, refused, unparsed = count("-I", 0), count("-I", 1), count("-I", 2)
    local found = count("-G", 0) + count("-D", 0)
    local summary = ("-I: %d created, %d refused, %d unparsed; -G/-D: %d found")
                    :format(created, refused, unparsed, found)
    assert.is_true(created > COUNT // 10 and refused > COUNT // 20 and unparsed > COUNT // 10 and
                   found > COUNT // 20, summary)
  end)
end)
