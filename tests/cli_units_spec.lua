-- The pure parts of `ct-lua conntrack` (lua/conntrack/cli), in-process and without the
-- kernel: glibc getopt_long's semantics, the C value parsers, the rules and the parse
-- errors through main(argv, out, err). The differential suite (cli_spec.lua) compares
-- whole runs with /usr/sbin/conntrack; this one pins the building blocks.
local getopt = require "conntrack.cli.getopt"
local values = require "conntrack.cli.values"
local rules = require "conntrack.cli.rules"
local options = require "conntrack.cli.options"
local cli = require "conntrack.cli"

local PREFIX = "conntrack v1.4.7 (conntrack-tools): "
local TRY = "Try `conntrack -h' or 'conntrack --help' for more information.\n"

local sink = require("helpers").sink

-- Runs main on the words; returns status, stdout, stderr.
local function run(...)
  local argv = { [0] = "conntrack", ... }
  local out, err = sink(), sink()
  local status = cli.main(argv, out, err)
  return status, out:text(), err:text()
end

-- All options getopt returns for argv (0-based list after the program name).
local function scan(words, optstring, longopts)
  local argv = { [0] = "prog" }
  for i, w in ipairs(words) do argv[i] = w end
  local g = getopt.new(argv, #words + 1, optstring, longopts)
  local got = {}
  while true do
    local c = g:next()
    if c == nil then break end
    got[#got + 1] = tostring(c) .. (g.optarg and ("=" .. g.optarg) or "")
  end
  local rest = {}
  for i = g.optind, #words do rest[#rest + 1] = argv[i] end
  return got, rest
end

describe("getopt_long", function()
  local long = {
    { name = "src", has_arg = 1, val = "s" }, { name = "src-nat", has_arg = 2, val = "n" },
    { name = "orig-src", has_arg = 1, val = "s" }, { name = "zero", has_arg = 0, val = "z" },
    { name = "dump", has_arg = 2, val = "L" },
  }

  it("permutes non-options to the end", function()
    local got, rest = scan({ "a", "-z", "b", "--src", "1" }, ":L::zs:n::", long)
    assert.same({ "z", "s=1" }, got)
    assert.same({ "a", "b" }, rest)
  end)

  it("takes an exact name over a longer one and an unambiguous prefix", function()
    assert.same({ "s=1" }, (scan({ "--src", "1" }, ":s:", long)))
    assert.same({ "n" }, (scan({ "--src-" }, ":n::", long)))
    assert.same({ "z" }, (scan({ "--ze" }, ":z", long)))
  end)

  it("does not count aliases of one option as ambiguous", function()
    local l = { { name = "orig-src", has_arg = 1, val = "s" }, { name = "orig-srcx", has_arg = 1, val = "s" } }
    assert.same({ "s=1" }, (scan({ "--orig-s", "1" }, ":s:", l)))
  end)

  it("reports an ambiguous prefix, a missing argument and an argument to a flag", function()
    assert.same({ "?" }, (scan({ "--sr" }, ":s:", long)))
    assert.same({ ":" }, (scan({ "--src" }, ":s:", long)))
    assert.same({ "?" }, (scan({ "--zero=1" }, ":z", long)))
  end)

  it("gives optional arguments only when attached", function()
    assert.same({ "L", }, (scan({ "-L", "x" }, ":L::", long)))
    assert.same({ "L=x" }, (scan({ "-Lx" }, ":L::", long)))
    assert.same({ "L=x" }, (scan({ "--dump=x" }, ":L::", long)))
  end)

  it("stops at --", function()
    local got, rest = scan({ "-z", "--", "-s" }, ":zs:", long)
    assert.same({ "z" }, got)
    assert.same({ "-s" }, rest)
  end)
end)

describe("C value parsers", function()
  it("inet_aton accepts the short and numeric forms", function()
    assert.same({ 10, 0, 0, 1 }, values.inet_aton("10.1"))
    assert.same({ 10, 0, 0, 1 }, values.inet_aton("0x0a000001"))
    assert.same({ 1, 2, 3, 4 }, values.inet_aton("1.2.3.4 trailing"))
    assert.same({ 10, 0, 0, 8 }, values.inet_aton("012.0.0.010"))
    assert.is_nil(values.inet_aton("1.1.1.300"))
    assert.is_nil(values.inet_aton("08.1.1.1"))
    assert.is_nil(values.inet_aton("1.2.3.4x"))
  end)

  it("inet_pton6 follows glibc", function()
    assert.equal(16, #values.inet_pton6("::1"))
    assert.equal(16, #values.inet_pton6("::ffff:1.2.3.4"))
    assert.is_nil(values.inet_pton6(":1"))
    assert.is_nil(values.inet_pton6("1:::2"))
  end)

  it("strtoul takes base 0, signs and stops at garbage", function()
    assert.equal(15, (values.strtoul("017", 0)))
    assert.equal(17, (values.strtoul("0x11", 0)))
    assert.equal(-5, (values.strtoul("-5", 0)))           -- 2^64 - 5
    local v, e = values.strtoul("20foo", 0)
    assert.equal(20, v)
    assert.equal(3, e)
    assert.equal(0, (values.strtoul("foo", 0)))
  end)

  it("strtoul saturates at 2^64 - 1 with ERANGE past it, in every base", function()
    for _, case in ipairs{ { "18446744073709551615", -1, false },
                           { "18446744073709551616", -1, true },
                           { "99999999999999999999", -1, true },
                           { "0xffffffffffffffff", -1, false },
                           { "0x10000000000000000", -1, true },
                           { "01777777777777777777777", -1, false },
                           { "02000000000000000000000", -1, true },
                           { "18446744073709551614", -2, false } } do
      local v, _, over = values.strtoul(case[1], 0)
      assert.equal(case[2], v, case[1])
      assert.equal(case[3], over, case[1])
    end
  end)

  it("atoi and atol as C", function()
    assert.equal(0, values.atoi("abc"))
    assert.equal(-5, values.atol("-5"))
    assert.equal(99999, values.atoi("99999"))
  end)

  it("parses CIDR suffixes as conntrack", function()
    local a, p = values.parse_addr("1.1.1.1/24", true)
    assert.equal("1.1.1.1", a.text)
    assert.equal(24, p)
    assert.equal(-2, select(2, values.parse_addr("1.1.1.1/33", true)))
    assert.equal(-2, select(2, values.parse_addr("1.1.1.1/x", true)))
    assert.equal(0, select(2, values.parse_addr("1.1.1.1/", true)))
  end)

  it("splits NAT addresses and ports", function()
    assert.same({ "1.2.3.4", "80" }, { values.split_nat("1.2.3.4:80") })
    assert.same({ "::1", "80" }, { values.split_nat("[::1]:80") })
    assert.same({ "2001:db8::1" }, { values.split_nat("2001:db8::1") })
    assert.same({ nil, "No port specified after `:'" }, { values.split_nat("1.1.1.1:") })
    assert.same({ nil, "Invalid port `70000'" }, { values.split_nat(":70000") })
    assert.same({ nil, "No IPv6 address specified" }, { values.split_nat("[]:80") })
  end)
end)

describe("rules", function()
  local names = {}
  for bit = 0, options.NUMBER_OF_OPT - 1 do names[#names + 1] = options.bit_names[bit] end

  it("reports the first bit that is missing or illegal", function()
    assert.equal("You need to supply the `--protonum' option for this command",
                 rules.check(rules.commands.CT_GET, names, { src = true, dst = true }, rules.pairs,
                             rules.pair_msgs))
    assert.equal("Illegal option `--timeout' with this command",
                 rules.check(rules.commands.CT_LIST, names, { timeout = true, zero = true }))
  end)

  it("needs one complete tuple pair", function()
    assert.equal("you have to specify `--reply-src' and `--reply-dst'",
                 rules.check(rules.commands.CT_CREATE, names,
                             { ["reply-src"] = true, protonum = true, timeout = true },
                             rules.pairs, rules.pair_msgs))
    assert.is_nil(rules.check(rules.commands.CT_CREATE, names,
                              { src = true, dst = true, protonum = true, timeout = true },
                              rules.pairs, rules.pair_msgs))
  end)
end)

describe("main(argv, out, err)", function()
  it("prints the version and the usage", function()
    local status, out = run("-V")
    assert.equal(0, status)
    assert.equal("conntrack v1.4.7 (conntrack-tools)\n", out)
    status, out = run("-h", "-p", "tcp")
    assert.equal(0, status)
    assert.truthy(out:find("^Command line interface for the connection tracking system"))
    assert.truthy(out:find("Proto `tcp' help:\n", 1, true))
  end)

  local errors = {
    { { "--bogus" }, "unknown option `--bogus'" },
    { { "-L", "-o" }, "option `-o' requires an argument" },
    { { "-L", "-s", "1.1.1.300" }, "Invalid IP address `1.1.1.300'" },
    { { "-L", "--sport", "80", "-p", "tcp" }, "unknown option `--sport'" },
    { { "-L", "-D" }, "Invalid commands combination" },
    { { "-L", "expectx" }, "unknown type `expectx'" },
    { { "-U", "expect" }, "Can't do --update on expectations" },
    { { "-L", "-u", ",ASSURED" }, "Bad parameter `,ASSURED'" },
    { { "-L", "-Xz" }, "unknown option `-L'" },
    { { "-I", "-s", "1.1.1.1", "-p", "tcp", "-t", "1" }, "you have to specify `--src' and `--dst'" },
    { { "-L", "--dst-nat", "[::1" }, "No closing ']' around IPv6 address" },
  }
  for _, case in ipairs(errors) do
    it("reports " .. case[2], function()
      local status, out, err = run(table.unpack(case[1]))
      assert.equal(2, status)
      assert.equal("", out)
      assert.equal(PREFIX .. case[2] .. "\n" .. TRY, err)
    end)
  end

  it("exits 1 without the hint for -o save with another type", function()
    local status, _, err = run("-L", "-o", "save,xml")
    assert.equal(1, status)
    assert.equal(PREFIX .. "cannot combine save output with any other output type, use -o save only\n", err)
  end)

  -- ready marks the end of start-up: the bundled script sets its collector's pause there
  it("calls ready once the command line is parsed, before the command writes", function()
    local log
    local function recorder(name)
      return { write = function(_, ...) log[#log + 1] = name .. ":" .. table.concat({ ... }) end }
    end
    local function ready() log[#log + 1] = "ready" end
    local function main(...)
      log = {}
      return cli.main({ [0] = "conntrack", ... }, recorder("out"), recorder("err"), ready)
    end

    assert.equal(0, main("-V"))
    assert.same({ "ready", "out:conntrack v1.4.7 (conntrack-tools)\n" }, log)
    -- a command line that does not parse never gets there
    assert.equal(2, main("--bogus"))
    assert.same({ "err:" .. PREFIX .. "unknown option `--bogus'\n", "err:" .. TRY }, log)
    -- -R: before its file is opened
    assert.equal(2, main("-R", "/nonexistent/ct-lua-file"))
    assert.same({ "ready", "err:" .. PREFIX .. "Failed to open file /nonexistent/ct-lua-file for reading\n",
                  "err:" .. TRY }, log)
  end)

  it("warns about SRC_NAT in a list before going on", function()
    local _, _, err = run("-E", "-e", "S", "-s", "1.1.1.300")
    assert.equal("WARNING: ignoring SRC_NAT, use --src-nat instead\n" .. PREFIX ..
                 "Invalid IP address `1.1.1.300'\n" .. TRY, err)
  end)
end)

describe("the parser of many lines (-R)", function()
  local parse = require "conntrack.cli.parse"

  -- What parsing words gives: the command table, or the error; and what it warned.
  local function outcome(parse_fn, line, output)
    local argv = { [0] = "conntrack" }
    for w in line:gmatch("%S+") do argv[#argv + 1] = w end
    local err = sink()
    local ok, res = pcall(parse_fn, { err = err, out = sink() }, argv, #argv + 1, output)
    return { ok = ok, res = res, warned = err:text() }
  end

  -- Every line through one parser (which keeps plans) equals a fresh full parse, the -o
  -- flags carried from line to line as -R does.
  local function same_as_full(lines)
    local parse_line = parse.parser()
    local output_full, output_plan = {}, {}
    for i, line in ipairs(lines) do
      local full, planned = outcome(parse.parse, line, output_full),
                            outcome(parse_line, line, output_plan)
      assert.same(full, planned, "line " .. i .. ": " .. line)
      if full.ok then output_full, output_plan = full.res.output, planned.res.output end
    end
  end

  it("replays save-format lines of every protocol", function()
    same_as_full {
      "-I -t 100 -u SEEN_REPLY,ASSURED -s 10.0.0.1 -d 10.0.0.2 -r 10.0.0.2 -q 10.0.0.1 -p tcp --sport 1 " ..
        "--dport 2 --reply-port-src 2 --reply-port-dst 1 --state ESTABLISHED",
      "-I -t 200 -u ASSURED -s 10.0.0.3 -d 10.0.0.4 -r 10.0.0.4 -q 10.0.0.3 -p tcp --sport 3 --dport 4 " ..
        "--reply-port-src 4 --reply-port-dst 3 --state TIME_WAIT",
      "-I -t 200 -u ASSURED -s 10.0.0.3 -d 10.0.0.4 -r 10.0.0.4 -q 10.0.0.3 -p udp --sport 3 --dport 4 " ..
        "--reply-port-src 4 --reply-port-dst 3 --state TIME_WAIT",
      "-I -t 200 -u ASSURED -s 10.0.0.3 -d 10.0.0.4 -r 10.0.0.4 -q 10.0.0.3 -p sctp --sport 3 --dport 4 " ..
        "--reply-port-src 4 --reply-port-dst 3 --state CLOSED",
      "-I -t 30 -u UNSET -s fd00::1 -d fd00::2 -r fd00::2 -q fd00::1 -p icmpv6 --icmpv6-type 128 " ..
        "--icmpv6-code 0 --icmpv6-id 7",
      "-I -t 30 -u UNSET -s fd00::3 -d fd00::4 -r fd00::4 -q fd00::3 -p icmpv6 --icmpv6-type 128 " ..
        "--icmpv6-code 0 --icmpv6-id 8",
      "-I -t 30 -u UNSET -s 10.0.0.5 -d 10.0.0.6 -r 10.0.0.6 -q 10.0.0.5 -p gre --srckey 1 --dstkey 2 " ..
        "--reply-key-src 2 --reply-key-dst 1",
      "-A -t 59 -u UNSET -s 192.168.9.3 -d 198.51.100.8 -g 10.9.9.9 -q 192.168.9.3 -p udp --sport 6000 " ..
        "--dport 53 --reply-port-src 5300 --reply-port-dst 6000",
    }
  end)

  it("follows the protocol, the table word and attached arguments", function()
    same_as_full {
      "-L -p tcp --dport 22", "-L -p udp --dport 22", "-L -p icmp --dport 22",
      "-L expect", "-L conntrack", "-L dying", "-L bogus",
      "-I -ptcp -s 1.1.1.1 -d 2.2.2.2 --sport 1 --dport 2 --state LISTEN -t 5",
      "-I -pudp -s 1.1.1.1 -d 2.2.2.2 --sport 1 --dport 2 --state LISTEN -t 5",
      "-I --proto=udp -s 1.1.1.1 -d 2.2.2.2 --sport 1 --dport 2 -t 5",
      "-I --proto=tcp -s 1.1.1.1 -d 2.2.2.2 --sport 1 --dport 2 -t 5",
    }
  end)

  it("gives a line's own errors and warnings when its plan is replayed", function()
    same_as_full {
      "-I -s 10.0.0.1 -d 10.0.0.2 -p tcp --sport 1 --dport 2 --state ESTABLISHED -t 1 -u S",
      "-I -s 10.0.0.1 -d 10.0.0.2 -p tcp --sport 1 --dport 2 --state ESTABLISHED -t 1 -u S",
      "-I -s 10.0.0.300 -d 10.0.0.2 -p tcp --sport 1 --dport 2 --state ESTABLISHED -t 1 -u S",
      "-I -s 10.0.0.1 -d fd00::2 -p tcp --sport 1 --dport 2 --state ESTABLISHED -t 1 -u S",
      "-I -s 10.0.0.1 -d 10.0.0.2 -p tcp --sport 1 --dport 2 --state BOGUS -t 1 -u S",
      "-I -s 10.0.0.1 -d 10.0.0.2 -p tcp --sport 1 --dport 2 --state ESTABLISHED -t 1 -u BOGUS",
      "-D -s 10.0.0.1", "-D -s 10.0.0.0/8", "-D -s 10.0.0.0/33", "-D -s fd00::/64",
      "-U -s 10.0.0.1 --src-nat 10.1.1.1 -m 1", "-U -s 10.0.0.1 --src-nat -m 1",
      "-U -s 10.0.0.1 --src-nat 10.1.1.1:80 -m 1", "-U -s 10.0.0.1 --src-nat 10.1.1.1:x -m 1",
      "-D -o save -s 10.0.0.1", "-D -o xml -s 10.0.0.1", "-D -o json -s 10.0.0.1",
    }
  end)

  it("checks the rules again for another command of the same shape", function()
    same_as_full {
      "-D conntrack -s 1.2.3.4", "-D expect -s 1.2.3.4",
      "-F conntrack -f ipv4", "-F expect -f ipv4", "-F conntrack -f ipv4",
      "-I conntrack -s 1.2.3.4 -d 1.2.3.5 -p udp --sport 1 --dport 2 -t 5",
      "-I expect -s 1.2.3.4 -d 1.2.3.5 -p udp --sport 1 --dport 2 -t 5",
    }
  end)

  it("checks the rules again when a line alike gives other options", function()
    same_as_full {
      "-I -s 10.0.0.1 -d 10.0.0.2 -p tcp --sport 1 --dport 2 --state ESTABLISHED -t 1",
      "-I -s 10.0.0.1 -d 10.0.0.2 -p tcp --sport 1 --dport 2 --state ESTABLISHED -t 1",
      "-I -s 10.0.0.1/24 -d 10.0.0.2 -p tcp --sport 1 --dport 2 --state ESTABLISHED -t 1",
      "-I -s 10.0.0.1 -d 10.0.0.2/32 -p tcp --sport 1 --dport 2 --state ESTABLISHED -t 1",
      "-I -s 10.0.0.1 -d 10.0.0.2/31 -p tcp --sport 1 --dport 2 --state ESTABLISHED -t 1",
      "-I -s 10.0.0.1 -d 10.0.0.2 -p tcp --sport 1 --dport 2 --state ESTABLISHED -t 1",
    }
  end)

  it("replays lines whose words getopt permutes (it moves only words already read)", function()
    same_as_full {
      "-D -m 1 a b -s 10.0.0.1", "-D -m 2 c d -s 10.0.0.2", "-D -m 3 e f -s 10.0.0.300",
      "-U x -m 1 -s 10.0.0.1 y", "-U z -m 2 -s 10.0.0.2 w",
      "-D -s 10.0.0.1 -- -p", "-D -s 10.0.0.2 -- -p", "-D -s 10.0.0.1 -- -q",
      "-F", "-F expect", "-F conntrack",
    }
  end)
end)

describe("the spool between -R's passes", function()
  local spool = require "conntrack.cli.spool"

  local function read_back(write)
    local records <close> = spool.new()
    write(records)
    local got = {}
    for kind, a, b, c in records:records() do got[#got + 1] = { kind, a, b, c } end
    return got
  end

  it("gives back every record in order, each field of a spec as it was", function()
    local every = {
      proto = 6, src = "10.0.0.1", dst = "fd00::2", sport = 1, dport = 65535, srckey = 7,
      dstkey = 8, icmp_type = 8, icmp_code = 0, icmp_id = 9, reply_src = "10.0.0.2",
      reply_dst = "10.0.0.1", reply_sport = 3, reply_dport = 4, reply_srckey = 5,
      reply_dstkey = 6, snat = "10.1.1.1:80", dnat = "[fd00::9]:53", timeout = 0xffffffff,
      state = "ESTABLISHED", status = 0x4c, mark = -1, zone = 1, orig_zone = 2,
      reply_zone = 3, vtag = 0x12345678, reply_vtag = 0, labels = { "a", "b" },
      tcp_flags = { BE_LIBERAL = true, SACK_PERM = true }, reply_tcp_flags = { CLOSE_INIT = true },
    }
    local got = read_back(function(r)
      r:create("CT_CREATE", nil, { proto = 17, src = "1.1.1.1", dst = "2.2.2.2", timeout = 5 })
      r:line("-D -s 10.0.0.1\n")
      r:create("CT_ADD", "ns with spaces", every)
      r:failure({ status = 1, msg = "Operation failed: invalid parameters" })
      r:failure({ status = 1, msg = "x" }, "ns")
      r:create("CT_CREATE", "", { proto = 1, src = "1.1.1.1", dst = "2.2.2.2", timeout = 5 })
    end)
    assert.same({
      { "create", "CT_CREATE", nil, { proto = 17, src = "1.1.1.1", dst = "2.2.2.2", timeout = 5 } },
      { "line", "-D -s 10.0.0.1\n" },
      { "create", "CT_ADD", "ns with spaces", every },
      { "failure", { status = 1, msg = "Operation failed: invalid parameters" } },
      { "failure", { status = 1, msg = "x" }, "ns" },
      { "create", "CT_CREATE", "", { proto = 1, src = "1.1.1.1", dst = "2.2.2.2", timeout = 5 } },
    }, got)
  end)

  it("refuses a field it would lose", function()
    local records <close> = spool.new()
    assert.has_error(function() records:create("CT_CREATE", nil, { proto = 6, helper = "ftp" }) end,
                     "spool: a create spec field it cannot keep: helper")
  end)
end)
