--- Random command lines for the side-by-side specs: each generator takes a random
-- function (math.random) and returns the words of one conntrack command line;
-- side_by_side runs them through both programs.
local assert = require "luassert"

local M = {}

--- Seeds math.random with seed, makes count lines with gen and asserts that
-- outcome(who, words) is the same for "conntrack" and "ct-lua" (a failure names the
-- line). Returns conntrack's outcomes, for the checks that the mix covered what it should.
function M.side_by_side(seed, count, gen, outcome)
  math.randomseed(seed)
  local outcomes = {}
  for i = 1, count do
    local words = gen(math.random)
    local theirs = outcome("conntrack", words)
    assert.same(theirs, outcome("ct-lua", words), "conntrack " .. table.concat(words, " "))
    outcomes[i] = theirs
  end
  return outcomes
end

--- How many of the outcomes pred holds for.
function M.count(outcomes, pred)
  local n = 0
  for _, o in ipairs(outcomes) do
    if pred(o) then n = n + 1 end
  end
  return n
end

--- The words of opts, a list of { option, value } (value nil for none): the first two
-- (the command and -p) in place, the others in a random order (order matters to
-- conntrack).
function M.words(opts, rand)
  for i = #opts, 3, -1 do
    local j = 3 + math.floor(rand() * (i - 2))
    opts[i], opts[j] = opts[j], opts[i]
  end
  local words = {}
  for _, o in ipairs(opts) do
    words[#words + 1] = o[1]
    if o[2] then words[#words + 1] = o[2] end
  end
  return words
end

--- A -I or -A line: which options, in which order, with which values, for every protocol
-- handler; some make an entry, some fail.
function M.create(rand)
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
  return M.words(opts, rand)
end

return M
