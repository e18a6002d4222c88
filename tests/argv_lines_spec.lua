-- Random command lines of conntrack's own words (commands, options, abbreviations, good
-- and bad values, stray words, missing arguments), side by side with /usr/sbin/conntrack
-- on the same small table: the exit status, stdout, stderr and the table each leaves must
-- be the same. Lines that reach a documented deviation (README: "where it differs") are
-- left out. The lines come from a fixed seed (ARGV_LINES_SEED replaces it,
-- ARGV_LINES_COUNT the number of lines).
--
-- tests/run gives this file its own network namespace: the table here is ours.

local H = require "helpers"

local SEED = tonumber(os.getenv("ARGV_LINES_SEED")) or 20261127
local COUNT = tonumber(os.getenv("ARGV_LINES_COUNT")) or 250
-- a command that waits (an abbreviation of --event, say) is ended after this
local TIMEOUT = "timeout -s INT 2 "

local FIXTURE = {
  "-I -p tcp -s 10.6.1.1 -d 10.6.1.2 --sport 1 --dport 2 --state ESTABLISHED -t 300 -m 3",
  "-I -p udp -s 10.6.1.3 -d 10.6.1.4 --sport 53 --dport 53 -t 300 -u ASSURED",
}

local COMMANDS = { "-L", "-G", "-D", "-I", "-U", "-F", "-C", "-S", "-A", "-V", "-h", "--dump",
                   "--get", "--delete", "--create", "--update", "--flush", "--count", "--stats",
                   "--version", "--help", "--add", "--du", "--cr", "-L", "-L", "-D", "-I" }
local OPTIONS = {
  { "-s", { "10.6.1.1", "10.6.1.0/24", "10.6.1.3", "fd00::1", "1.2.3.400", "x", "10.6.1.1/33" } },
  { "-d", { "10.6.1.2", "10.6.1.4", "10.6.0.0/16" } },
  { "-r", { "10.6.1.2", "10.6.1.4" } }, { "-q", { "10.6.1.1" } },
  { "--src", { "10.6.1.1" } }, { "--orig-src", { "10.6.1.3" } }, { "--reply-dst", { "10.6.1.1" } },
  { "-p", { "tcp", "udp", "icmp", "TCP", "6", "17", "gre", "bogus", "300", "ipv6-icmp" } },
  { "--proto", { "udp" } }, { "--pro", { "tcp" } },
  { "--sport", { "1", "53", "65536", "x", "-1" } }, { "--dport", { "2", "53" } },
  { "--orig-port-src", { "1" } }, { "--reply-port-dst", { "1" } },
  { "--state", { "ESTABLISHED", "established", "BOGUS", "LISTEN" } },
  { "-t", { "100", "x", "4294967296" } }, { "--timeout", { "50" } },
  { "-m", { "3", "0x3", "3/0xff", "x", "4294967296" } }, { "--mark", { "3" } },
  { "-u", { "ASSURED", "SEEN_REPLY", "BOGUS", "ASSURED,BOGUS", "!ASSURED" } },
  { "-f", { "ipv4", "ipv6", "ipv5" } }, { "--family", { "ipv4" } },
  { "-o", { "extended", "xml", "save", "id", "bogus", "xml,save" } },   -- (json: an extension)
  { "-w", { "1", "x" } }, { "--zone", { "0" } }, { "--orig-zone", { "0" } },
  { "--icmp-type", { "8" } }, { "--icmp-code", { "0" } },
  { "-n", {} }, { "-g", {} }, { "--src-nat", {} }, { "--dst-nat", {} },
  { "-e", { "NEW", "ALL", "BOGUS" } }, { "-z", {} }, { "-c", { "1" } },
}
local STRAY = { "--", "x", "-", "--bogus", "-Y", "!", "expect", "conntrack", "dying", "--src=10.6.1.1",
                "--sport=1", "-s10.6.1.1", "-ptcp", "-Lx" }

local function random_words(rand)
  local function pick(list) return list[math.floor(rand() * #list) + 1] end
  local words = {}
  if rand() < 0.9 then words[1] = pick(COMMANDS) end
  for _ = 1, math.floor(rand() * 6) do
    local r = rand()
    if r < 0.8 then
      local o = pick(OPTIONS)
      words[#words + 1] = o[1]
      -- now and then the argument is missing (at the end, or followed by an option)
      if #o[2] > 0 and rand() < 0.93 then words[#words + 1] = pick(o[2]) end
    else
      words[#words + 1] = pick(STRAY)
    end
  end
  return words
end

-- Whether the line reaches a documented deviation or a command that waits.
local function left_out(words)
  local line = " " .. table.concat(words, " ") .. " "
  local function has(pattern) return line:find(pattern) ~= nil end
  return has(" %-%-e[v]?[e]?[n]?[t]? ") or has(" %-E") or has("%-%-ev")   -- events wait
      or (has(" %-m ") or has(" %-%-mark ")) and has(" %-u ")            -- deviation 5
      or (has(" %-D ") or has(" %-%-delete ")) and has(" %-u ")           -- deviation 9
      or (has(" %-F ") or has(" %-%-flush ")) and (has(" %-f ") or has(" %-%-family "))  -- 7
      or has(" %-U ") or has(" %-%-update ")                              -- deviations 3, 4, 10
      or has(" %-j ")                                                      -- deviation 14
      or has(" expect ")                                                   -- deviation 6
end

local function run(program, words)
  local quoted = {}
  for i, w in ipairs(words) do quoted[i] = H.quote(w) end
  H.run(H.CONNTRACK .. " -F")
  for _, f in ipairs(FIXTURE) do H.must(H.CONNTRACK .. " " .. f .. " 2>/dev/null") end
  local out, status, err = H.run(TIMEOUT .. program .. " " .. table.concat(quoted, " ") .. " </dev/null")
  local listed = H.conntrack("-L 2>/dev/null")
  -- the help text names the program as it was called
  out = out:gsub("Usage: %S+", "Usage: PROGRAM")
  out = out:gsub("cpu=%d+[^\n]*", function(l) return (l:gsub("=%d+", "=N")) end)  -- -S counts
  out = out:gsub("id=%d+", "id=N"):gsub("<id>%d+</id>", "<id>N</id>")  -- the fixture is new each run
  return { status = status, stdout = H.sorted(H.lines(out)), stderr = err, table = H.sorted(listed) }
end

describe("random command lines", function()
  it("do what conntrack does (seed " .. SEED .. ")", function()
    math.randomseed(SEED)
    local ran = 0
    while ran < COUNT do
      local words = random_words(math.random)
      if not left_out(words) then
        ran = ran + 1
        local theirs = run(H.CONNTRACK, words)
        local ours = run("./ct-lua conntrack", words)
        assert.same(theirs, ours, "conntrack " .. table.concat(words, " "))
      end
    end
    H.run(H.CONNTRACK .. " -F")
  end)
end)
