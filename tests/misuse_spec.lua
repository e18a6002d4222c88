-- Misuse of the Lua API (issue 8, item 5): a catalogue of wrong calls, each with the
-- error it must raise. Every message names the function (Lua's "bad argument #N to
-- 'dump'", or the method) and the field or option at fault; none may crash.
--
-- The whole catalogue runs in this one busted process, one test per case; then, as a
-- plain script (this file run by ct-lua, where `describe` does not exist), in one ct-lua
-- process, and once more in one ct-lua process under valgrind's memcheck, to show that
-- the error paths neither touch bad memory nor leak. Cases that expose a bug run in a
-- child process of their own (one of them crashed the interpreter) and are pending with
-- the bug's description until the message is right; once it is, the test passes, and
-- removing the case's `bug` field moves it into the one-process and valgrind runs.
--
--   ./ct-lua tests/misuse_spec.lua            runs every case that is not a known bug
--   ./ct-lua tests/misuse_spec.lua --case N   runs case N alone and prints its message
local conntrack = require "conntrack"

--- The objects the cases misuse: a handle, a flow, an events object, closed objects, a
-- tuple (T) and a spec (S). Made once per process, in a private network namespace.
local function make_env()
  local e = {}
  e.h = assert(conntrack.open())
  e.T = { proto = "tcp", src = "10.0.0.1", dst = "10.0.0.2", sport = 1, dport = 2 }
  e.S = { proto = "tcp", src = "10.0.0.1", dst = "10.0.0.2", sport = 1, dport = 2,
          timeout = 30 }
  e.h:create(e.S)  -- may exist already: the standalone run follows the busted one
  for f in e.h:dump{ proto = "tcp", sport = 1 } do e.flow = f end
  assert(e.flow, "no flow to misuse")
  e.ev = assert(e.h:listen{ events = { "destroy" } })
  e.closed_h = assert(conntrack.open())
  e.closed_h:close()
  e.closed_ev = assert(e.h:listen{ events = { "destroy" } })
  e.closed_ev:close()
  e.closed_sig = assert(conntrack.signals{ "USR2" })
  e.closed_sig:close()
  e.dump_iter, e.closed_dump = e.h:dump()
  for _ in e.dump_iter, e.closed_dump do end  -- the end of the table closes it
  e.json = require "conntrack.json"
  return e
end

--- A copy of t with changes (the string "nil" removes a key).
local function with(t, changes)
  local r = {}
  for k, v in pairs(t) do r[k] = v end
  for k, v in pairs(changes) do
    if v == "nil" then r[k] = nil else r[k] = v end
  end
  return r
end

local function dump(e, filter, opts) for _ in e.h:dump(filter, opts) do end end  -- luacheck: ignore 512

local ICMP = { proto = "icmp", src = "10.0.0.1", dst = "10.0.0.2", icmp_type = 8,
               icmp_code = 0, icmp_id = 1 }

-- { description, function(env) that misuses, the error: exact text (after the caller's
-- "file:line: ") or, starting with '^', an anchored pattern; bug = why it is pending }
local CASES = {
  -- conntrack.open
  { "open with a number", function() conntrack.open(5) end,
    "bad argument #1 to 'open' (table expected, got number)" },
  { "open with an unknown option", function() conntrack.open{ labelmapp = "x" } end,
    "bad argument #1 to 'open' (unknown option 'labelmapp')" },
  { "open with a table as labelmap", function() conntrack.open{ labelmap = {} } end,
    "^bad argument #1 to 'open' %(.*'labelmap'.*%)$" },
  { "open with a table as netns", function() conntrack.open{ netns = {} } end,
    "^bad argument #1 to 'open' %(.*'netns'.*%)$" },

  -- h:dump: filter, options
  { "dump with a number as filter", function(e) dump(e, 5) end,
    "bad argument #1 to 'dump' (table, function or nil expected, got number)" },
  { "dump with a string as filter", function(e) dump(e, "tcp") end,
    "bad argument #1 to 'dump' (table, function or nil expected, got string)" },
  { "dump filter with an unknown field", function(e) dump(e, { dprot = 22 }) end,
    "bad argument #1 to 'dump' (unknown field 'dprot')" },
  { "dump filter with a number key", function(e) dump(e, { [2] = 5 }) end,
    "bad argument #1 to 'dump' (field names must be strings, got number)" },
  { "dump filter with a non-function at [1]", function(e) dump(e, { 5 }) end,
    "bad argument #1 to 'dump' (field names must be strings, got number)" },
  { "dump filter with a read-only field (start)", function(e) dump(e, { start = 0 }) end,
    "bad argument #1 to 'dump' (field 'start' cannot be used here)" },
  { "dump filter with reply_icmp_type", function(e) dump(e, { reply_icmp_type = 0 }) end,
    "bad argument #1 to 'dump' (field 'reply_icmp_type' cannot be used here)" },
  { "dump options with an unknown option", function(e) dump(e, nil, { tabel = "dying" }) end,
    "bad argument #2 to 'dump' (unknown option 'tabel')" },
  { "dump options with an unknown table", function(e) dump(e, nil, { table = "nope" }) end,
    "bad argument #2 to 'dump' (unknown table 'nope')" },
  { "dump options zero on the dying table",
    function(e) dump(e, nil, { table = "dying", zero = true }) end,
    "bad argument #2 to 'dump' ('zero' works on the conntrack table only)" },
  { "dump options as a number", function(e) dump(e, nil, 5) end,
    "bad argument #2 to 'dump' (table expected, got number)" },
  { "dump called with a dot", function(e) e.h.dump() end,
    "bad argument #1 to 'dump' (conntrack.handle expected, got no value)" },

  -- filter values
  { "port 70000", function(e) dump(e, { dport = 70000 }) end,
    "bad argument #1 to 'dump' (field 'dport' is out of range (0..65535))" },
  { "port -1", function(e) dump(e, { sport = -1 }) end,
    "bad argument #1 to 'dump' (field 'sport' is out of range (0..65535))" },
  { "port 1.5", function(e) dump(e, { sport = 1.5 }) end,
    "bad argument #1 to 'dump' (field 'sport' expects an integer, got number)" },
  { "port as a table", function(e) dump(e, { dport = { 22 } }) end,
    "bad argument #1 to 'dump' (field 'dport' expects an integer, got table)" },
  { "mark 2^32", function(e) dump(e, { mark = 1 << 32 }) end,
    "bad argument #1 to 'dump' (field 'mark' is out of range (0..4294967295))" },
  { "mark 2^32 as a float", function(e) dump(e, { mark = 2 ^ 32 }) end,
    "bad argument #1 to 'dump' (field 'mark' is out of range (0..4294967295))" },
  { "mark 2^32 as a string", function(e) dump(e, { mark = "4294967296" }) end,
    "bad argument #1 to 'dump' (field 'mark' is out of range (0..4294967295))" },
  { "mark 1.5", function(e) dump(e, { mark = 1.5 }) end,
    "bad argument #1 to 'dump' (field 'mark' expects an integer, got number)" },
  { "mark mask '5/'", function(e) dump(e, { mark = "5/" }) end,
    "bad argument #1 to 'dump' (field 'mark' expects a number, got '')" },
  { "mark mask '/5'", function(e) dump(e, { mark = "/5" }) end,
    "bad argument #1 to 'dump' (field 'mark' expects a number, got '')" },
  { "mark mask '5/x'", function(e) dump(e, { mark = "5/x" }) end,
    "bad argument #1 to 'dump' (field 'mark' expects a number, got 'x')" },
  { "mark mask wider than 32 bits", function(e) dump(e, { mark = "5/0x1ffffffff" }) end,
    "bad argument #1 to 'dump' (field 'mark' is out of range (0..4294967295))" },
  { "negated mark '!x'", function(e) dump(e, { mark = "!x" }) end,
    "bad argument #1 to 'dump' (field 'mark' expects a number, got 'x')" },
  { "zone 65536", function(e) dump(e, { zone = 65536 }) end,
    "bad argument #1 to 'dump' (field 'zone' is out of range (0..65535))" },
  { "zone -1", function(e) dump(e, { zone = -1 }) end,
    "bad argument #1 to 'dump' (field 'zone' is out of range (0..65535))" },
  { "icmp_type 256", function(e) dump(e, { icmp_type = 256 }) end,
    "bad argument #1 to 'dump' (field 'icmp_type' is out of range (0..255))" },
  { "bytes -1", function(e) dump(e, { bytes = -1 }) end,
    "bad argument #1 to 'dump' (field 'bytes' is out of range (0..9223372036854775807))" },
  { "address 10.0.0.300", function(e) dump(e, { src = "10.0.0.300" }) end,
    "bad argument #1 to 'dump' (field 'src': invalid address '10.0.0.300')" },
  { "prefix 10.0.0.0/33", function(e) dump(e, { src = "10.0.0.0/33" }) end,
    "bad argument #1 to 'dump' (field 'src': invalid prefix length in '10.0.0.0/33')" },
  { "prefix fd00::/129", function(e) dump(e, { dst = "fd00::/129" }) end,
    "bad argument #1 to 'dump' (field 'dst': invalid prefix length in 'fd00::/129')" },
  { "prefix 10.0.0.1/ (empty)", function(e) dump(e, { src = "10.0.0.1/" }) end,
    "bad argument #1 to 'dump' (field 'src': invalid prefix length in '10.0.0.1/')" },
  { "prefix 10.0.0.1/x", function(e) dump(e, { reply_src = "10.0.0.1/x" }) end,
    "bad argument #1 to 'dump' (field 'reply_src': invalid prefix length in '10.0.0.1/x')" },
  { "address ::1::2", function(e) dump(e, { dst = "::1::2" }) end,
    "bad argument #1 to 'dump' (field 'dst': invalid address '::1::2')" },
  { "address as a boolean", function(e) dump(e, { src = true }) end,
    "bad argument #1 to 'dump' (field 'src' expects an address string, got boolean)" },
  { "src IPv4 with dst IPv6", function(e) dump(e, { src = "10.0.0.1", dst = "fd00::1" }) end,
    "^bad argument #1 to 'dump' %(field '[sd][rs][ct]' mixes IPv4 and IPv6%)$" },
  { "family ipv6 with an IPv4 src",
    function(e) dump(e, { family = "ipv6", src = "10.0.0.1" }) end,
    "^bad argument #1 to 'dump' %(field '%a+' mixes IPv4 and IPv6%)$" },
  { "family 'ipx'", function(e) dump(e, { family = "ipx" }) end,
    "bad argument #1 to 'dump' (field 'family' expects \"ipv4\" or \"ipv6\", got 'ipx')" },
  { "unknown protocol", function(e) dump(e, { proto = "tcpp" }) end,
    "bad argument #1 to 'dump' (field 'proto': unknown protocol 'tcpp')" },
  { "protocol 256", function(e) dump(e, { proto = 256 }) end,
    "bad argument #1 to 'dump' (field 'proto' is out of range (0..255))" },
  { "double negation '!!udp'", function(e) dump(e, { proto = "!!udp" }) end,
    "bad argument #1 to 'dump' (field 'proto': unknown protocol '!udp')" },
  { "unknown state", function(e) dump(e, { state = "ESTABLISHD" }) end,
    "bad argument #1 to 'dump' (field 'state': unknown state 'ESTABLISHD')" },
  { "state as a number", function(e) dump(e, { state = 3 }) end,
    "bad argument #1 to 'dump' (field 'state': unknown state '3')" },
  { "unknown status flag", function(e) dump(e, { status = "ASSURD" }) end,
    "bad argument #1 to 'dump' (field 'status': unknown status flag 'ASSURD')" },
  { "status list with an empty name", function(e) dump(e, { status = "ASSURED," }) end,
    "bad argument #1 to 'dump' (field 'status': empty name in 'ASSURED,')" },
  { "status set with a number member", function(e) dump(e, { status = { 5 } }) end,
    "bad argument #1 to 'dump' (field 'status': flag names must be strings)" },
  { "labels without a labelmap", function(e) dump(e, { labels = "blue" }) end,
    "bad argument #1 to 'dump' (field 'labels': unknown label 'blue' " ..
    "(no connlabel.conf loaded))" },
  { "snat as a string", function(e) dump(e, { snat = "yes" }) end,
    "bad argument #1 to 'dump' (field 'snat' expects a boolean, got string)" },
  { "helper as a number", function(e) dump(e, { helper = 21 }) end,
    "bad argument #1 to 'dump' (field 'helper' expects a string, got number)" },

  -- h:get
  { "get without a tuple", function(e) e.h:get() end,
    "bad argument #1 to 'get' (table expected, got nil)" },
  { "get with a string", function(e) e.h:get("10.0.0.1") end,
    "bad argument #1 to 'get' (table expected, got string)" },
  { "get with an events object", function(e) e.h:get(e.ev) end,
    "bad argument #1 to 'get' (table expected, got conntrack.events)" },
  { "get without dport", function(e) e.h:get(with(e.T, { dport = "nil" })) end,
    "bad argument #1 to 'get' (field 'dport' is required)" },
  { "get without src", function(e) e.h:get(with(e.T, { src = "nil" })) end,
    "bad argument #1 to 'get' (field 'src' is required)" },
  { "get of icmp without icmp_type", function(e) e.h:get(with(ICMP, { icmp_type = "nil" })) end,
    "bad argument #1 to 'get' (field 'icmp_type' is required)" },
  { "get with ports but no proto", function(e) e.h:get(with(e.T, { proto = "nil" })) end,
    "bad argument #1 to 'get' (field 'proto' is required with field 'sport')" },
  { "get with a prefix", function(e) e.h:get(with(e.T, { src = "10.0.0.0/8" })) end,
    "bad argument #1 to 'get' (field 'src': a prefix length is only allowed in filters)" },
  { "get with sport on icmp", function(e) e.h:get(with(ICMP, { sport = 5 })) end,
    "bad argument #1 to 'get' (field 'sport' does not apply to this protocol)" },
  { "get with icmp_type on tcp", function(e) e.h:get(with(e.T, { icmp_type = 8 })) end,
    "bad argument #1 to 'get' (field 'icmp_type' does not apply to this protocol)" },
  { "get with icmp_type 256", function(e) e.h:get(with(ICMP, { icmp_type = 256 })) end,
    "bad argument #1 to 'get' (field 'icmp_type' is out of range (0..255))" },
  { "get with family ipv6 and IPv4 addresses",
    function(e) e.h:get(with(e.T, { family = "ipv6" })) end,
    "bad argument #1 to 'get' (field 'src' mixes IPv4 and IPv6)" },
  { "get with zone 65536", function(e) e.h:get(with(e.T, { zone = 65536 })) end,
    "bad argument #1 to 'get' (field 'zone' is out of range (0..65535))" },
  { "get with a field that names no entry (mark)", function(e) e.h:get(with(e.T, { mark = 1 })) end,
    "bad argument #1 to 'get' (field 'mark' cannot be used here)" },
  { "get with timeout", function(e) e.h:get(with(e.T, { timeout = 5 })) end,
    "bad argument #1 to 'get' (field 'timeout' cannot be used here)" },

  { "get with an unknown field", function(e) e.h:get(with(e.T, { dprot = 2 })) end,
    "bad argument #1 to 'get' (unknown field 'dprot')" },

  -- h:create
  { "create with an unknown field", function(e) e.h:create(with(e.S, { timeuot = 5 })) end,
    "bad argument #1 to 'create' (unknown field 'timeuot')" },
  { "create without timeout", function(e) e.h:create(e.T) end,
    "bad argument #1 to 'create' (field 'timeout' is required)" },
  { "create without proto", function(e) e.h:create(with(e.S, { proto = "nil", sport = "nil",
                                                               dport = "nil" })) end,
    "bad argument #1 to 'create' (field 'proto' is required)" },
  { "create without sport", function(e) e.h:create(with(e.S, { sport = "nil" })) end,
    "bad argument #1 to 'create' (field 'sport' is required)" },
  { "create with mark 2^32", function(e) e.h:create(with(e.S, { mark = 1 << 32 })) end,
    "bad argument #1 to 'create' (field 'mark' is out of range (0..4294967295))" },
  { "create with timeout -1", function(e) e.h:create(with(e.S, { timeout = -1 })) end,
    "bad argument #1 to 'create' (field 'timeout' is out of range (0..4294967295))" },
  { "create with timeout 'soon'", function(e) e.h:create(with(e.S, { timeout = "soon" })) end,
    "bad argument #1 to 'create' (field 'timeout' expects a number, got 'soon')" },
  { "create with an unknown state", function(e) e.h:create(with(e.S, { state = "FOO" })) end,
    "bad argument #1 to 'create' (field 'state': unknown state 'FOO')" },
  { "create with a TCP state on udp",
    function(e) e.h:create(with(e.S, { proto = "udp", state = "ESTABLISHED" })) end,
    "bad argument #1 to 'create' (field 'state': not a state of this protocol)" },
  { "create with an SCTP state on tcp",
    function(e) e.h:create(with(e.S, { state = "COOKIE_WAIT" })) end,
    "bad argument #1 to 'create' (field 'state': not a state of this protocol)" },
  { "create with srckey on tcp", function(e) e.h:create(with(e.S, { srckey = 5 })) end,
    "bad argument #1 to 'create' (field 'srckey' does not apply to this protocol)" },
  { "create with vtag on tcp", function(e) e.h:create(with(e.S, { vtag = 5 })) end,
    "bad argument #1 to 'create' (field 'vtag' does not apply to this protocol)" },
  { "create with an IPv6 reply_src", function(e) e.h:create(with(e.S, { reply_src = "fd00::1" })) end,
    "bad argument #1 to 'create' (field 'reply_src' mixes IPv4 and IPv6)" },
  { "create with labels_add", function(e) e.h:create(with(e.S, { labels_add = "blue" })) end,
    "bad argument #1 to 'create' (field 'labels_add' cannot be used here)" },
  { "create with labels without a labelmap",
    function(e) e.h:create(with(e.S, { labels = "blue" })) end,
    "bad argument #1 to 'create' (field 'labels': unknown label 'blue' " ..
    "(no connlabel.conf loaded))" },
  { "create with an id", function(e) e.h:create(with(e.S, { id = 5 })) end,
    "bad argument #1 to 'create' (field 'id' cannot be used here)" },
  { "create with a helper name of 200 bytes",
    function(e) e.h:create(with(e.S, { helper = string.rep("x", 200) })) end,
    "bad argument #1 to 'create' (field 'helper' is too long)" },
  { "create of a list with a bad second spec",
    function(e) e.h:create{ e.S, with(e.S, { sport = 70000 }) } end,
    "bad argument #1 to 'create' (field 'sport' is out of range (0..65535))" },
  { "create of a list whose second item is a number", function(e) e.h:create{ e.S, 5 } end,
    "bad argument #1 to 'create' (item 2 is a number, not a spec)" },
  { "create of a list whose second item is a string but no save line",
    function(e) e.h:create{ e.S, "x" } end,
    "bad argument #1 to 'create' (not a line of conntrack's save format (-I or -A, as " ..
    "conntrack -L -o save prints): 'x')" },
  -- of several faults, the first in field order is reported (the reply fields come after
  -- the original tuple's check)
  { "create without dst and with a reply port that is no number",
    function(e) e.h:create{ proto = "tcp", src = "1.2.3.4", reply_sport = "x", timeout = 1 } end,
    "bad argument #1 to 'create' (field 'dst' is required)" },
  { "create of a udp state, then a timeout that is no number",
    function(e)
      e.h:create{ proto = "udp", state = "ESTABLISHED", timeout = "bad", src = "1.1.1.1",
                  dst = "2.2.2.2", sport = 1, dport = 2 }
    end,
    "bad argument #1 to 'create' (field 'state': not a state of this protocol)" },
  { "create of a save line cut short", function(e) e.h:create("-I -t 5 -s 10.0.0.1 -d") end,
    "bad argument #1 to 'create' (not a line of conntrack's save format (-I or -A, as " ..
    "conntrack -L -o save prints): '-I -t 5 -s 10.0.0.1 -d')" },
  { "restore of a table", function(e) e.h:restore({}) end,
    "bad argument #1 to 'restore' (string expected, got table)" },
  { "restore of a text whose third line is no save line",
    function(e)
      e.h:restore("# saved\n-A -t 5 -s 10.0.0.1 -d 10.0.0.2 -r 10.0.0.2 -q 10.0.0.1 -p udp " ..
                  "--sport 1 --dport 2 --reply-port-src 2 --reply-port-dst 1\n-L\n")
    end,
    "bad argument #1 to 'restore' (line 3 is not a line of conntrack's save format (-I or " ..
    "-A, as conntrack -L -o save prints))" },
  { "save_lines from beyond the text", function() conntrack.save_lines("-L\n", 5) end,
    "bad argument #2 to 'save_lines' (out of the text)" },
  { "save_command of a table", function() conntrack.save_command({}) end,
    "bad argument #1 to 'save_command' (string expected, got table)" },

  -- h:update, h:delete, h:flush
  { "update without a target", function(e) e.h:update(nil, { mark = 1 }) end,
    "bad argument #1 to 'update' (a flow or a filter is required ({} matches every entry))" },
  { "update without changes", function(e) e.h:update({ proto = "tcp" }) end,
    "bad argument #2 to 'update' (table expected, got nil)" },
  { "update with changes as a string", function(e) e.h:update({ proto = "tcp" }, "mark=1") end,
    "bad argument #2 to 'update' (table expected, got string)" },
  { "update with no changes", function(e) e.h:update({ proto = "tcp" }, {}) end,
    "bad argument #2 to 'update' (no changes given)" },
  { "update with an unknown change", function(e) e.h:update(e.flow, { marc = 1 }) end,
    "bad argument #2 to 'update' (unknown field 'marc')" },
  { "update of a tuple field", function(e) e.h:update(e.flow, { src = "10.0.0.9" }) end,
    "bad argument #2 to 'update' (field 'src' cannot be used here)" },
  { "update with a filter's unknown field", function(e) e.h:update({ dprot = 1 }, { mark = 1 }) end,
    "bad argument #1 to 'update' (unknown field 'dprot')" },
  { "update with mark mask '5/x'", function(e) e.h:update(e.flow, { mark = "5/x" }) end,
    "bad argument #2 to 'update' (field 'mark' expects a number, got 'x')" },
  { "update with timeout 1.5", function(e) e.h:update(e.flow, { timeout = 1.5 }) end,
    "bad argument #2 to 'update' (field 'timeout' expects an integer, got number)" },
  { "update with status -1", function(e) e.h:update(e.flow, { status = -1 }) end,
    "bad argument #2 to 'update' (field 'status' is out of range (0..4294967295))" },
  { "update with label bit 128", function(e) e.h:update(e.flow, { labels_add = { 128 } }) end,
    "bad argument #2 to 'update' (field 'labels_add' is out of range (0..127))" },
  { "update with labels_del without a labelmap",
    function(e) e.h:update(e.flow, { labels_del = "green" }) end,
    "bad argument #2 to 'update' (field 'labels_del': unknown label 'green' " ..
    "(no connlabel.conf loaded))" },
  { "update with a state name that does not exist", function(e) e.h:update(e.flow, { state = "OPEN!" }) end,
    "bad argument #2 to 'update' (field 'state': unknown state 'OPEN!')" },
  { "delete without a target", function(e) e.h:delete() end,
    "bad argument #1 to 'delete' (a flow or a filter is required ({} matches every entry))" },
  { "delete with a string", function(e) e.h:delete("all") end,
    "bad argument #1 to 'delete' (table, function or nil expected, got string)" },
  { "delete with sport 70000", function(e) e.h:delete{ sport = 70000 } end,
    "bad argument #1 to 'delete' (field 'sport' is out of range (0..65535))" },
  { "flush with a number", function(e) e.h:flush(5) end,
    "bad argument #1 to 'flush' (table, function or nil expected, got number)" },
  { "flush with a bad address", function(e) e.h:flush{ src = "10.0.0.300" } end,
    "bad argument #1 to 'flush' (field 'src': invalid address '10.0.0.300')" },

  -- h:listen and the events object
  { "listen with a number", function(e) e.h:listen(5) end,
    "bad argument #1 to 'listen' (table expected, got number)" },
  { "listen with an unknown option", function(e) e.h:listen{ event = { "new" } } end,
    "bad argument #1 to 'listen' (unknown option 'event')" },
  { "listen with events as a string", function(e) e.h:listen{ events = "new" } end,
    "bad argument #1 to 'listen' ('events' must be a list of kinds)" },
  { "listen with an unknown event kind", function(e) e.h:listen{ events = { "neww" } } end,
    "bad argument #1 to 'listen' (unknown event kind 'neww')" },
  { "listen with no event kind", function(e) e.h:listen{ events = {} } end,
    "bad argument #1 to 'listen' ('events' names no kind)" },
  { "listen with bufsize 0", function(e) e.h:listen{ bufsize = 0 } end,
    "bad argument #1 to 'listen' ('bufsize' out of range)" },
  { "listen with bufsize_max below bufsize",
    function(e) e.h:listen{ bufsize = 1000000, bufsize_max = 10 } end,
    "bad argument #1 to 'listen' ('bufsize_max' must be at least 'bufsize')" },
  { "listen with bufsize as a string", function(e) e.h:listen{ bufsize = "big" } end,
    "^bad argument #1 to 'listen' %(.*'bufsize'.*%)$" },
  { "listen with a filter's unknown field", function(e) e.h:listen{ filter = { dprot = 1 } } end,
    "bad argument #1 to 'listen' (unknown field 'dprot')" },
  { "listen with a filter's bad negation", function(e) e.h:listen{ filter = { src = "!10.0.0.300" } } end,
    "bad argument #1 to 'listen' (field 'src': invalid address '10.0.0.300')" },
  { "listen with a number as filter", function(e) e.h:listen{ filter = 5 } end,
    "^bad argument #1 to 'listen' %(.*'filter'.*number.*%)$" },
  { "recv with max 0", function(e) e.ev:recv(0) end,
    "bad argument #1 to 'recv' (must be positive)" },
  { "recv with max 'x'", function(e) e.ev:recv("x") end,
    "bad argument #1 to 'recv' (number expected, got string)" },
  { "wait with seconds 'x'", function(e) e.ev:wait("x") end,
    "bad argument #1 to 'wait' (number expected, got string)" },
  { "recv on a handle", function(e) e.ev.recv(e.h) end,
    "bad argument #1 to 'recv' (conntrack.events expected, got conntrack.handle)" },
  { "count on an events object", function(e) e.h.count(e.ev) end,
    "bad argument #1 to 'count' (conntrack.handle expected, got conntrack.events)" },

  { "close on a number", function(e) e.h.close(5) end,
    "bad argument #1 to 'close' (conntrack.handle expected, got number)" },
  { "stats on an events object", function(e) e.h.stats(e.ev) end,
    "bad argument #1 to 'stats' (conntrack.handle expected, got conntrack.events)" },
  { "close of an events object on a handle", function(e) e.ev.close(e.h) end,
    "bad argument #1 to 'close' (conntrack.events expected, got conntrack.handle)" },
  { "bufsize on a number", function(e) e.ev.bufsize(5) end,
    "bad argument #1 to 'bufsize' (conntrack.events expected, got number)" },
  { "explain on a flow", function(e) e.ev.explain(e.flow) end,
    "bad argument #1 to 'explain' (conntrack.events expected, got conntrack.flow)" },

  -- expectations
  { "expect_create without master", function(e) e.h:expect_create{ expected = e.T, timeout = 5 } end,
    "bad argument #1 to 'expect_create' (field 'master' is required)" },
  { "expect_create without timeout",
    function(e) e.h:expect_create{ expected = e.T, master = e.T } end,
    "bad argument #1 to 'expect_create' (field 'timeout' is required)" },
  { "expect_create without expected", function(e) e.h:expect_create{ master = e.T, timeout = 5 } end,
    "bad argument #1 to 'expect_create' (field 'expected' is required)" },
  { "expect_create with expected as a string",
    function(e) e.h:expect_create{ expected = "x", master = e.T, timeout = 5 } end,
    "bad argument #1 to 'expect_create' ('expected' must be a table of tuple fields)" },
  { "expect_create with an unknown field",
    function(e) e.h:expect_create{ expected = e.T, master = e.T, timeout = 5, foo = 1 } end,
    "bad argument #1 to 'expect_create' (unknown field 'foo')" },
  { "expect_create with an unknown tuple field",
    function(e) e.h:expect_create{ expected = e.T, master = e.T, timeout = 5, mask = { dprot = 1 } } end,
    "bad argument #1 to 'expect_create' (unknown field 'dprot')" },
  { "expect_create with a master tuple missing sport",
    function(e) e.h:expect_create{ expected = e.T, master = with(e.T, { sport = "nil" }),
                                   timeout = 5 } end,
    "bad argument #1 to 'expect_create' (field 'sport' is required)" },
  { "expect_create with an unknown flag",
    function(e) e.h:expect_create{ expected = e.T, master = e.T, timeout = 5, flags = "PERM" } end,
    "bad argument #1 to 'expect_create' (unknown expectation flag in 'PERM')" },
  { "expect_create with class 2^32",
    function(e) e.h:expect_create{ expected = e.T, master = e.T, timeout = 5, class = 1 << 32 } end,
    "bad argument #1 to 'expect_create' ('class' is out of range)" },
  { "expect_create with nat_dir 256",
    function(e) e.h:expect_create{ expected = e.T, master = e.T, timeout = 5, nat_dir = 256 } end,
    "bad argument #1 to 'expect_create' ('nat_dir' is out of range)" },
  { "expect_create with timeout -1",
    function(e) e.h:expect_create{ expected = e.T, master = e.T, timeout = -1 } end,
    "bad argument #1 to 'expect_create' ('timeout' is out of range)" },
  { "expect_create with a helper as a table",
    function(e) e.h:expect_create{ expected = e.T, master = e.T, timeout = 5, helper = {} } end,
    "^bad argument #1 to 'expect_create' %(.*'helper'.*%)$" },
  { "expect_create with zone 'z'",
    function(e) e.h:expect_create{ expected = e.T, master = e.T, timeout = 5, zone = "z" } end,
    "^bad argument #1 to 'expect_create' %(.*'zone'.*%)$" },
  { "expect_get without a table", function(e) e.h:expect_get() end,
    "bad argument #1 to 'expect_get' (table expected, got nil)" },
  { "expect_get without expected", function(e) e.h:expect_get{} end,
    "bad argument #1 to 'expect_get' (field 'expected' is required)" },
  { "expect_get with an empty expected tuple", function(e) e.h:expect_get{ expected = {} } end,
    "bad argument #1 to 'expect_get' (field 'proto' is required)" },
  { "expect_get with a number key", function(e) e.h:expect_get{ [5] = 1 } end,
    "^bad argument #1 to 'expect_get' %(.*number.*%)$" },
  { "expect_delete with a number", function(e) e.h:expect_delete(5) end,
    "bad argument #1 to 'expect_delete' (table expected, got number)" },
  { "expect_delete with a flow", function(e) e.h:expect_delete(e.flow) end,
    "bad argument #1 to 'expect_delete' (table expected, got conntrack.flow)" },
  { "expect_dump with a flow filter", function(e)
      for _ in e.h:expect_dump{ proto = "tcp" } do end  -- luacheck: ignore 512
    end,
    "bad argument #1 to 'expect_dump' (an expectation filter takes 'family' and a " ..
    "predicate, not 'proto')" },
  { "expect_dump with a number", function(e)
      for _ in e.h:expect_dump(5) do end  -- luacheck: ignore 512
    end,
    "bad argument #1 to 'expect_dump' (table, function or nil expected, got number)" },

  -- flows
  { "reading an unknown flow field", function(e) return e.flow.dprot end,
    "conntrack.flow has no field 'dprot'" },
  { "writing a flow field", function(e) e.flow.mark = 1 end,
    "conntrack.flow is read-only (field 'mark'); use handle:update(flow, changes)" },
  { "flow:format with an unknown option", function(e) e.flow:format{ xmll = true } end,
    "bad argument #1 to 'format' (unknown option 'xmll')" },
  { "flow:format with an unknown event kind", function(e) e.flow:format{ event = "neww" } end,
    "bad argument #1 to 'format' (unknown event kind 'neww')" },
  { "flow:format with a number", function(e) e.flow:format(5) end,
    "bad argument #1 to 'format' (table expected, got number)" },
  { "format on a handle", function(e) e.flow.format(e.h) end,
    "bad argument #1 to 'format' (conntrack.flow expected, got conntrack.handle)" },
  { "totable on a handle", function(e) e.flow.totable(e.h) end,
    "bad argument #1 to 'totable' (conntrack.flow expected, got conntrack.handle)" },
  { "json.flow of a number", function(e) e.json.flow(5) end,
    "json.flow: expected a conntrack.flow, got number" },
  { "json.event of a string", function(e) e.json.event("x") end,
    "json.event: expected an event table, got string" },

  -- closed objects
  { "dump on a closed handle", function(e) dump({ h = e.closed_h }) end,
    "attempt to use a closed conntrack.handle" },
  { "get on a closed handle", function(e) e.closed_h:get(e.T) end,
    "attempt to use a closed conntrack.handle" },
  { "create on a closed handle", function(e) e.closed_h:create(e.S) end,
    "attempt to use a closed conntrack.handle" },
  { "update on a closed handle", function(e) e.closed_h:update(e.flow, { mark = 1 }) end,
    "attempt to use a closed conntrack.handle" },
  { "delete on a closed handle", function(e) e.closed_h:delete(e.flow) end,
    "attempt to use a closed conntrack.handle" },
  { "listen on a closed handle", function(e) e.closed_h:listen() end,
    "attempt to use a closed conntrack.handle" },
  { "stats on a closed handle", function(e) e.closed_h:stats() end,
    "attempt to use a closed conntrack.handle" },
  { "expect_flush on a closed handle", function(e) e.closed_h:expect_flush() end,
    "attempt to use a closed conntrack.handle" },
  { "recv on a closed events object", function(e) e.closed_ev:recv() end,
    "attempt to use a closed conntrack.events" },
  { "wait on a closed events object", function(e) e.closed_ev:wait(0) end,
    "attempt to use a closed conntrack.events" },
  { "pollfd on a closed events object", function(e) e.closed_ev:pollfd() end,
    "attempt to use a closed conntrack.events" },
  { "each on a closed events object", function(e)
      for _ in e.closed_ev:each() do end  -- luacheck: ignore 512
    end,
    "attempt to use a closed conntrack.events" },
  { "the iterator of a finished dump", function(e) e.dump_iter(e.closed_dump) end,
    "attempt to use a closed conntrack.dump" },
  { "recv on closed signals", function(e) e.closed_sig:recv() end,
    "attempt to use a closed conntrack.signals" },

  -- conntrack.poll and conntrack.signals
  { "poll with a number", function() conntrack.poll(5) end,
    "bad argument #1 to 'poll' (table expected, got number)" },
  { "poll with a table that is not pollable", function() conntrack.poll({ {} }, 0) end,
    "bad argument #1 to 'poll' (object 1 has no method 'pollfd')" },
  { "poll with a handle", function(e) conntrack.poll({ e.ev, e.h }, 0) end,
    "bad argument #1 to 'poll' (object 2 has no method 'pollfd')" },
  { "poll with a closed events object", function(e) conntrack.poll({ e.closed_ev }, 0) end,
    "attempt to use a closed conntrack.events" },
  { "poll with 65 objects", function(e)
      local many = {}
      for i = 1, 65 do many[i] = e.ev end
      conntrack.poll(many, 0)
    end,
    "bad argument #1 to 'poll' (too many objects)" },
  { "poll with seconds 'x'", function() conntrack.poll({}, "x") end,
    "bad argument #2 to 'poll' (number expected, got string)" },
  { "poll with a number as an object", function() conntrack.poll({ 5 }, 0) end,
    "^bad argument #1 to 'poll' %(.*object 1.*%)$" },
  { "poll with a pollfd that is no number", function()
      conntrack.poll({ { pollfd = function() return "x" end, events = function() return "r" end,
                         timeout = function() end } }, 0)
    end,
    "^bad argument #1 to 'poll' %(.*object 1.*pollfd.*%)$" },
  { "signals with a string", function() conntrack.signals("HUP") end,
    "bad argument #1 to 'signals' (table expected, got string)" },
  { "signals with an unknown name", function() conntrack.signals{ "FOO" } end,
    "bad argument #1 to 'signals' (unknown signal 'FOO')" },
  { "signals with KILL (which cannot be caught)", function() conntrack.signals{ "KILL" } end,
    "bad argument #1 to 'signals' (unknown signal 'KILL')" },
  { "signals with a number", function() conntrack.signals{ 9 } end,
    "bad argument #1 to 'signals' ('signal name' must be a string, got number)" },
  { "signals with a table member", function() conntrack.signals{ {} } end,
    "^bad argument #1 to 'signals' %(.*table.*%)$" },
}

--- Runs one case in env; returns true, or false and what was raised (or "no error").
local function check(case, env)
  local ok, err = pcall(case[2], env)
  if ok then return false, "no error" end
  local message = type(err) == "string" and (err:gsub("^[^:\n]+:%d+: ", "", 1))
                  or "(an error object: " .. tostring(err) .. ")"
  local expected = case[3]
  if expected:sub(1, 1) == "^" then
    return message:find(expected) ~= nil, message
  end
  return message == expected, message
end

-- A plain script under ct-lua: the catalogue, or one case (--case N), in this process.
if describe == nil then
  local env = make_env()
  local args = { ... }
  if args[1] == "--case" then
    local case = assert(CASES[tonumber(args[2])], "no such case")
    local ok, message = check(case, env)
    io.write(ok and "ok\t" or "wrong\t", message, "\n")
    os.exit(0, true)
  end
  local run, failed = 0, 0
  for i, case in ipairs(CASES) do
    if not case.bug then
      local ok, message = check(case, env)
      run = run + 1
      if not ok then
        failed = failed + 1
        io.write("not ok ", i, " ", case[1], ": ", message, "\n")
      end
    end
  end
  collectgarbage()
  io.write(run, " cases, ", failed, " failed\n")
  os.exit(failed == 0 and 0 or 1, true)
end

---------------------------------------------------------------------------------------

local H = require "helpers"

describe("misuse of the Lua API", function()
  local env

  lazy_setup(function()
    H.reset()
    env = make_env()
  end)

  it("has a catalogue of at least 60 misuses, described and with distinct calls", function()
    local described = {}
    for _, case in ipairs(CASES) do
      assert.is_nil(described[case[1]], case[1])
      described[case[1]] = true
      assert.is_function(case[2], case[1])
      assert.is_string(case[3], case[1])
    end
    assert.is_true(#CASES >= 60, #CASES .. " cases")
  end)

  for i, case in ipairs(CASES) do
    if not case.bug then
      it(case[1] .. " raises: " .. case[3], function()
        local ok, message = check(case, env)
        assert(ok, "case " .. i .. " raised: " .. message .. "\nexpected: " .. case[3])
      end)
    else
      it(case[1] .. " raises an error naming the function and the field (its own process)",
         function()
        local out, status, err = H.run("./ct-lua tests/misuse_spec.lua --case " .. i)
        local ok = status == 0 and out:match("^ok\t")
        if not ok then
          pending("BUG: " .. case.bug .. " (now: " ..
                  (status == 0 and out:gsub("\n$", "") or
                   "status " .. status .. ", " .. err:match("[^\n]*")) .. ")")
        end
      end)
    end
  end

  it("runs whole in one ct-lua process, without a crash", function()
    local out, status, err = H.run("./ct-lua tests/misuse_spec.lua")
    assert.equal(0, status, out .. err)
    assert.matches("^%d+ cases, 0 failed\n$", out)
  end)

  it("runs whole under valgrind: no invalid access on the error paths, no leak", function()
    if os.getenv("CT_SANITIZE") == "asan" then
      pending("./ct-lua is an ASan build (make check-asan), which valgrind cannot run")
      return
    end
    local out, status, err = H.run("valgrind --error-exitcode=99 --leak-check=full " ..
                                   "--show-leak-kinds=definite,indirect,possible " ..
                                   "--errors-for-leak-kinds=definite,indirect,possible " ..
                                   "./ct-lua tests/misuse_spec.lua")
    assert.equal(0, status, out .. err)
    assert.matches("^%d+ cases, 0 failed\n$", out)
    assert.truthy(err:find("ERROR SUMMARY: 0 errors", 1, true), err)
  end)
end)
