-- Random -I and -A command lines, side by side with /usr/sbin/conntrack: which options
-- are given, in which order, with which values, for every protocol handler. Each line
-- runs on an empty table in both programs; the exit status, the messages and the entry
-- made must be the same. The lines come from a fixed seed (CREATE_LINES_SEED replaces
-- it, CREATE_LINES_COUNT the number of lines), so a failure names a line that can be
-- run again by hand.
--
-- tests/run gives this file its own network namespace: the table here is ours.

local H = require "helpers"
local cli = require "conntrack.cli"

local SEED = tonumber(os.getenv("CREATE_LINES_SEED")) or 20261127
local COUNT = tonumber(os.getenv("CREATE_LINES_COUNT")) or 250

local function sink()
  local s = { parts = {} }
  function s:write(...)
    for _, v in ipairs({ ... }) do self.parts[#self.parts + 1] = v end
    return self
  end
  function s:flush() end
  function s:text() return table.concat(self.parts) end
  return s
end

-- The line's options: { option, value } pairs (value nil for none), shuffled later.
local function random_options(rand)
  local function maybe(p) return rand() < p end
  local function pick(list) return list[math.floor(rand() * #list) + 1] end
  local v6 = maybe(0.25)
  local addrs = v6 and { "2001:db8:7::1", "2001:db8:7::2", "2001:db8:7::3" }
                    or { "10.7.1.1", "10.7.1.2", "10.7.1.3" }
  local protos = v6 and { "tcp", "udp", "icmpv6", "gre", "sctp", "99" }
                     or { "tcp", "udp", "icmp", "gre", "sctp", "99" }
  local proto = pick(protos)
  local opts = { { maybe(0.8) and "-I" or "-A" }, { "-p", proto } }
  local function add(o, v) opts[#opts + 1] = { o, v } end
  for _, o in ipairs({ "-s", "-d", "-r", "-q" }) do
    if maybe(0.8) then add(o, pick(addrs)) end
  end
  if maybe(0.97) then add("-t", tostring(100 + math.floor(rand() * 100))) end
  if proto == "tcp" or proto == "udp" or proto == "sctp" then
    for _, o in ipairs({ "--sport", "--dport", "--reply-port-src", "--reply-port-dst" }) do
      if maybe(0.8) then add(o, pick({ "1", "2", "53", "8080" })) end
    end
  elseif proto == "gre" then
    for _, o in ipairs({ "--srckey", "--dstkey", "--reply-key-src", "--reply-key-dst" }) do
      if maybe(0.8) then add(o, pick({ "1", "2", "0x10" })) end
    end
  elseif proto == "icmp" or proto == "icmpv6" then
    local types = proto == "icmp" and { "8", "0", "13" } or { "128", "129" }
    if maybe(0.9) then add("--" .. proto .. "-type", pick(types)) end
    if maybe(0.9) then add("--" .. proto .. "-code", "0") end
    if maybe(0.5) then add("--" .. proto .. "-id", pick({ "5", "77" })) end
  end
  if (proto == "tcp" or proto == "sctp") and maybe(0.7) then
    add("--state", proto == "tcp" and pick({ "ESTABLISHED", "SYN_SENT", "TIME_WAIT" })
                                   or pick({ "ESTABLISHED", "COOKIE_WAIT" }))
  end
  -- -u or -m, not both: 1.4.7's -u overwrites the mark (README, deviation 5)
  if maybe(0.3) then
    add("-u", pick({ "ASSURED", "SEEN_REPLY", "SEEN_REPLY,ASSURED" }))
  elseif maybe(0.4) then
    add("-m", pick({ "1", "42" }))
  end
  if maybe(0.2) then add("-w", pick({ "1", "7" })) end
  if maybe(0.15) then add(pick({ "--src-nat", "--dst-nat" }), pick(addrs)) end
  -- the options after the command in a random order (order matters to conntrack)
  for i = #opts, 3, -1 do
    local j = 2 + math.floor(rand() * (i - 1))
    opts[i], opts[j] = opts[j], opts[i]
  end
  local words = {}
  for _, o in ipairs(opts) do
    words[#words + 1] = o[1]
    if o[2] then words[#words + 1] = o[2] end
  end
  return words
end

-- What running the words did: the status, the messages and the table afterwards.
local function outcome(who, words)
  H.run(H.CONNTRACK .. " -F")
  local status, err
  if who == "conntrack" then
    local quoted = {}
    for i, w in ipairs(words) do quoted[i] = H.quote(w) end
    local _
    _, status, err = H.run(H.CONNTRACK .. " " .. table.concat(quoted, " "))
  else
    local argv, errs = { [0] = "conntrack" }, sink()
    for i, w in ipairs(words) do argv[i] = w end
    status = cli.main(argv, sink(), errs)
    err = errs:text()
  end
  local listed = H.conntrack("-L -o extended 2>/dev/null")
  return { status = status, stderr = err, table = H.sorted(listed) }
end

describe("random -I and -A lines", function()
  it("make what conntrack makes, or fail as it does (seed " .. SEED .. ")", function()
    math.randomseed(SEED)
    local rand = math.random
    local made, failed = 0, 0
    for _ = 1, COUNT do
      local words = random_options(rand)
      local theirs = outcome("conntrack", words)
      local ours = outcome("ct-lua", words)
      assert.same(theirs, ours, "conntrack " .. table.concat(words, " "))
      if theirs.status == 0 then made = made + 1 else failed = failed + 1 end
    end
    H.run(H.CONNTRACK .. " -F")
    -- the mix must exercise both outcomes
    assert.is_true(made > COUNT // 10, "only " .. made .. " lines made an entry")
    assert.is_true(failed > COUNT // 10, "only " .. failed .. " lines failed")
  end)
end)
