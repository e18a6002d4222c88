--- conntrack's do_parse: one command line into a command table, with every error of
-- 1.4.7 raised in the same order (getopt order while scanning, then the family default,
-- --any-nat, the option rules in bit order, the tuple pairs, the protocol's own rules).
--
-- Errors are raised as { status = 1|2, msg = "..." } (see init.lua); lines that conntrack
-- prints without its prefix (warnings, perror) are written to ctx.err as they happen.
--
-- The command table:
--   command   "CT_LIST", "EXP_GET", ... or "NONE"; table: the table word's choice
--   options   set of the option names given (their bit names, e.g. "src", "mask-src")
--   family    nil, "ipv4" or "ipv6"
--   handler, protonum   the protocol of -p, and l4flags the set of its options given
--   ct        the template of the entry: src, dst, reply_src, reply_dst (addresses:
--             { family, bytes, text }), proto, ports, keys, icmp fields, state, timeout,
--             zone, orig_zone, reply_zone, secmark, id, vtag, role
--   mask, exptuple   the templates of an expectation's mask and expected tuple
--   mark      { value, mask } of -m; status { value, mask, kernel_mask } of -u
--   nat       { src = { addr, port }, dst = ..., any = bool }
--   labels    { filter = {names}, add = {names}, del = {names} | true (all) }
--   output    set of -o names; event_mask; bufsize; netns
-- @module conntrack.cli.parse
local getopt = require "conntrack.cli.getopt"
local options = require "conntrack.cli.options"
local rules = require "conntrack.cli.rules"
local lazy = require "conntrack.cli.lazy"
-- loaded when an option needs them (start-up time matters for -C and -G)
local values = lazy "conntrack.cli.values"
local protocols = lazy "conntrack.cli.protocols"
local labelmap = lazy "conntrack.cli.labelmap"

local M = {}

local fmt, byte, concat = string.format, string.byte, table.concat

local function fail(status, f, ...)
  error({ status = status, msg = select("#", ...) > 0 and fmt(f, ...) or f }, 0)
end
M.fail = fail

local STATUS_NAMES = { "ASSURED", "SEEN_REPLY", "UNSET", "FIXED_TIMEOUT", "EXPECTED", "OFFLOAD",
                       "HW_OFFLOAD" }
local STATUS_BITS = { ASSURED = 4, SEEN_REPLY = 2, UNSET = 0, FIXED_TIMEOUT = 1024,
                      EXPECTED = 1, OFFLOAD = 1 << 14, HW_OFFLOAD = 1 << 15 }
local EVENT_NAMES = { "ALL", "NEW", "UPDATES", "DESTROY" }
local EVENT_BITS = { ALL = 7, NEW = 1, UPDATES = 2, DESTROY = 4 }
-- json is ct-lua's; it comes last so that conntrack's prefixes keep their meaning
local OUTPUT_NAMES = { "xml", "extended", "timestamp", "id", "ktimestamp", "labels",
                       "userspace", "save", "json" }
M.STATUS_BITS = STATUS_BITS

-- One item of a -u/-e/-o list (do_parse_parameter): the SRC_NAT/DST_NAT warning, or the
-- name matched, or false.
local function list_item(ctx, text, names)
  local m = values.match_item(text, names)
  if m == "SRC_NAT" or m == "DST_NAT" then
    ctx.err:write("WARNING: ignoring ", m, ", use --", m == "SRC_NAT" and "src" or "dst",
                  "-nat instead\n")
    return true, nil
  end
  if m then return true, names[m] end
  return false
end

-- parse_parameter: every item must match; returns the list of names matched.
local function parse_list(ctx, arg, names)
  local got = {}
  for _, item in ipairs(values.split_list(arg)) do
    if item.text == "" then fail(2, "Bad parameter `%s'", item.rest) end
    local ok, name = list_item(ctx, item.text, names)
    if not ok then fail(2, "Bad parameter `%s'", item.rest) end
    if name then got[#got + 1] = name end
  end
  return got
end

-- parse_parameter_mask for -u: names add to the value, !names to the mask, UNREPLIED
-- (a case-sensitive prefix test of the rest of the list) puts SEEN_REPLY in the mask.
-- Returns the bits of the value and of the mask, and whether a warning was printed.
local function status_list(ctx, arg)
  local value, mask, warned = 0, 0, false
  for _, item in ipairs(values.split_list(arg)) do
    local text, rest = item.text, item.rest
    if text == "" and not item.last then fail(2, "Bad parameter `%s'", rest) end
    local negated = text:sub(1, 1) == "!"
    if negated then
      text, rest = text:sub(2), rest:sub(2)
      if text == "" and not item.last then fail(2, "Bad parameter `%s'", rest) end
    end
    if not negated and rest:sub(1, 9) == "UNREPLIED" then
      mask = mask | STATUS_BITS.SEEN_REPLY
    else
      if text == "" then fail(2, "Bad parameter `%s'", rest) end
      local ok, name = list_item(ctx, text, STATUS_NAMES)
      if not ok then fail(2, "Bad parameter `%s'", rest) end
      if not name then
        warned = true
      elseif negated then
        mask = mask | STATUS_BITS[name]
      else
        value = value | STATUS_BITS[name]
      end
    end
  end
  return value, mask, warned
end

-- The same -u lists come line after line in -R files: their bits are kept (not those of
-- a list that warns, so that the warning comes every time).
local status_lists, status_lists_count = {}, 0
local STATUS_LISTS_MAX = 256

-- -u's list arg added to status (-u may be given more than once).
local function parse_status(ctx, arg, status)
  local known = status_lists[arg]
  local value, mask, warned
  if known then
    value, mask = known[1], known[2]
  else
    value, mask, warned = status_list(ctx, arg)
    if not warned and status_lists_count < STATUS_LISTS_MAX then
      status_lists[arg] = { value, mask }
      status_lists_count = status_lists_count + 1
    end
  end
  status.value, status.mask = status.value | value, status.mask | mask
end

-- The attribute an address option sets, and the option of its CIDR mask.
local ADDR_OPTS = {
  s = { field = "src", maskopt = "{", where = "ct" },
  d = { field = "dst", maskopt = "}", where = "ct" },
  r = { field = "reply_src", where = "ct" },
  q = { field = "reply_dst", where = "ct" },
  ["["] = { field = "src", maskopt = "{", where = "exptuple" },
  ["]"] = { field = "dst", maskopt = "}", where = "exptuple" },
  ["{"] = { field = "src", where = "mask" },
  ["}"] = { field = "dst", where = "mask" },
  n = { field = "snat", where = "nat" },
  g = { field = "dnat", where = "nat" },
  j = { field = "anynat", where = "nat" },
}

local function set_family(cmd, family)
  if cmd.family == nil then
    cmd.family = family
  elseif cmd.family ~= family then
    fail(2, "mismatched address family")
  end
end

-- nfct_parse_addr_from_opt: an address option (with a CIDR suffix where allowed).
local function parse_addr_opt(cmd, c, arg)
  local spec = ADDR_OPTS[c]
  local addr, prefix = values.parse_addr(arg, true)
  if not addr then fail(2, "Invalid IP address `%s'", arg) end
  set_family(cmd, addr.family)
  if prefix ~= nil and not spec.maskopt then
    fail(2, "CIDR notation unavailable for `--%s'", options.long_name(c))
  elseif prefix == -2 then
    fail(2, "Invalid netmask")
  end
  cmd.options[options.by_key[c].name] = true
  if spec.where == "nat" then return addr end
  cmd[spec.where][spec.field] = addr
  if prefix == nil or (prefix == 32 and addr.family == "ipv4") or
     (prefix == 128 and addr.family == "ipv6") then
    return addr
  end
  local maskbytes = values.prefix_mask(prefix, #addr.bytes)
  cmd.mask[spec.field] = { family = addr.family, bytes = maskbytes,
                           text = values.addr_text(maskbytes), prefix = prefix }
  cmd.options[options.by_key[spec.maskopt].name] = true
  return addr
end

-- get_optional_arg: an attached argument is ignored (1.4.7's quirk); otherwise the next
-- word when it does not start with '-' or '!'.
local function optional_arg(g)
  if g.optarg then return nil end
  local w = g.argv[g.optind]
  if g.optind < g.argc and w:sub(1, 1) ~= "-" and w:sub(1, 1) ~= "!" then
    g.optind = g.optind + 1
    return w
  end
  return nil
end

local TABLES = { "expect", "conntrack", "dying", "unconfirmed" }

local function add_command(cmd, name)
  if cmd.command ~= "NONE" then fail(2, "Invalid commands combination") end
  cmd.command = name
end

-- The option string's letters of the commands.
local COMMAND_KEYS = { L = true, I = true, D = true, G = true, F = true, E = true, V = true,
                       h = true, C = true, S = true, U = true, A = true }

local function u32(v) return v & 0xffffffff end

-- The long options of protocol handler h merged at offset (conntrack's merge_options),
-- built once per handler and offset: -R merges them again on every line.
local merged = setmetatable({}, { __mode = "k" })
local function handler_longopts(h, offset)
  local by_offset = merged[h] or {}
  merged[h] = by_offset
  local list = by_offset[offset]
  if not list then
    list = {}
    for k, o in ipairs(h.opts) do list[k] = { name = o[1], has_arg = 1, val = o[2] + offset } end
    by_offset[offset] = list
  end
  return list
end

-- The option names in bit order, as rules.check takes them (built once).
local OPTION_NAMES
local function option_names()
  if not OPTION_NAMES then
    OPTION_NAMES = {}
    for bit = 0, options.NUMBER_OF_OPT - 1 do OPTION_NAMES[bit + 1] = options.bit_names[bit] end
  end
  return OPTION_NAMES
end

-- The command table before any option, and the parse's state between options: the
-- protocol handler of the last -p, conntrack's global_option_offset and each handler's
-- option_offset (its latest merge), the handler flag bits set (whichever handler set
-- them), and -u's value and mask (which accumulate over the options).
local function new_command(argv0, output)
  local seeded = {}
  for k, v in pairs(output or {}) do seeded[k] = v end
  local cmd = {
    command = "NONE", table = "conntrack", options = {}, ct = {}, mask = {}, exptuple = {},
    nat = {}, output = seeded, l4flags = {}, labels = {}, fail = fail, argv0 = argv0,
  }
  return cmd, { h = nil, offset = 0, offsets = {}, l4bits = {}, status = { value = 0, mask = 0 } }
end

-- check_type: the table named by word (by prefix, in this order), or conntrack.
local function table_of(word)
  if word == nil then return "conntrack" end
  for _, t in ipairs(TABLES) do
    if t:sub(1, #word) == word then return t end
  end
  fail(2, "unknown type `%s'", word)
end

-- What each option does to cmd: ON[c](ctx, cmd, st, c, arg, word) for getopt's return c
-- with its argument arg; word is the next word conntrack took for the option
-- (get_optional_arg: see TAKES_WORD), st the parse's state. -p returns the long options
-- it adds to getopt's list. A table rather than a chain of tests: -R runs it for every
-- option of every line, twice.
local ON = {}

local function on_command(_, cmd, _, c, _, word)
  local tbl = table_of(word)
  local o = options.by_key[c]
  if c == "L" then
    if tbl == "dying" or tbl == "unconfirmed" then
      add_command(cmd, o.command[1])
    else
      add_command(cmd, o.command[tbl == "expect" and 2 or 1])
    end
  else
    if tbl == "dying" or tbl == "unconfirmed" then
      fail(2, "Can't do that command with tables `dying' and `unconfirmed'")
    end
    local name = o.command[tbl == "expect" and 2 or 1]
    if not name then
      fail(2, "Can't do --%s on %s", options.long_name(c),
           tbl == "conntrack" and "conntrack" or "expectations")
    end
    add_command(cmd, name)
  end
  cmd.table = tbl
end
for c in pairs(COMMAND_KEYS) do ON[c] = on_command end

local function on_address(_, cmd, _, c, arg) parse_addr_opt(cmd, c, arg) end
for c in pairs(ADDR_OPTS) do ON[c] = on_address end

function ON.p(_, cmd, st, _, arg)
  cmd.options.protonum = true
  local handler, num = protocols.find(arg)
  if not handler then fail(2, "`%s' unsupported protocol", arg) end
  st.h = handler
  st.offset = st.offset + 256
  st.offsets[handler] = st.offset
  cmd.handler, cmd.protonum = handler, num
  cmd.ct.proto = num
  return handler_longopts(handler, st.offset)
end

function ON.t(_, cmd, _, _, arg)
  cmd.options.timeout = true
  cmd.ct.timeout = u32(values.atol(arg))
end

function ON.u(ctx, cmd, st, _, arg)
  cmd.options.status = true
  local status = st.status
  parse_status(ctx, arg, status)
  if status.mask == 0 then status.mask = status.value end
  cmd.status = { value = status.value, mask = status.mask }
end

function ON.e(ctx, cmd, _, _, arg)
  cmd.options["event-mask"] = true
  cmd.event_mask = cmd.event_mask or 0
  for _, name in ipairs(parse_list(ctx, arg, EVENT_NAMES)) do
    cmd.event_mask = cmd.event_mask | EVENT_BITS[name]
  end
end

function ON.o(ctx, cmd, _, _, arg)
  cmd.options.output = true
  for _, name in ipairs(parse_list(ctx, arg, OUTPUT_NAMES)) do cmd.output[name] = true end
  local out = cmd.output
  local others = out.xml or out.extended or out.timestamp or out.id or out.ktimestamp or
                 out.labels
  if out.save and (others or out.json) then
    fail(1, "cannot combine save output with any other output type, use -o save only")
  end
  if out.json and others then
    fail(1, "cannot combine json output with any other output type, use -o json only")
  end
  if out.labels then labelmap.init(ctx) end
end

function ON.z(_, cmd) cmd.options.zero = true end

-- -n, -g, -j: the NAT address (and port) of the optional word
local function on_nat(_, cmd, _, c, _, word)
  cmd.options[options.by_key[c].name] = true
  if word then
    local address, port = values.split_nat(word)
    if not address then fail(2, port) end
    local addr = parse_addr_opt(cmd, c, address)
    local nat = { addr = addr, port = port and tonumber(port) }
    if c == "j" then
      cmd.nat.src, cmd.nat.dst = nat, nat
    else
      cmd.nat[c == "n" and "src" or "dst"] = nat
    end
  end
end
ON.n, ON.g, ON.j = on_nat, on_nat, on_nat

local ZONE_FIELDS = { zone = "zone", ["orig-zone"] = "orig_zone", ["reply-zone"] = "reply_zone" }
local function on_zone(_, cmd, _, c, arg)
  local o = options.by_key[c]
  cmd.options[o.name] = true
  cmd.ct[ZONE_FIELDS[o.name]] = values.trunc((values.strtoul(arg, 0)), 16)
end
ON.w, ON["("], ON[")"] = on_zone, on_zone, on_zone

-- --id, --secmark
local function on_u32(_, cmd, _, c, arg)
  local o = options.by_key[c]
  cmd.options[o.name] = true
  cmd.ct[o.name] = u32((values.strtoul(arg, 0)))
end
ON.i, ON.c = on_u32, on_u32

function ON.m(_, cmd, _, _, arg)
  cmd.options.mark = true
  local v, e = values.strtoul(arg, 0)
  local m = 0xffffffff
  if arg:sub(e, e) == "/" then m = (values.strtoul(arg, 0, e + 1)) end
  cmd.mark = { value = u32(v), mask = u32(m) }
end

-- --label, --label-add, --label-del
local function on_label(ctx, cmd, _, c, arg, word)
  local o = options.by_key[c]
  cmd.options[o.name] = true
  labelmap.init(ctx)
  if cmd.options["label-add"] and cmd.options["label-del"] then
    fail(1, "cannot use --label-add and --label-del at the same time")
  end
  local list = arg
  if c == ">" then
    list = word
    if not list then cmd.labels.del = true end
  end
  if list then
    local names = {}
    for name in (list .. ","):gmatch("([^,]*),") do
      if not labelmap.bit(name) then fail(2, "unknown label '%s'", name) end
      names[#names + 1] = name
    end
    local key = c == "l" and "filter" or c == "<" and "add" or "del"
    if type(cmd.labels[key]) ~= "table" then cmd.labels[key] = {} end
    for _, n in ipairs(names) do table.insert(cmd.labels[key], n) end
  end
end
ON.l, ON["<"], ON[">"] = on_label, on_label, on_label

function ON.a(ctx) ctx.err:write("WARNING: ignoring -a, deprecated option.\n") end

function ON.f(_, cmd, _, _, arg)
  cmd.options.family = true
  if arg:sub(1, 4) == "ipv4" then set_family(cmd, "ipv4")
  elseif arg:sub(1, 4) == "ipv6" then set_family(cmd, "ipv6")
  else fail(2, "`%s' unsupported protocol", arg) end
end

function ON.b(_, cmd, _, _, arg)
  cmd.options["buffer-size"] = true
  cmd.bufsize = values.atol(arg)
end

ON.netns = function(_, cmd, _, _, arg) cmd.netns = arg end
ON[":"] = function(_, _, _, _, arg) fail(2, "option `%s' requires an argument", arg) end
ON["?"] = function(_, _, _, _, arg) fail(2, "unknown option `%s'", arg) end

-- A protocol option (a number): its code relative to the handler's offset, as a C char.
local function on_protocol_option(_, cmd, st, c, arg)
  local h = st.h
  if not h then return end
  local code = (c - st.offsets[h]) & 0xff
  if code >= 128 then code = code - 256 end
  local what = h.codes[code]
  if what then
    st.l4bits[what[1]] = true
    what[2](cmd, arg, h)
  end
end

-- What getopt's return c does: ON[c], or for a number a protocol option; nil for none.
local function handler_of(c)
  return ON[c] or (math.type(c) == "integer" and on_protocol_option) or nil
end

local function apply(ctx, cmd, st, c, arg, word)
  local on = handler_of(c)
  if on then return on(ctx, cmd, st, c, arg, word) end
end

-- The options for which conntrack takes the next word unless it starts with '-' or '!':
-- the commands (a table name), -n, -g, -j and --label-del.
local TAKES_WORD = { n = true, g = true, j = true, [">"] = true }
for k in pairs(COMMAND_KEYS) do TAKES_WORD[k] = true end

-- getopt over argv, each option applied as it comes. With steps, each option is also
-- recorded for a plan (see M.parser): where its argument and word came from, and the
-- words that the walk depends on besides the shape (required).
local function walk(ctx, cmd, st, argv, argc, steps, required)
  local longopts, index, indexed = options.longopts()
  local g = getopt.new(argv, argc, options.OPTSTRING, longopts, index, indexed)
  while true do
    local c = g:next()
    if c == nil then break end
    local arg, word, word_at = g.optarg, nil, nil
    if c == ":" or c == "?" then
      arg = argv[g.optind - 1]
    elseif TAKES_WORD[c] then
      word_at = g.optind
      word = optional_arg(g)
      if word == nil then word_at = nil end
    end
    if steps then
      steps[#steps + 1] = { c = c, on = handler_of(c), arg = g.optarg_at == nil and arg or nil,
                            arg_at = g.optarg_at, word_at = word_at }
      -- the protocol of -p decides which long options follow
      if c == "p" and g.optarg_at then required[g.optarg_at] = arg end
    end
    local added = apply(ctx, cmd, st, c, arg, word)
    if added then table.move(added, 1, #added, #longopts + 1, longopts) end
  end
end

-- --any-nat, the option rules, the handler's: each raises the first violation.
local function check_rules(cmd, h)
  if cmd.options["any-nat"] and (cmd.options["src-nat"] or cmd.options["dst-nat"]) then
    fail(2, "cannot specify `--src-nat' or `--dst-nat' with `--any-nat'")
  end
  local msg = rules.check(rules.commands[cmd.command], option_names(), cmd.options, rules.pairs,
                          rules.pair_msgs)
  if msg then fail(2, msg) end
  if cmd.command ~= "CT_HELP" and h and h.rules then
    local rcmd = cmd.command == "CT_ADD" and "CT_CREATE" or cmd.command
    msg = rules.check(h.rules[rcmd], h.flags, cmd.l4flags, h.pairs, h.pair_msgs)
    if msg then fail(2, msg) end
  end
end

-- Whether the sets a and b have the same keys.
local function same_keys(a, b)
  local n = 0
  for k in pairs(a) do
    if b[k] == nil then return false end
    n = n + 1
  end
  for _ in pairs(b) do n = n - 1 end
  return n == 0
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- After the options: the default family, the handler's flags, the rules. The rules' verdict
-- depends only on the command, the handler and the sets of options and handler flags
-- given; a plan (see M.parser: one shape, one handler) keeps the command and the sets of
-- a line that passed, so that its next lines alike skip the check. (The shape blanks the
-- table word, so `-D conntrack` and `-D expect` share a plan.)
local function finish(cmd, st, plan)
  if cmd.family == nil then
    local c = cmd.command
    if not (c == "CT_LIST" or c == "CT_UPDATE" or c == "CT_DELETE" or c == "CT_GET" or
            c == "CT_FLUSH" or c == "CT_EVENT") then
      cmd.family = "ipv4"
      cmd.family_default = true
    end
  end
  local h = st.h
  for bit in pairs(st.l4bits) do
    if h.flags[bit + 1] then cmd.l4flags[h.flags[bit + 1]] = true end
  end
  local passed = plan and plan.passed
  if not (passed and passed.command == cmd.command and same_keys(passed.options, cmd.options)
          and same_keys(passed.l4flags, cmd.l4flags)) then
    check_rules(cmd, h)
    if plan then
      plan.passed = { command = cmd.command, options = copy(cmd.options),
                      l4flags = copy(cmd.l4flags) }
    end
  end
  cmd.handler = h
  return cmd
end

--- Parses argv (0-based, argv[0] the program name; argc words). ctx = { err = handle }.
-- output seeds the -o set (conntrack's output mask outlives a line of -R). Returns the
-- command table or raises { status, msg }.
function M.parse(ctx, argv, argc, output)
  local cmd, st = new_command(argv[0], output)
  walk(ctx, cmd, st, argv, argc)
  return finish(cmd, st)
end

-- The shape of a command line, which decides getopt's walk: the words that start with
-- '-' or '!' as they are, the others blank, NUL-separated (the words hold no NUL: see
-- M.parser).
local parts = {}   -- shape's scratch: only parts[1 .. argc - 1] are read
local function shape(argv, argc)
  for i = 1, argc - 1 do
    local w = argv[i]
    local b = byte(w)
    parts[i] = (b == 45 or b == 33) and w or ""
  end
  return concat(parts, "\0", 1, argc - 1)
end

local MAX_PLANS = 1024  -- bounds the memory a file of ever-new shapes can take

--- A parser for many command lines (-R), with M.parse's results and errors. getopt's walk
-- over a line (which option came with which word) depends only on the line's shape and
-- the protocol of -p, so it is kept as a plan, and the next line alike only replays the
-- options' effects in the same order: save-format lines share a handful of plans. The
-- words must hold no NUL (-R cuts its lines at one, as C reads them), or two lines of
-- other shapes could share a plan.
function M.parser()
  local plans, count = {}, 0
  local function find_plan(key, argv)
    for _, plan in ipairs(plans[key] or {}) do
      local ok = true
      for i, w in pairs(plan.required) do
        if argv[i] ~= w then ok = false; break end
      end
      if ok then return plan end
    end
  end
  return function(ctx, argv, argc, output)
    local cmd, st = new_command(argv[0], output)
    local key = shape(argv, argc)
    local plan = find_plan(key, argv)
    if plan then
      local steps = plan.steps
      for k = 1, #steps do
        local step = steps[k]
        local on = step.on
        if on then
          local arg = step.arg_at and argv[step.arg_at] or step.arg
          on(ctx, cmd, st, step.c, arg, step.word_at and argv[step.word_at])
        end
      end
    else
      local steps, required = {}, {}
      walk(ctx, cmd, st, argv, argc, steps, required)
      if count < MAX_PLANS then
        plan = { steps = steps, required = required }
        plans[key] = plans[key] or {}
        table.insert(plans[key], plan)
        count = count + 1
      end
    end
    return finish(cmd, st, plan)
  end
end

return M
