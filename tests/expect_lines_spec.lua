-- Random -I, -G and -D expect lines, side by side with /usr/sbin/conntrack: the master,
-- expected and mask tuples in every protocol, given in part, in a random order. The master
-- here has no helper, so the kernel refuses every expectation (tests/cli/expect.cases has
-- the helper's own): what is compared is where each line fails and with which message,
-- its output and the expect table left. The lines come from a fixed seed
-- (EXPECT_LINES_SEED replaces it, EXPECT_LINES_COUNT the number of lines).
--
-- tests/run gives this file its own network namespace: the table here is ours.

local H = require "helpers"
local random_lines = require "helpers.random_lines"

local SEED = tonumber(os.getenv("EXPECT_LINES_SEED")) or 20261127
local COUNT = tonumber(os.getenv("EXPECT_LINES_COUNT")) or 150

local MASTER = "-I -t 3000 -p tcp -s 10.8.1.1 -d 10.8.2.1 --sport 40021 --dport 21 --state ESTABLISHED"

local function random_expect(rand)
  local function maybe(p) return rand() < p end
  local function pick(list) return list[math.floor(rand() * #list) + 1] end
  local v6 = maybe(0.2)
  local addrs = v6 and { "2001:db8:8::1", "2001:db8:8::2", "::" }
                    or { "10.8.1.1", "10.8.2.1", "10.8.1.9", "0.0.0.0" }
  local proto = pick({ "tcp", "udp", "icmp", "gre", "sctp" })
  local command = pick({ "-I", "-I", "-G", "-D" })
  local create = command == "-I"
  local opts = { { "expect" }, { "-p", proto } }
  local function add(o, v) opts[#opts + 1] = { o, v } end
  -- what the command takes, each now and then left out, and now and then one it refuses
  local addr_opts = create and { "-s", "-d", "--tuple-src", "--tuple-dst", "--mask-src",
                                 "--mask-dst" } or { "-s", "-d" }
  for _, o in ipairs(addr_opts) do
    if maybe(0.92) then add(o, pick(addrs)) end
  end
  if maybe(0.15) then add(pick({ "-r", "-q" }), pick(addrs)) end
  if proto == "tcp" or proto == "udp" or proto == "sctp" then
    local port_opts = create and { "--sport", "--dport", "--tuple-port-src", "--tuple-port-dst",
                                   "--mask-port-src", "--mask-port-dst" }
                               or { "--sport", "--dport", "--reply-port-src", "--reply-port-dst" }
    for _, o in ipairs(port_opts) do
      if maybe(0.92) then add(o, pick({ "21", "40021", "0", "65535", "10000" })) end
    end
  elseif proto == "gre" then
    local key_opts = create and { "--srckey", "--dstkey", "--tuple-key-src", "--tuple-key-dst",
                                  "--mask-key-src", "--mask-key-dst" }
                              or { "--srckey", "--dstkey", "--reply-key-src", "--reply-key-dst" }
    for _, o in ipairs(key_opts) do
      if maybe(0.92) then add(o, pick({ "1", "2" })) end
    end
  elseif proto == "icmp" then
    if maybe(0.7) then add("--icmp-type", "8") end
    if maybe(0.7) then add("--icmp-code", "0") end
  end
  if create and maybe(0.92) then add("-t", pick({ "100", "0" })) end
  if create and maybe(0.15) then add("-u", pick({ "PERMANENT", "INACTIVE" })) end
  if maybe(0.05) then add(pick({ "-f", "-m", "--reply-port-src" }), pick({ "ipv4", "1" })) end
  -- the command and the table name stay first; -p is shuffled with the rest
  local words = random_lines.words(opts, rand)
  table.insert(words, 1, command)
  return words
end

local function outcome(who, words)
  local out, status, err = H.run_words(who, words)
  local expectations = H.listing(H.must(H.CONNTRACK .. " -L expect 2>/dev/null"))
  H.run(H.CONNTRACK .. " -F expect")
  return { status = status, stderr = err, stdout = H.listing(out), expect = expectations }
end

describe("random expect lines", function()
  it("fail where conntrack fails, with its messages (seed " .. SEED .. ")", function()
    H.reset()
    H.must(H.CONNTRACK .. " " .. MASTER .. " 2>/dev/null")
    local outcomes = random_lines.side_by_side(SEED, COUNT, random_expect, outcome)
    local parse_errors = random_lines.count(outcomes, function(o) return o.status == 2 end)
    local kernel_errors = random_lines.count(outcomes, function(o) return o.status == 1 end)
    H.reset()
    assert.is_true(parse_errors > COUNT // 10 and kernel_errors > COUNT // 10,
                   parse_errors .. " parse errors, " .. kernel_errors .. " kernel errors")
  end)
end)
