-- Random -U lines, side by side with /usr/sbin/conntrack, each run from the same table:
-- a filter (an address or prefix, and maybe a protocol, port and state) and a change (mark,
-- timeout or status). The exit status, the messages and the table each leaves must be the
-- same. What 1.4.7 prints is not compared: it shows other entries than it updated (README,
-- deviation 3). Lines always name a source (deviation 4), change either -m or -u (5), and
-- the table has no zones (15). The lines come from a fixed seed (UPDATE_LINES_SEED
-- replaces it, UPDATE_LINES_COUNT the number of lines).
--
-- tests/run gives this file its own network namespace: the table here is ours.

local H = require "helpers"
local random_lines = require "helpers.random_lines"

local SEED = tonumber(os.getenv("UPDATE_LINES_SEED")) or 20261127
local COUNT = tonumber(os.getenv("UPDATE_LINES_COUNT")) or 80

local TABLE = {
  "-p tcp -s 10.8.1.1 -d 10.8.2.1 --sport 1000 --dport 80 --state ESTABLISHED -u ASSURED -m 1",
  "-p tcp -s 10.8.1.2 -d 10.8.2.1 --sport 1001 --dport 443 --state TIME_WAIT -m 42",
  "-p tcp -s 10.8.1.3 -d 10.8.2.2 --sport 1003 --dport 80 --state ESTABLISHED --src-nat 10.8.9.1",
  "-p udp -s 10.8.1.1 -d 10.8.2.1 --sport 5353 --dport 53 -u SEEN_REPLY",
  "-p udp -s 10.8.1.4 -d 10.8.2.2 --sport 6000 --dport 53 --src-nat 10.8.9.1:7000",
  "-p icmp -s 10.8.1.1 -d 10.8.2.1 --icmp-type 8 --icmp-code 0 --icmp-id 5",
  "-p gre -s 10.8.1.1 -d 10.8.2.3 --srckey 1 --dstkey 2",
  "-p tcp -s 2001:db8:8::1 -d 2001:db8:8::2 --sport 2000 --dport 80 --state ESTABLISHED -m 1",
}

local function random_update(rand)
  local function maybe(p) return rand() < p end
  local function pick(list) return list[math.floor(rand() * #list) + 1] end
  local words = { "-U", "-s", pick({ "10.8.1.1", "10.8.1.2", "10.8.1.0/30", "10.8.0.0/16",
                                     "2001:db8:8::1" }) }
  local function add(...) for _, w in ipairs({ ... }) do words[#words + 1] = w end end
  if maybe(0.3) then add("-d", pick({ "10.8.2.1", "10.8.2.2" })) end
  if maybe(0.4) then
    local proto = pick({ "tcp", "udp", "icmp", "gre" })
    add("-p", proto)
    if (proto == "tcp" or proto == "udp") and maybe(0.4) then add("--dport", pick({ "80", "53", "443" })) end
    if proto == "tcp" and maybe(0.3) then add("--state", pick({ "ESTABLISHED", "TIME_WAIT" })) end
  end
  local r = rand()
  if r < 0.6 then
    add("-m", pick({ "7", "0", "0x10" }))
  elseif r < 0.8 then
    add("-t", "500")
  else
    add("-u", pick({ "ASSURED", "SEEN_REPLY" }))
  end
  if maybe(0.2) then add("-o", pick({ "extended", "xml", "save" })) end
  return words
end

local function make_table()
  H.reset()
  for _, line in ipairs(TABLE) do H.must(H.CONNTRACK .. " -I -t 3000 " .. line .. " 2>/dev/null") end
end

local function outcome(who, words)
  make_table()
  local _, status, err = H.run_words(who, words)
  return { status = status, stderr = err, table = H.sorted(H.conntrack("-L 2>/dev/null")) }
end

describe("random -U lines", function()
  teardown(function() H.reset() end)

  it("change what conntrack changes (seed " .. SEED .. ")", function()
    local outcomes = random_lines.side_by_side(SEED, COUNT, random_update, outcome)
    local changed = random_lines.count(outcomes, function(o) return o.status == 0 end)
    assert.is_true(changed > COUNT // 4, "only " .. changed .. " lines changed anything")
  end)
end)
