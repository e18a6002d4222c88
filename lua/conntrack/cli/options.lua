--- The one table of conntrack's command-line options. It generates the getopt_long
-- option string and long-option list, the option names used in messages, and the
-- `-h` text (each entry carries its help line and section, in the order -h prints them).
--
-- Fields of an entry:
--   key      the option's character (getopt's return value; also the short option when
--            `short` is true)
--   long     its long names (getopt aliases)
--   arg      0 none, 1 required, 2 optional (getopt_long's has_arg)
--   name     the name conntrack's messages use for its option bit (`--name`)
--   bit      the option bit (0..28): the order in which errors are checked
--   command  the command's name for the table conntrack and expect (commands only)
--   section, help   its line in -h
--   extension  an option of ct-lua (not in conntrack): only its exact name is recognised,
--            so conntrack's abbreviations keep their meaning
-- @module conntrack.cli.options
local M = {}

M.PROGNAME = "conntrack"
M.VERSION = "1.4.7"
M.PREFIX = "conntrack v1.4.7 (conntrack-tools): "

M.options = {
  -- commands: getopt returns the letter; the table argument is taken by check_type
  { key = "L", long = { "dump" }, arg = 2, command = { "CT_LIST", "EXP_LIST" },
    section = "commands", help = "  -L [table] [options]\t\tList conntrack or expectation table" },
  { key = "G", long = { "get" }, arg = 2, command = { "CT_GET", "EXP_GET" },
    section = "commands", help = "  -G [table] parameters\t\tGet conntrack or expectation" },
  { key = "D", long = { "delete" }, arg = 2, command = { "CT_DELETE", "EXP_DELETE" },
    section = "commands", help = "  -D [table] parameters\t\tDelete conntrack or expectation" },
  { key = "I", long = { "create" }, arg = 2, command = { "CT_CREATE", "EXP_CREATE" },
    section = "commands", help = "  -I [table] parameters\t\tCreate a conntrack or expectation" },
  { key = "U", long = { "update" }, arg = 2, command = { "CT_UPDATE", false },
    section = "commands", help = "  -U [table] parameters\t\tUpdate a conntrack" },
  { key = "E", long = { "event" }, arg = 2, command = { "CT_EVENT", "EXP_EVENT" },
    section = "commands", help = "  -E [table] [options]\t\tShow events" },
  { key = "F", long = { "flush" }, arg = 2, command = { "CT_FLUSH", "EXP_FLUSH" },
    section = "commands", help = "  -F [table]\t\t\tFlush table" },
  { key = "C", long = { "counter" }, arg = 2, command = { "CT_COUNT", "EXP_COUNT" },
    section = "commands", help = "  -C [table]\t\t\tShow counter" },
  { key = "S", long = { "stats" }, arg = 0, command = { "CT_STATS", "EXP_STATS" },
    section = "commands", help = "  -S\t\t\t\tShow statistics" },
  { key = "A", long = { "add" }, arg = 2, command = { "CT_ADD", false } },
  { key = "V", long = { "version" }, arg = 0, command = { "CT_VERSION", "CT_VERSION" } },
  { key = "h", long = { "help" }, arg = 0, command = { "CT_HELP", "CT_HELP" } },

  -- options, in the order of -h
  { key = "n", long = { "src-nat" }, arg = 2, name = "src-nat", bit = 17,
    section = "conntrack", help = "  -n, --src-nat ip\t\t\tsource NAT ip" },
  { key = "g", long = { "dst-nat" }, arg = 2, name = "dst-nat", bit = 18,
    section = "conntrack", help = "  -g, --dst-nat ip\t\t\tdestination NAT ip" },
  { key = "j", long = { "any-nat" }, arg = 2, name = "any-nat", bit = 22,
    section = "conntrack", help = "  -j, --any-nat ip\t\t\tsource or destination NAT ip" },
  { key = "m", long = { "mark" }, arg = 1, name = "mark", bit = 14,
    section = "conntrack", help = "  -m, --mark mark\t\t\tSet mark" },
  { key = "c", long = { "secmark" }, arg = 1, name = "secmark", bit = 20,
    section = "conntrack", help = "  -c, --secmark secmark\t\t\tSet selinux secmark" },
  { key = "e", long = { "event-mask" }, arg = 1, name = "event-mask", bit = 8,
    section = "conntrack", help = "  -e, --event-mask eventmask\t\tEvent mask, eg. NEW,DESTROY" },
  { key = "z", long = { "zero" }, arg = 0, name = "zero", bit = 7,
    section = "conntrack", help = "  -z, --zero \t\t\t\tZero counters while listing" },
  { key = "o", long = { "output" }, arg = 1, name = "output", bit = 19,
    section = "conntrack", help = "  -o, --output type[,...]\t\tOutput format, eg. xml" },
  { key = "l", long = { "label" }, arg = 1, name = "label", bit = 24,
    section = "conntrack", help = "  -l, --label label[,...]\t\tconntrack labels" },

  { key = "[", long = { "tuple-src" }, arg = 1, name = "tuple-src", bit = 9,
    section = "expectation", help = "  --tuple-src ip\tSource address in expect tuple" },
  { key = "]", long = { "tuple-dst" }, arg = 1, name = "tuple-dst", bit = 10,
    section = "expectation", help = "  --tuple-dst ip\tDestination address in expect tuple" },

  { key = "<", long = { "label-add" }, arg = 1, name = "label-add", bit = 25,
    section = "updating", help = "  --label-add label\tAdd label" },
  { key = ">", long = { "label-del" }, arg = 2, name = "label-del", bit = 26,
    section = "updating", help = "  --label-del label\tDelete label" },

  { key = "s", long = { "orig-src", "src" }, arg = 1, name = "src", bit = 0,
    section = "common", help = "  -s, --src, --orig-src ip\t\tSource address from original direction" },
  { key = "d", long = { "orig-dst", "dst" }, arg = 1, name = "dst", bit = 1,
    section = "common", help = "  -d, --dst, --orig-dst ip\t\tDestination address from original direction" },
  { key = "r", long = { "reply-src" }, arg = 1, name = "reply-src", bit = 2,
    section = "common", help = "  -r, --reply-src ip\t\tSource addres from reply direction" },
  { key = "q", long = { "reply-dst" }, arg = 1, name = "reply-dst", bit = 3,
    section = "common", help = "  -q, --reply-dst ip\t\tDestination address from reply direction" },
  { key = "p", long = { "protonum" }, arg = 1, name = "protonum", bit = 4,
    section = "common", help = "  -p, --protonum proto\t\tLayer 4 Protocol, eg. 'tcp'" },
  { key = "f", long = { "family" }, arg = 1, name = "family", bit = 16,
    section = "common", help = "  -f, --family proto\t\tLayer 3 Protocol, eg. 'ipv6'" },
  { key = "t", long = { "timeout" }, arg = 1, name = "timeout", bit = 5,
    section = "common", help = "  -t, --timeout timeout\t\tSet timeout" },
  { key = "u", long = { "status" }, arg = 1, name = "status", bit = 6,
    section = "common", help = "  -u, --status status\t\tSet status, eg. ASSURED" },
  { key = "w", long = { "zone" }, arg = 1, name = "zone", bit = 23,
    section = "common", help = "  -w, --zone value\t\tSet conntrack zone" },
  { key = "(", long = { "orig-zone" }, arg = 1, name = "orig-zone", bit = 27,
    section = "common", help = "  --orig-zone value\t\tSet zone for original direction" },
  { key = ")", long = { "reply-zone" }, arg = 1, name = "reply-zone", bit = 28,
    section = "common", help = "  --reply-zone value\t\tSet zone for reply direction" },
  { key = "b", long = { "buffer-size" }, arg = 1, name = "buffer-size", bit = 21,
    section = "common", help = "  -b, --buffer-size\t\tNetlink socket buffer size" },
  { key = "{", long = { "mask-src" }, arg = 1, name = "mask-src", bit = 11,
    section = "common", help = "  --mask-src ip\t\t\tSource mask address" },
  { key = "}", long = { "mask-dst" }, arg = 1, name = "mask-dst", bit = 12,
    section = "common", help = "  --mask-dst ip\t\t\tDestination mask address" },

  -- without a line in -h
  -- --id takes an optional argument in 1.4.7, so `--id N` ran strtoul(NULL) and crashed;
  -- here it requires one, as in 1.4.9 (README: where ct-lua conntrack differs)
  { key = "i", long = { "id" }, arg = 1, name = "id", bit = 15 },
  { key = "a", long = { "nat-range" }, arg = 1, name = "nat-range", bit = 13 },

  -- ct-lua's own
  { key = "netns", long = { "netns" }, arg = 1, extension = true, noshort = true },
}

-- The order of the long options in conntrack's table (getopt_long takes the first
-- option matched by an abbreviation; only aliases can share one, so this order is
-- only for completeness).
M.LONG_ORDER = {
  "dump", "create", "add", "delete", "update", "get", "flush", "event", "counter", "stats",
  "version", "help", "orig-src", "src", "orig-dst", "dst", "reply-src", "reply-dst",
  "protonum", "timeout", "status", "zero", "event-mask", "tuple-src", "tuple-dst",
  "mask-src", "mask-dst", "nat-range", "mark", "secmark", "id", "family", "src-nat",
  "dst-nat", "output", "buffer-size", "any-nat", "zone", "label", "label-add",
  "label-del", "orig-zone", "reply-zone", "netns",
}

-- by key; by option bit; the names of the bits
M.by_key, M.by_bit, M.bit_names = {}, {}, {}
for _, o in ipairs(M.options) do
  M.by_key[o.key] = o
  if o.bit then
    M.by_bit[o.bit] = o
    M.bit_names[o.bit] = o.name
  end
end
M.NUMBER_OF_OPT = 29

--- The long option (conntrack's get_long_opt) of an option character: its first long name.
function M.long_name(key)
  local o = M.by_key[key]
  return o and o.long[1] or "unknown"
end

--- getopt's option string, from the table: ':' first (conntrack runs with opterr = 0 and
-- wants ':' for a missing argument), then each short option with ':' for a required and
-- '::' for an optional argument.
do
  local parts = { ":" }
  for _, o in ipairs(M.options) do
    if not o.noshort then
      parts[#parts + 1] = o.key .. (o.arg == 1 and ":" or o.arg == 2 and "::" or "")
    end
  end
  M.OPTSTRING = table.concat(parts)
end

-- The long options and the index of their names, built on first use (-R parses a
-- command line per line of its file).
local LONGOPTS, INDEX

--- The long options for getopt, in conntrack's order: a new list, which the caller may
-- extend (its entries are shared and read-only), then the index of their names and how
-- many options it covers (getopt.new's last two arguments).
function M.longopts()
  if not LONGOPTS then
    local byname = {}
    for _, o in ipairs(M.options) do
      for _, name in ipairs(o.long) do byname[name] = o end
    end
    LONGOPTS, INDEX = {}, {}
    for _, name in ipairs(M.LONG_ORDER) do
      local o = byname[name]
      local p = { name = name, has_arg = o.arg, val = o.key, exact_only = o.extension }
      LONGOPTS[#LONGOPTS + 1] = p
      INDEX[name] = INDEX[name] or p
    end
  end
  return table.move(LONGOPTS, 1, #LONGOPTS, 1, {}), INDEX, #LONGOPTS
end

local SECTIONS = {
  { "commands", "Commands:\n" },
  { "tables", "Tables: conntrack, expect, dying, unconfirmed\n" },
  { "conntrack", "Conntrack parameters and options:\n" },
  { "expectation", "Expectation parameters and options:\n" },
  { "updating", "Updating parameters and options:\n" },
  { "common", "Common parameters and options:\n" },
}

--- The text of -h for the program name prog.
function M.usage(prog)
  local parts = {
    "Command line interface for the connection tracking system. Version ", M.VERSION, "\n",
    "Usage: ", prog, " [commands] [options]\n",
  }
  for _, s in ipairs(SECTIONS) do
    parts[#parts + 1] = "\n"
    parts[#parts + 1] = s[2]
    for _, o in ipairs(M.options) do
      if o.section == s[1] then
        parts[#parts + 1] = o.help
        parts[#parts + 1] = "\n"
      end
    end
  end
  parts[#parts + 1] = "\n"
  return table.concat(parts)
end

return M
