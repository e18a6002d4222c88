--- Which option each command accepts or needs (conntrack's commands_v_options, as named
-- lists), and the check that reports the first violation in conntrack's order: the
-- option bits from 0 to 28 (a missing mandatory option or an illegal one, whichever bit
-- comes first), then the tuple pairs.
--
--   mandatory  the command needs it
--   optional   allowed
--   pair       allowed, and the command needs one complete pair of `pairs`
-- Anything not listed is illegal with the command.
-- @module conntrack.cli.rules
local M = {}

local TUPLE = { "src", "dst", "reply-src", "reply-dst" }

M.commands = {
  CT_LIST = {
    optional = { "src", "dst", "reply-src", "reply-dst", "protonum", "status", "zero",
                 "mask-src", "mask-dst", "mark", "family", "src-nat", "dst-nat", "output",
                 "secmark", "any-nat", "zone", "label", "orig-zone", "reply-zone" },
  },
  CT_GET = {
    pair = TUPLE, mandatory = { "protonum" }, optional = { "id", "output", "label" },
  },
  CT_DELETE = {
    optional = { "src", "dst", "reply-src", "reply-dst", "protonum", "timeout", "status",
                 "mask-src", "mask-dst", "mark", "id", "family", "src-nat", "dst-nat",
                 "output", "zone", "label", "orig-zone", "reply-zone" },
  },
  CT_CREATE = {
    pair = TUPLE, mandatory = { "protonum", "timeout" },
    optional = { "status", "nat-range", "mark", "src-nat", "dst-nat", "zone", "label-add",
                 "orig-zone", "reply-zone" },
  },
  CT_UPDATE = {
    optional = { "src", "dst", "reply-src", "reply-dst", "protonum", "timeout", "status",
                 "mask-src", "mask-dst", "mark", "id", "family", "src-nat", "dst-nat",
                 "output", "label", "label-add", "label-del" },
  },
  CT_EVENT = {
    optional = { "src", "dst", "reply-src", "reply-dst", "protonum", "event-mask",
                 "mask-src", "mask-dst", "mark", "family", "src-nat", "dst-nat", "output",
                 "secmark", "buffer-size", "any-nat", "zone", "label", "orig-zone",
                 "reply-zone" },
  },
  CT_FLUSH = { optional = { "family" } },
  CT_COUNT = {},
  CT_STATS = {},
  CT_VERSION = {},
  CT_HELP = { optional = { "protonum" } },
  EXP_LIST = { optional = { "family", "output" } },
  EXP_GET = { mandatory = { "src", "dst", "protonum" }, optional = { "reply-src", "reply-dst" } },
  EXP_DELETE = { mandatory = { "src", "dst", "protonum" }, optional = { "reply-src", "reply-dst" } },
  EXP_CREATE = {
    mandatory = { "src", "dst", "protonum", "timeout", "tuple-src", "tuple-dst", "mask-src",
                  "mask-dst" },
    optional = { "reply-src", "reply-dst", "status" },
  },
  EXP_EVENT = { optional = { "output" } },
  EXP_FLUSH = {},
  EXP_COUNT = {},
  EXP_STATS = {},
  NONE = {},     -- no command given
}
-- -A is -I without NLM_F_EXCL
M.commands.CT_ADD = M.commands.CT_CREATE

--- The tuple pairs of the generic options and what is reported when none is complete.
M.pairs = { { "src", "dst" }, { "reply-src", "reply-dst" } }
M.pair_msgs = { "you have to specify `--src' and `--dst'",
                "you have to specify `--reply-src' and `--reply-dst'" }

local EMPTY = {}

-- name -> "M" | "o" | "T" for a rule entry, cached
local cache = setmetatable({}, { __mode = "k" })
local function lookup(rule)
  local t = cache[rule]
  if not t then
    t = {}
    for _, n in ipairs(rule.optional or EMPTY) do t[n] = "o" end
    for _, n in ipairs(rule.pair or EMPTY) do t[n] = "T" end
    for _, n in ipairs(rule.mandatory or EMPTY) do t[n] = "M" end
    cache[rule] = t
  end
  return t
end

-- The set of a list of names, cached
local sets = setmetatable({}, { __mode = "k" })
local function set_of(names)
  local t = sets[names]
  if not t then
    t = {}
    for _, n in ipairs(names) do t[n] = true end
    sets[names] = t
  end
  return t
end

-- Whether the scan of the option bits has nothing to report: every given option is legal
-- and every mandatory one given. Found without walking every bit (-R parses each line
-- twice), and only then is the scan needed to name the first violation.
local function all_legal(rule, legal, listed, given)
  for name in pairs(given) do
    if listed[name] and not legal[name] then return false end
  end
  for _, n in ipairs(rule.mandatory or EMPTY) do
    if listed[n] and not given[n] then return false end
  end
  return true
end

--- conntrack's generic_opt_check: names lists the option names in bit order; given is
-- the set of names given. Returns nil, or the message of the first violation.
function M.check(rule, names, given, pairs, pair_msgs)
  rule = rule or EMPTY
  local legal, listed = lookup(rule), set_of(names)
  if not all_legal(rule, legal, listed, given) then
    for i = 1, #names do
      local name = names[i]
      local how = legal[name]
      if not given[name] then
        if how == "M" then
          return string.format("You need to supply the `--%s' option for this command", name)
        end
      elseif not how then
        return string.format("Illegal option `--%s' with this command", name)
      end
    end
  end
  -- the pairs count when one of the names is a pair option of the rule
  local special = false
  for _, n in ipairs(rule.pair or EMPTY) do
    if legal[n] == "T" and listed[n] then special = true end
  end
  if not special or not pairs then return nil end
  local partial
  for i, pair in ipairs(pairs) do
    local all, any = true, false
    for _, n in ipairs(pair) do
      if given[n] then any = true else all = false end
    end
    if all then return nil end
    if any and not partial then partial = i end
  end
  return pair_msgs[partial == 2 and 2 or 1]
end

return M
