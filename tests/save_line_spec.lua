-- Lines of conntrack's save format, which the library reads in C (conntrack.save_command,
-- h:create of a line) and `ct-lua conntrack -R` hands over without parsing them in Lua.
-- Such a line must mean what the CLI's parser and create.lua make of it, which the
-- side-by-side specs (create_lines_spec, load_spec) hold to conntrack's meaning. Random
-- save lines, most of them then changed in small ways: a line the C reader takes must
-- parse in Lua to the same command, and h:create of the line must make the entry that
-- h:create of create.create_spec's spec makes (every field, TCP window flags included);
-- a line the Lua parser or create.lua refuses must be declined. (SAVE_LINES_SEED replaces
-- the seed, SAVE_LINES_COUNT the number of lines.)
--
-- tests/run gives this file its own network namespace: the table here is ours.
local H = require "helpers"
local conntrack = require "conntrack"
local parse = require "conntrack.cli.parse"
local create = require "conntrack.cli.create"

local SEED = tonumber(os.getenv("SAVE_LINES_SEED")) or 20261128
local COUNT = tonumber(os.getenv("SAVE_LINES_COUNT")) or 1500

local function pick(rand, list) return list[math.floor(rand() * #list) + 1] end

local ADDRS = {
  ipv4 = { "10.9.0.1", "10.9.0.2", "192.0.2.77", "203.0.113.5" },
  ipv6 = { "2001:db8:9::1", "2001:db8:9::2", "fd00::42", "::ffff:10.9.0.3" },
}
local PROTOS = { ipv4 = { "tcp", "udp", "udplite", "sctp", "gre", "icmp" },
                 ipv6 = { "tcp", "udp", "udplite", "sctp", "gre", "icmpv6" } }
local TCP_STATES = { "NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
                     "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2" }
local SCTP_STATES = { "CLOSED", "COOKIE_WAIT", "COOKIE_ECHOED", "ESTABLISHED", "SHUTDOWN_SENT",
                      "SHUTDOWN_RECD", "SHUTDOWN_ACK_SENT" }
local STATUS = { "ASSURED", "SEEN_REPLY", "UNSET", "FIXED_TIMEOUT", "EXPECTED", "OFFLOAD",
                 "HW_OFFLOAD" }

local function number(rand, max)
  local r = rand()
  if r < 0.1 then return "0" end
  if r < 0.2 then return tostring(max) end
  return tostring(math.floor(rand() * max))
end

-- The words of a line as conntrack -L -o save prints it (-A) or as -R files hold it (-I).
local function save_words(rand)
  local family = rand() < 0.3 and "ipv6" or "ipv4"
  local addrs = ADDRS[family]
  local proto = pick(rand, PROTOS[family])
  -- (not -t 0: such an entry may expire before it is read)
  local w = { rand() < 0.5 and "-I" or "-A", "-t", tostring(1 + math.floor(rand() * 4294967294)) }
  local function add(...) for _, x in ipairs({ ... }) do w[#w + 1] = x end end
  if rand() < 0.8 then
    local names = {}
    for i = 1, 1 + math.floor(rand() * 3) do names[i] = pick(rand, STATUS) end
    add("-u", table.concat(names, ","))
  end
  if rand() < 0.2 then add("-w", number(rand, 65535)) end
  if rand() < 0.1 then add("--orig-zone", number(rand, 65535)) end
  if rand() < 0.1 then add("--reply-zone", number(rand, 65535)) end
  -- (-o save writes a NATed entry's reply addresses as the NAT targets: -g, -n)
  add("-s", pick(rand, addrs), "-d", pick(rand, addrs),
      rand() < 0.2 and "-g" or "-r", pick(rand, addrs),
      rand() < 0.2 and "-n" or "-q", pick(rand, addrs), "-p", proto)
  if proto == "gre" then
    add("--srckey", number(rand, 65535), "--dstkey", number(rand, 65535),
        "--reply-key-src", number(rand, 65535), "--reply-key-dst", number(rand, 65535))
  elseif proto == "icmp" or proto == "icmpv6" then
    add("--" .. proto .. "-type", pick(rand, { "8", "0", "128", "129", "13", "3" }),
        "--" .. proto .. "-code", number(rand, 255), "--" .. proto .. "-id", number(rand, 65535))
  else
    add("--sport", number(rand, 65535), "--dport", number(rand, 65535),
        "--reply-port-src", number(rand, 65535), "--reply-port-dst", number(rand, 65535))
    if proto == "tcp" then add("--state", pick(rand, TCP_STATES)) end
    if proto == "sctp" then
      add("--state", pick(rand, SCTP_STATES), "--orig-vtag", number(rand, 4294967295),
          "--reply-vtag", number(rand, 4294967295))
    end
  end
  return w
end

-- Small changes, most of which leave the grammar (some of which conntrack still takes).
local BAD_NUMBERS = { "010", "0x10", "-1", "+5", "65536", "256", "4294967296", "99999999999",
                      "1e3", "abc", "" }
local ODD_WORDS = { "-c", "7", "-m", "3", "-f", "ipv4", "-g", "--label-add", "x", "-u",
                    "SRC_NAT", "UNREPLIED", "ASS", "!ASSURED", "assured", "ASSURED,",
                    "LISTEN", "HEARTBEAT_SENT", "established", "TCP", "6", "dccp", "conntrack",
                    "10.9.0.1/24", "10.9", "010.9.0.1", "-U", "--create", "--netns", "'x'",
                    '"x"', "10.9.0.1\r" }
-- Values that only some fields take, or that conntrack reads otherwise than as decimals,
-- by the option they replace the value of.
local ODD_VALUES = {
  number = { "010", "0010", "08", "0x1f", "-1", "65536", "256", "4294967296", "" },
  ["--state"] = { "LISTEN", "HEARTBEAT_SENT", "HEARTBEAT_ACKED", "established", "ESTAB", "NONE",
                  "CLOSED", "SYN_SENT2", "OPEN" },
  ["-u"] = { "ASS", "SRC_NAT", "DST_NAT", "UNREPLIED", "ASSURED,,SEEN_REPLY", "assured",
             "ASSURED,!SEEN_REPLY", "CONFIRMED" },
}
-- Replaces the value of a random option (one of names, if given) with an odd one.
local function odd_value(w, rand, names)
  local at = {}
  for i = 1, #w - 1 do
    if w[i]:find("^%-") and not w[i + 1]:find("^%-") and (not names or names[w[i]]) then
      at[#at + 1] = i
    end
  end
  if #at == 0 then return end
  local i = pick(rand, at)
  w[i + 1] = pick(rand, ODD_VALUES[w[i]] or ODD_VALUES.number)
end
local NAMED = { ["--state"] = true, ["-u"] = true }
local function odd_name(w, rand) odd_value(w, rand, NAMED) end
local CHANGES = {
  odd_value, odd_value, odd_name, odd_name,
  function(w, rand)   -- a status list too long for -R (1031 bytes), or just short (1023)
    local names = {}
    for i = 1, rand() < 0.5 and 129 or 128 do names[i] = "ASSURED" end
    local at = 4
    while w[at] and w[at] ~= "-u" do at = at + 1 end
    if not w[at] then
      at = 4
      table.insert(w, at, "-u")
      table.insert(w, at + 1, "")
    end
    w[at + 1] = table.concat(names, ",")
  end,
  function(w, rand) w[math.floor(rand() * #w) + 1] = pick(rand, BAD_NUMBERS) end,
  function(w, rand) w[math.floor(rand() * #w) + 1] = pick(rand, ODD_WORDS) end,
  function(w, rand) table.insert(w, math.floor(rand() * #w) + 2, pick(rand, ODD_WORDS)) end,
  function(w, rand) table.remove(w, math.floor(rand() * #w) + 1) end,
  function(w, rand)
    local i = math.floor(rand() * (#w - 1)) + 1
    w[i], w[i + 1] = w[i + 1], w[i]
  end,
  function(w, rand)   -- an address of the other family
    local i = math.floor(rand() * #w) + 1
    if w[i]:find("%.") then w[i] = "2001:db8:9::7" else w[i] = "10.9.0.9" end
  end,
}

local SEPARATORS = { " ", " ", " ", "  ", "\t", " \t " }
-- The line of the words: separators, and sometimes trailing blanks or a newline, or an
-- end that leaves the grammar (a carriage return, two newlines; -R never reads the
-- latter). Returns the line and whether its end is in the grammar.
local function line_of(w, rand)
  local parts = {}
  for i, word in ipairs(w) do
    parts[#parts + 1] = word
    if i < #w then parts[#parts + 1] = rand() < 0.1 and pick(rand, SEPARATORS) or " " end
  end
  local line = table.concat(parts)
  local r = rand()
  if r < 0.2 then return line .. "\n", true end
  if r < 0.25 then return line .. " \t", true end
  if r < 0.27 then return line .. "\r\n", false end
  if r < 0.29 then return line .. "\n\n", false end
  return line, true
end

-- What the CLI makes of line: its command, create.create_spec's spec and the warnings
-- its parse printed, or nil when the parse or the spec fails. (Words split as -R splits
-- a line without quotes, which refuses a word of 1024 bytes or more.)
local function cli_spec(line)
  local words, n = { [0] = "conntrack" }, 0
  for word in line:gmatch("[^ \t\n]+") do
    if #word >= 1024 then return nil end
    n = n + 1
    words[n] = word
  end
  local ctx = { out = H.sink(), err = H.sink() }
  local ok, cmd = pcall(parse.parse, ctx, words, n + 1)
  if not ok or (cmd.command ~= "CT_CREATE" and cmd.command ~= "CT_ADD") then return nil end
  local made, spec = pcall(create.create_spec, cmd, cmd.command)
  if not made then return nil end
  return cmd.command, spec, ctx.err:text()
end

-- The keys of a create spec that name its entry (h:get's tuple).
local TUPLE_KEYS = { "proto", "src", "dst", "sport", "dport", "icmp_type", "icmp_code",
                     "icmp_id", "srckey", "dstkey", "zone", "orig_zone" }

-- What h:create(spec) makes: its result and the entry of tuple, less what differs between
-- two creates of one entry; the entry is deleted again. (A get and a delete, not a dump
-- and a flush, which walk the whole hash table.)
local function made(h, spec, tuple)
  local ok, _, errno = h:create(spec)
  local entry
  if ok then
    local f = assert(h:get(tuple))
    entry = f:totable()
    entry.timeout, entry.id, entry.use = nil, nil, nil
    assert(h:delete(f))
  end
  return { ok = ok == true, errno = errno, entry = entry }
end

local function tuple_of(spec)
  local t = {}
  for _, k in ipairs(TUPLE_KEYS) do t[k] = spec[k] end
  return t
end

local COMMANDS = { ["-I"] = "CT_CREATE", ["-A"] = "CT_ADD" }

describe("lines of conntrack's save format", function()
  it("make in C what the CLI's parser makes of them, or are declined (seed " .. SEED .. ")",
     function()
    local h = H.open()
    assert(h:flush())
    math.randomseed(SEED)
    local rand = math.random
    local taken, declined, refused, created = 0, 0, 0, 0
    for _ = 1, COUNT do
      local words = save_words(rand)
      local changed = rand() < 0.6
      if changed then
        for _ = 1, rand() < 0.7 and 1 or 2 do pick(rand, CHANGES)(words, rand) end
      end
      local line, good_end = line_of(words, rand)
      local command = conntrack.save_command(line)
      local cli_command, spec, warnings = cli_spec(line)
      if not changed and good_end then
        assert.is_not_nil(command, "a save line declined: " .. line)
      end
      if command then
        taken = taken + 1
        assert.equal(cli_command, COMMANDS[command], "the CLI's command of: " .. line)
        assert.equal("", warnings, "the CLI's warnings about: " .. line)
        local tuple = tuple_of(spec)
        local from_line = made(h, line, tuple)
        assert.same(made(h, spec, tuple), from_line, "what h:create makes of: " .. line)
        if from_line.ok then created = created + 1 end
      else
        declined = declined + 1
        if not cli_command then refused = refused + 1 end
      end
    end
    -- the mix must cover both sides, and entries the kernel makes
    assert.is_true(taken > COUNT / 3, taken .. " lines taken")
    assert.is_true(declined > COUNT / 5, declined .. " lines declined")
    assert.is_true(refused > COUNT / 10, refused .. " declined lines the CLI refuses")
    assert.is_true(created > COUNT / 4, created .. " entries created")
  end)

  it("are taken by h:create in lists and one at a time, with the CLI's spec", function()
    local h = H.open()
    assert(h:flush())
    local lines = {
      "-A -t 100 -u SEEN_REPLY,ASSURED -s 10.9.1.1 -d 10.9.1.2 -r 10.9.1.2 -q 10.9.1.1 " ..
        "-p tcp --sport 40000 --dport 443 --reply-port-src 443 --reply-port-dst 40000 " ..
        "--state TIME_WAIT\n",
      "-I -t 200 -w 7 -s 2001:db8:9::1 -d 2001:db8:9::2 -r 2001:db8:9::2 -q 2001:db8:9::1 " ..
        "-p sctp --sport 1 --dport 2 --reply-port-src 2 --reply-port-dst 1 --state ESTABLISHED " ..
        "--orig-vtag 16909060 --reply-vtag 4294967295",
    }
    assert.equal(2, h:create(lines))
    local tcp = h:get({ proto = "tcp", src = "10.9.1.1", dst = "10.9.1.2", sport = 40000,
                        dport = 443 })
    assert.same({ BE_LIBERAL = true, SACK_PERM = true, CLOSE_INIT = true }, tcp.tcp_flags)
    assert.same({ ASSURED = true, SEEN_REPLY = true, CONFIRMED = true }, tcp.status)
    local sctp = h:get({ proto = "sctp", src = "2001:db8:9::1", dst = "2001:db8:9::2", sport = 1,
                         dport = 2, zone = 7 })
    assert.equal(0x04030201, sctp.vtag)      -- (the tag as given, byte-swapped)
    assert.equal(0xffffffff, sctp.reply_vtag)
    assert(h:flush())
    assert.is_true(h:create(lines[2]))
    local ok, msg, errno = h:create(lines[2])
    assert.is_nil(ok)
    assert.equal(17, errno, msg)
    assert(h:flush())
  end)

  it("are found in a text by save_lines as save_command finds them one by one", function()
    math.randomseed(SEED + 1)
    local rand = math.random
    for _ = 1, 200 do
      local lines = {}
      for i = 1, 1 + math.floor(rand() * 12) do
        local words = save_words(rand)
        if rand() < 0.15 then pick(rand, CHANGES)(words, rand) end
        lines[i] = line_of(words, rand):gsub("\n*$", "") .. (rand() < 0.05 and "" or "\n")
      end
      local text = table.concat(lines)
      local init = rand() < 0.3 and #lines[1] + 1 or 1
      local count, at = 0, init
      for i = init == 1 and 1 or 2, #lines do
        local line = lines[i]
        if line:sub(-1) ~= "\n" or not conntrack.save_command(line) then break end
        count, at = count + 1, at + #line
      end
      assert.same({ count, at }, { conntrack.save_lines(text, init) }, text)
    end
  end)

  it("are created from a text by h:restore, with failures named by line number", function()
    local h = H.open()
    assert(h:flush())
    local line = function(i, command)
      return string.format("%s -t 100 -u ASSURED -s 10.9.2.%d -d 10.9.3.1 -r 10.9.3.1 " ..
                           "-q 10.9.2.%d -p tcp --sport 999 --dport 80 --reply-port-src 80 " ..
                           "--reply-port-dst 999 --state ESTABLISHED", command, i, i)
    end
    local text = { "# made by hand", "", "   " }
    for i = 1, 150 do text[#text + 1] = line(i, i % 2 == 0 and "-A" or "-I") end
    assert.equal(150, h:restore(table.concat(text, "\n") .. "\n"))
    local from_restore = {}
    for f in h:dump() do from_restore[#from_restore + 1] = f:format() end
    assert(h:flush())
    local lines = {}
    for i = 4, #text do lines[#lines + 1] = text[i] end
    assert.equal(150, h:create(lines))
    local from_create = {}
    for f in h:dump() do from_create[#from_create + 1] = f:format() end
    assert.same(H.sorted(from_create), H.sorted(from_restore))
    -- lines 5 and 100 exist: the kernel refuses them and goes on with the others
    assert(h:flush())
    assert(h:create{ line(2, "-I"), line(97, "-I") })
    local n, _, errno, report = h:restore(table.concat(text, "\n"))
    assert.is_nil(n)
    assert.equal(17, errno)
    assert.equal(148, report.done)
    assert.same({ 5, 100 }, { report[1].index, report[2].index })
    assert.equal(150, h:count())
    assert(h:flush())
  end)

  it("are refused by h:create when they leave the grammar, naming the line", function()
    local h = H.open()
    for _, line in ipairs({ "-L", "-I -p tcp -s 10.9.0.1", "" }) do
      local err = H.raised(h.create, h, line)
      assert.matches("not a line of conntrack's save format", err, 1, true)
      assert.matches("'" .. line .. "'", err, 1, true)
    end
    assert.matches("item 2 is a number, not a spec", H.raised(h.create, h, {
      "-I -t 1 -s 10.0.0.1 -d 10.0.0.2 -r 10.0.0.2 -q 10.0.0.1 -p udp --sport 1 --dport 2 " ..
      "--reply-port-src 2 --reply-port-dst 1", 42 }), 1, true)
    assert.is_nil(conntrack.save_command("-I -t 1 -s 10.0.0.1"))
    assert.equal("-A", conntrack.save_command("-A -t 5 -s 10.0.0.1 -d 10.0.0.2 -r 10.0.0.2 " ..
                                              "-q 10.0.0.1 -p gre --srckey 1 --dstkey 2 " ..
                                              "--reply-key-src 2 --reply-key-dst 1"))
  end)
end)
