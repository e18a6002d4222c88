-- Random -E filters, side by side with /usr/sbin/conntrack: both listen at once while a
-- burst of events goes by (entries of every kind created, some updated, all flushed), then
-- both are stopped with SIGINT. ct-lua filters in the kernel (a BPF program on the
-- socket) and in C; conntrack in userspace: the events each prints, its summary and its
-- exit status must be the same. Lines never use -m (README: an event without a mark is
-- mark 0 for ct-lua). The lines come from a fixed seed (EVENT_LINES_SEED replaces it,
-- EVENT_LINES_COUNT the number of lines).
--
-- tests/run gives this file its own network namespace: the table here is ours.

local H = require "helpers"

local SEED = tonumber(os.getenv("EVENT_LINES_SEED")) or 20261127
local COUNT = tonumber(os.getenv("EVENT_LINES_COUNT")) or 40

-- The burst: conntrack -R lines (made by conntrack, so every event has its portid).
local BURST = {
  "-I -t 300 -p tcp -s 10.8.1.1 -d 10.8.2.1 --sport 1000 --dport 80 --state ESTABLISHED -u ASSURED",
  "-I -t 300 -p tcp -s 10.8.1.2 -d 10.8.2.1 --sport 1001 --dport 443 --state TIME_WAIT -m 42",
  "-I -t 300 -p tcp -s 10.8.1.3 -d 10.8.2.2 --sport 1003 --dport 80 --state ESTABLISHED --src-nat 10.8.9.1",
  "-I -t 300 -p udp -s 10.8.1.1 -d 10.8.2.1 --sport 5353 --dport 53",
  "-I -t 300 -p udp -s 10.8.1.4 -d 10.8.2.2 --sport 6000 --dport 53 -w 7",
  "-I -t 300 -p udp -s 10.8.1.4 -d 10.8.2.3 --sport 6001 --dport 53 --dst-nat 10.8.9.2:5353",
  "-I -t 300 -p icmp -s 10.8.1.1 -d 10.8.2.1 --icmp-type 8 --icmp-code 0 --icmp-id 5",
  "-I -t 300 -p gre -s 10.8.1.1 -d 10.8.2.3 --srckey 1 --dstkey 2",
  "-I -t 300 -p tcp -s 2001:db8:8::1 -d 2001:db8:8::2 --sport 2000 --dport 80 --state ESTABLISHED",
  "-I -t 300 -p udp -s 2001:db8:8::1 -d 2001:db8:8::3 --sport 2001 --dport 53",
  "-U -s 10.8.1.1 -m 5",
  "-U -s 2001:db8:8::1 -m 6",
  "-D -p udp -s 10.8.1.4",
  "-F",
}

local function random_filter(rand)
  local function maybe(p) return rand() < p end
  local function pick(list) return list[math.floor(rand() * #list) + 1] end
  local v6 = maybe(0.2)
  local words = { "-E" }
  local function add(...) for _, w in ipairs({ ... }) do words[#words + 1] = w end end
  if maybe(0.3) then add("-s", pick(v6 and { "2001:db8:8::1", "2001:db8:8::/64" }
                                        or { "10.8.1.1", "10.8.1.4", "10.8.1.0/30" })) end
  if maybe(0.25) then add("-d", pick(v6 and { "2001:db8:8::2" } or { "10.8.2.1", "10.8.2.0/31" })) end
  if maybe(0.1) then add("-r", pick({ "10.8.2.1", "10.8.9.2" })) end
  if maybe(0.1) then add("-q", pick({ "10.8.1.1", "10.8.9.1" })) end
  if maybe(0.45) then
    local proto = pick({ "tcp", "udp", "icmp", "gre" })
    add("-p", proto)
    if (proto == "tcp" or proto == "udp") and maybe(0.4) then
      add(pick({ "--sport", "--dport", "--reply-port-src" }), pick({ "1000", "53", "80", "5353" }))
    end
  end
  if maybe(0.3) then add("-e", pick({ "NEW", "DESTROY", "UPDATE", "NEW,DESTROY", "ALL" })) end
  if maybe(0.15) then add(pick({ "-w", "--orig-zone" }), pick({ "0", "7" })) end
  if maybe(0.15) then add(pick({ "--src-nat", "--dst-nat", "--any-nat" })) end
  if maybe(0.1) then add("-f", v6 and "ipv6" or "ipv4") end
  if maybe(0.25) then add("-o", pick({ "extended", "xml", "id", "extended,id" })) end
  return words
end

-- Both listeners through one burst: what conntrack and ct-lua did, each its status,
-- stderr and the event lines (ids, timeouts and the requester's name normalised).
local function listen_both(words, burst_file)
  local dir = H.must("mktemp -d"):gsub("%s+$", "")
  local quoted = {}
  for i, w in ipairs(words) do quoted[i] = H.quote(w) end
  local args = table.concat(quoted, " ")
  local script = table.concat({
    H.CONNTRACK .. " " .. args .. " >" .. dir .. "/theirs.out 2>" .. dir .. "/theirs.err &",
    "t=$!",
    "./ct-lua conntrack " .. args .. " >" .. dir .. "/ours.out 2>" .. dir .. "/ours.err &",
    "o=$!",
    "sleep 0.3",
    H.CONNTRACK .. " -R " .. burst_file .. " >/dev/null 2>&1",
    "sleep 0.3",
    "kill -INT $t $o",
    "wait $t; echo $? >" .. dir .. "/theirs.status",
    "wait $o; echo $? >" .. dir .. "/ours.status",
  }, "\n")
  H.must(script)
  local result = {}
  for _, who in ipairs({ "theirs", "ours" }) do
    local lines = H.lines(H.file_text(dir .. "/" .. who .. ".out"))
    for i, line in ipairs(lines) do
      -- (progname= is there only while the requester lives: a race in both programs)
      lines[i] = H.normalize(line):gsub("id=%d+", "id=N"):gsub("<id>%d+</id>", "<id>N</id>")
                                  :gsub(" progname=%S*", "")
    end
    result[who] = { status = H.file_text(dir .. "/" .. who .. ".status"),
                    stderr = H.file_text(dir .. "/" .. who .. ".err"), events = lines }
  end
  H.run("rm -rf " .. H.quote(dir))
  return result.theirs, result.ours
end

describe("random -E filters", function()
  it("show the events conntrack shows (seed " .. SEED .. ")", function()
    H.reset()
    local burst = os.tmpname()
    H.write_file(burst, table.concat(BURST, "\n") .. "\n")
    math.randomseed(SEED)
    local shown = 0
    for _ = 1, COUNT do
      local words = random_filter(math.random)
      local theirs, ours = listen_both(words, burst)
      assert.same(theirs, ours, "conntrack " .. table.concat(words, " "))
      if #theirs.events > 0 then shown = shown + 1 end
    end
    os.remove(burst)
    assert.is_true(shown > COUNT // 4, "only " .. shown .. " filters showed events")
  end)
end)
