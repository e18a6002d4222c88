--- conntrack's protocol handlers: the options that exist only after `-p PROTO`, how each
-- one sets the template, the names and rules of their option bits (checked after the
-- generic ones, by the handler's "final check"), and their lines in `-h -p PROTO`.
--
-- Rules use the same words as rules.lua: `mandatory`, `optional`, and `pair` for the
-- options of which a whole tuple pair must be given ({sport, dport} or the reply pair).
-- A command that a handler does not list allows none of its options.
-- @module conntrack.cli.protocols
local values = require "conntrack.cli.values"

local M = {}

local atoi, strtoul, trunc, bswap32 = values.atoi, values.strtoul, values.trunc, values.bswap32

local function port(arg) return trunc(atoi(arg), 16) end
local function key(arg) return trunc((strtoul(arg, 0)), 16) end

local TCP_STATES = { "NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
                     "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2" }
local SCTP_STATES = { "NONE", "CLOSED", "COOKIE_WAIT", "COOKIE_ECHOED", "ESTABLISHED",
                      "SHUTDOWN_SENT", "SHUTDOWN_RECD", "SHUTDOWN_ACK_SENT" }
local DCCP_STATES = { "NONE", "REQUEST", "RESPOND", "PARTOPEN", "OPEN", "CLOSEREQ", "CLOSING",
                      "TIMEWAIT", "IGNORE", "INVALID" }

--- Puts in spec (a library create spec or update changes) the window-tracking flags
-- conntrack's tcp handler gives both directions of every entry it writes with -p tcp:
-- tracking off (BE_LIBERAL, SACK_PERM) so that a hand-made entry passes real packets, and
-- CLOSE_INIT from TIME_WAIT (the template's state) on so that it may reopen.
-- The two sets are shared by every spec (the library only reads them).
local WINDOW_FLAGS = { BE_LIBERAL = true, SACK_PERM = true }
local WINDOW_FLAGS_REOPEN = { BE_LIBERAL = true, SACK_PERM = true, CLOSE_INIT = true }
function M.set_window_flags(spec, state)
  local flags = WINDOW_FLAGS
  for i = 8, #TCP_STATES do
    if TCP_STATES[i] == state then flags = WINDOW_FLAGS_REOPEN end
  end
  spec.tcp_flags, spec.reply_tcp_flags = flags, flags
end

local function find_state(states, name)
  for _, s in ipairs(states) do
    if s == name then return s end
  end
end

-- An ICMP option also gives the reply tuple its protocol, as conntrack's handler does, but
-- only when a reply address came before it (ct.reply_icmp): `-r X --icmp-type 8 ...`
-- sends an ICMP reply tuple, `--icmp-type 8 ... -r X` one of protocol 0.
local function icmp_option(cmd, h)
  cmd.ct.proto = h.num
  if cmd.ct.reply_src or cmd.ct.reply_dst then cmd.ct.reply_icmp = true end
end

-- What each kind of option does to the command being built (cmd.ct is the template of
-- the entry, cmd.mask and cmd.exptuple those of an expectation). Each returns nothing or
-- raises through cmd.fail.
local set = {
  orig_sport = function(cmd, arg, h) cmd.ct.sport = port(arg); cmd.ct.proto = h.num end,
  orig_dport = function(cmd, arg, h) cmd.ct.dport = port(arg); cmd.ct.proto = h.num end,
  repl_sport = function(cmd, arg) cmd.ct.reply_sport = port(arg) end,
  repl_dport = function(cmd, arg) cmd.ct.reply_dport = port(arg) end,
  mask_sport = function(cmd, arg) cmd.mask.sport = port(arg) end,
  mask_dport = function(cmd, arg) cmd.mask.dport = port(arg) end,
  -- 1.4.7 stores the port as the expectation's layer-4 protocol (tcp, sctp, dccp); we
  -- keep the protocol of -p (README: where ct-lua conntrack differs)
  tuple_sport = function(cmd, arg) cmd.exptuple.sport = port(arg) end,
  tuple_dport = function(cmd, arg) cmd.exptuple.dport = port(arg) end,
  orig_key = function(cmd, arg, h) cmd.ct.srckey = key(arg); cmd.ct.proto = h.num end,
  dest_key = function(cmd, arg, h) cmd.ct.dstkey = key(arg); cmd.ct.proto = h.num end,
  repl_skey = function(cmd, arg) cmd.ct.reply_srckey = key(arg) end,
  repl_dkey = function(cmd, arg) cmd.ct.reply_dstkey = key(arg) end,
  mask_skey = function(cmd, arg) cmd.mask.srckey = key(arg) end,
  mask_dkey = function(cmd, arg) cmd.mask.dstkey = key(arg) end,
  tuple_skey = function(cmd, arg) cmd.exptuple.srckey = key(arg) end,
  tuple_dkey = function(cmd, arg) cmd.exptuple.dstkey = key(arg) end,
  -- the reply's type is the inverse of this one in the family known by then (from -s, -d,
  -- --src-nat or --dst-nat): before them there is none, and the reply type becomes 255
  -- (ct.icmp_type_early)
  icmp_type = function(cmd, arg, h)
    cmd.ct.icmp_type = trunc(atoi(arg), 8)
    cmd.ct.icmp_type_early = not (cmd.ct.src or cmd.ct.dst or cmd.nat.src or cmd.nat.dst)
    icmp_option(cmd, h)
  end,
  icmp_code = function(cmd, arg, h) cmd.ct.icmp_code = trunc(atoi(arg), 8); icmp_option(cmd, h) end,
  icmp_id = function(cmd, arg, h) cmd.ct.icmp_id = port(arg); icmp_option(cmd, h) end,
  -- conntrack byte-swaps the tag (htonl on a value libnetfilter_conntrack converts
  -- again), so the kernel's tag, which the library reads and writes, is the swap of it
  vtag = function(cmd, arg) cmd.ct.vtag = bswap32(trunc(atoi(arg), 32)) end,
  reply_vtag = function(cmd, arg) cmd.ct.reply_vtag = bswap32(trunc(atoi(arg), 32)) end,
  tcp_state = function(cmd, arg)
    local s = find_state(TCP_STATES, arg)
    if arg == "LISTEN" then s = "SYN_SENT2" end
    if not s then cmd.fail(2, "unknown TCP state `%s'", arg) end
    cmd.ct.state = s
  end,
  sctp_state = function(cmd, arg)
    local s = find_state(SCTP_STATES, arg)
    if not s then cmd.fail(2, "unknown SCTP state `%s'", arg) end
    cmd.ct.state = s
  end,
  dccp_state = function(cmd, arg)
    local s = find_state(DCCP_STATES, arg)
    if not s then cmd.fail(2, "Unknown DCCP state `%s'", arg) end
    cmd.ct.state = s
  end,
  dccp_role = function(cmd, arg)
    local l = arg:lower()
    if l == ("client"):sub(1, #l) and #l <= 6 then cmd.ct.role = "client"
    elseif l == ("server"):sub(1, #l) and #l <= 6 then cmd.ct.role = "server"
    else cmd.fail(2, "Unknown DCCP role `%s'", arg) end
  end,
}

local B = string.byte

-- Port handlers: tcp, udp, udplite (no state), sctp and dccp (own codes and extras).
local PORT_HELP = {
  "  --orig-port-src\t\toriginal source port",
  "  --orig-port-dst\t\toriginal destination port",
  "  --reply-port-src\t\treply source port",
  "  --reply-port-dst\t\treply destination port",
  "  --mask-port-src\t\tmask source port",
  "  --mask-port-dst\t\tmask destination port",
  "  --tuple-port-src\t\texpectation tuple src port",
  "  --tuple-port-src\t\texpectation tuple dst port",
}

local function with(list, ...)
  local t = table.move(list, 1, #list, 1, {})
  for _, v in ipairs({ ... }) do t[#t + 1] = v end
  return t
end

local PORT_PAIRS = { { "sport", "dport" }, { "reply-port-src", "reply-port-dst" } }
local PORT_PAIR_MSGS = { "you have to specify `--sport' and `--dport'",
                         "you have to specify `--reply-src-port' and `--reply-dst-port'" }
local PORTS4 = { "sport", "dport", "reply-port-src", "reply-port-dst" }

-- The rules of the port handlers; extra lists options only some of them have.
local function port_rules(extra)
  extra = extra or {}
  local function e(cmd) return extra[cmd] or {} end
  return {
    CT_LIST = { optional = with(PORTS4, table.unpack(e("list"))) },
    CT_GET = { pair = PORTS4, optional = e("get") },
    CT_DELETE = { optional = with(PORTS4, table.unpack(e("list"))) },
    CT_CREATE = { pair = PORTS4, mandatory = e("create") },
    CT_UPDATE = { optional = with(PORTS4, table.unpack(e("update"))) },
    CT_EVENT = { optional = with(PORTS4, table.unpack(e("list"))) },
    EXP_CREATE = { mandatory = with({ "sport", "dport", "mask-port-src", "mask-port-dst",
                                      "tuple-port-src", "tuple-port-dst" },
                                    table.unpack(e("expect"))) },
    EXP_DELETE = { mandatory = PORTS4 },
    EXP_GET = { mandatory = PORTS4 },
  }
end

local function tcp(name, num)
  return {
    name = name, num = num,
    opts = {
      { "orig-port-src", B"1" }, { "sport", B"1" }, { "orig-port-dst", B"2" }, { "dport", B"2" },
      { "reply-port-src", B"3" }, { "reply-port-dst", B"4" }, { "mask-port-src", B"5" },
      { "mask-port-dst", B"6" }, { "state", B"7" }, { "tuple-port-src", B"8" },
      { "tuple-port-dst", B"9" },
    },
    codes = {
      [B"1"] = { 0, set.orig_sport }, [B"2"] = { 1, set.orig_dport }, [B"3"] = { 2, set.repl_sport },
      [B"4"] = { 3, set.repl_dport }, [B"5"] = { 4, set.mask_sport }, [B"6"] = { 5, set.mask_dport },
      [B"7"] = { 6, set.tcp_state }, [B"8"] = { 7, set.tuple_sport }, [B"9"] = { 8, set.tuple_dport },
    },
    flags = { "sport", "dport", "reply-port-src", "reply-port-dst", "mask-port-src",
              "mask-port-dst", "state", "tuple-port-src", "tuple-port-dst" },
    help = with(PORT_HELP, "  --state\t\t\tTCP state, fe. ESTABLISHED"),
    rules = port_rules{ list = { "state" }, get = { "state" }, create = { "state" },
                        update = { "state" } },
    pairs = PORT_PAIRS, pair_msgs = PORT_PAIR_MSGS,
  }
end

local function udp_like(name, num)
  return {
    name = name, num = num,
    opts = {
      { "orig-port-src", B"1" }, { "sport", B"1" }, { "orig-port-dst", B"2" }, { "dport", B"2" },
      { "reply-port-src", B"3" }, { "reply-port-dst", B"4" }, { "mask-port-src", B"5" },
      { "mask-port-dst", B"6" }, { "tuple-port-src", B"7" }, { "tuple-port-dst", B"8" },
    },
    codes = {
      [B"1"] = { 0, set.orig_sport }, [B"2"] = { 1, set.orig_dport }, [B"3"] = { 2, set.repl_sport },
      [B"4"] = { 3, set.repl_dport }, [B"5"] = { 4, set.mask_sport }, [B"6"] = { 5, set.mask_dport },
      [B"7"] = { 6, set.tuple_sport }, [B"8"] = { 7, set.tuple_dport },
    },
    flags = { "sport", "dport", "reply-port-src", "reply-port-dst", "mask-port-src",
              "mask-port-dst", "tuple-port-src", "tuple-port-dst" },
    help = PORT_HELP,
    rules = port_rules(),
    pairs = PORT_PAIRS, pair_msgs = PORT_PAIR_MSGS,
  }
end

local function sctp(name, num)
  return {
    name = name, num = num,
    opts = {
      { "orig-port-src", 1 }, { "orig-port-dst", 2 }, { "reply-port-src", 3 },
      { "reply-port-dst", 4 }, { "mask-port-src", 5 }, { "mask-port-dst", 6 }, { "state", 7 },
      { "tuple-port-src", 8 }, { "tuple-port-dst", 9 }, { "orig-vtag", 10 }, { "reply-vtag", 11 },
      { "sport", 1 }, { "dport", 2 },
    },
    codes = {
      [1] = { 0, set.orig_sport }, [2] = { 1, set.orig_dport }, [3] = { 2, set.repl_sport },
      [4] = { 3, set.repl_dport }, [5] = { 4, set.mask_sport }, [6] = { 5, set.mask_dport },
      [7] = { 6, set.sctp_state }, [8] = { 7, set.tuple_sport }, [9] = { 8, set.tuple_dport },
      [10] = { 9, set.vtag }, [11] = { 10, set.reply_vtag },
    },
    flags = { "sport", "dport", "reply-port-src", "reply-port-dst", "mask-port-src",
              "mask-port-dst", "state", "tuple-port-src", "tuple-port-dst", "orig-vtag",
              "reply-vtag" },
    help = with(PORT_HELP, "  --state\t\t\tSCTP state, fe. ESTABLISHED",
                "  --orig-vtag\t\toriginal verification tag",
                "  --reply-vtag\t\treply verification tag"),
    rules = port_rules{ list = { "state" }, get = { "state", "orig-vtag", "reply-vtag" },
                        create = { "state", "orig-vtag", "reply-vtag" },
                        update = { "state", "orig-vtag", "reply-vtag" },
                        expect = { "orig-vtag", "reply-vtag" } },
    pairs = PORT_PAIRS, pair_msgs = PORT_PAIR_MSGS,
  }
end

local function dccp(name, num)
  return {
    name = name, num = num,
    opts = {
      { "orig-port-src", 1 }, { "orig-port-dst", 2 }, { "reply-port-src", 3 },
      { "reply-port-dst", 4 }, { "mask-port-src", 5 }, { "mask-port-dst", 6 }, { "state", 7 },
      { "tuple-port-src", 8 }, { "tuple-port-dst", 9 }, { "sport", 1 }, { "dport", 2 },
      { "role", 10 },
    },
    codes = {
      [1] = { 0, set.orig_sport }, [2] = { 1, set.orig_dport }, [3] = { 2, set.repl_sport },
      [4] = { 3, set.repl_dport }, [5] = { 4, set.mask_sport }, [6] = { 5, set.mask_dport },
      [7] = { 6, set.dccp_state }, [8] = { 7, set.tuple_sport }, [9] = { 8, set.tuple_dport },
      [10] = { 9, set.dccp_role },
    },
    flags = { "sport", "dport", "reply-port-src", "reply-port-dst", "mask-port-src",
              "mask-port-dst", "state", "tuple-port-src", "tuple-port-dst", "role" },
    help = with(PORT_HELP, "  --state\t\t\tDCCP state, fe. RESPOND"),
    rules = port_rules{ list = { "state" }, get = { "state" }, create = { "state", "role" },
                        update = { "state" }, expect = { "role" } },
    pairs = PORT_PAIRS,
    pair_msgs = { "you have to specify `--sport' and `--dport'",
                  "you have to specify `--reply-port-src' and `--report-port-dst'" },
  }
end

local KEYS4 = { "srckey", "dstkey", "reply-key-src", "reply-key-dst" }
local function gre(name, num)
  return {
    name = name, num = num,
    opts = {
      { "orig-key-src", B"1" }, { "srckey", B"1" }, { "orig-key-dst", B"2" }, { "dstkey", B"2" },
      { "reply-key-src", B"3" }, { "reply-key-dst", B"4" }, { "mask-key-src", B"5" },
      { "mask-key-dst", B"6" }, { "tuple-key-src", B"7" }, { "tuple-key-dst", B"8" },
    },
    codes = {
      [B"1"] = { 0, set.orig_key }, [B"2"] = { 1, set.dest_key }, [B"3"] = { 2, set.repl_skey },
      [B"4"] = { 3, set.repl_dkey }, [B"5"] = { 4, set.mask_skey }, [B"6"] = { 5, set.mask_dkey },
      [B"7"] = { 6, set.tuple_skey }, [B"8"] = { 7, set.tuple_dkey },
    },
    flags = { "srckey", "dstkey", "reply-key-src", "reply-key-dst", "mask-key-src",
              "mask-key-dst", "tuple-key-src", "tuple-key-dst" },
    help = {
      "  --orig-key-src\t\toriginal source key", "  --orig-key-dst\t\toriginal destination key",
      "  --reply-key-src\t\treply source key", "  --reply-key-dst\t\treply destination key",
      "  --mask-key-src\t\tmask source key", "  --mask-key-dst\t\tmask destination key",
      "  --tuple-key-src\t\texpectation tuple src key",
      "  --tuple-key-src\t\texpectation tuple dst key",
    },
    rules = {
      CT_LIST = { optional = KEYS4 }, CT_GET = { pair = KEYS4 }, CT_DELETE = { optional = KEYS4 },
      CT_CREATE = { pair = KEYS4 }, CT_UPDATE = { optional = KEYS4 }, CT_EVENT = { optional = KEYS4 },
      EXP_CREATE = { mandatory = { "srckey", "dstkey", "reply-key-src", "reply-key-dst",
                                   "mask-key-src", "mask-key-dst", "tuple-key-src",
                                   "tuple-key-dst" } },
      EXP_DELETE = { mandatory = KEYS4 }, EXP_GET = { mandatory = KEYS4 },
    },
    pairs = { { "srckey", "dstkey" }, { "reply-key-src", "reply-key-dst" } },
    pair_msgs = { "you have to specify `--srckey' and `--dstkey'",
                  "you have to specify `--reply-src-key' and `--reply-dst-key'" },
  }
end

-- icmp and icmpv6: their options are named after them (--icmpv6-type).
local function icmp_like(name, num)
  local T, C, I = name .. "-type", name .. "-code", name .. "-id"
  return {
    name = name, num = num,
    opts = { { T, B"1" }, { C, B"2" }, { I, B"3" } },
    codes = { [B"1"] = { 0, set.icmp_type }, [B"2"] = { 1, set.icmp_code },
              [B"3"] = { 2, set.icmp_id } },
    flags = { T, C, I },
    help = { "  --" .. T .. "\t\t\t" .. name .. " type", "  --" .. C .. "\t\t\t" .. name .. " code",
             "  --" .. I .. "\t\t\t" .. name .. " id" },
    rules = {
      CT_LIST = { optional = { T, C, I } }, CT_GET = { mandatory = { T, C }, optional = { I } },
      CT_DELETE = { optional = { T, C, I } }, CT_CREATE = { mandatory = { T, C }, optional = { I } },
      CT_UPDATE = { optional = { T, C, I } }, CT_EVENT = { optional = { T, C, I } },
    },
  }
end

-- The handlers, in the order conntrack registers them: name, number and the function that
-- builds the handler's tables from them. A handler is built when a command line first names
-- it, then kept (parse.lua caches by handler): building all eight was a fifth of
-- `ct-lua conntrack -G`'s start-up.
local REGISTERED = {
  { name = "tcp", num = 6, build = tcp }, { name = "udp", num = 17, build = udp_like },
  { name = "udplite", num = 136, build = udp_like }, { name = "sctp", num = 132, build = sctp },
  { name = "dccp", num = 33, build = dccp }, { name = "icmp", num = 1, build = icmp_like },
  { name = "icmpv6", num = 58, build = icmp_like }, { name = "gre", num = 47, build = gre },
}
local built = {}

local function handler(r)
  built[r] = built[r] or r.build(r.name, r.num)
  return built[r]
end

--- The handler of protocols without options.
M.unknown = { name = "unknown", opts = {}, codes = {}, flags = {},
              help = { "  no options (unsupported)" }, rules = {} }

--- conntrack's findproto: a handler by name (any case), then getprotobyname (the unknown
-- handler with that number), then a number (its handler if there is one). Returns the
-- handler and the protocol number, or nil.
function M.find(name)
  local l = name:lower()
  for _, r in ipairs(REGISTERED) do
    if r.name == l then return handler(r), r.num end
  end
  local num = values.getprotobyname(name)
  if num then return M.unknown, num end
  num = values.proto_number(name)
  if num then
    for _, r in ipairs(REGISTERED) do
      if r.num == num then return handler(r), num end
    end
    return M.unknown, num
  end
  return nil
end

--- `Proto `NAME' help:` and the handler's lines, as -h -p prints them.
function M.help(h, num)
  local name = h.name
  if h == M.unknown then name = values.getprotobynumber(num) or h.name end
  return "Proto `" .. name .. "' help:\n" .. table.concat(h.help, "\n") .. "\n"
end

return M
