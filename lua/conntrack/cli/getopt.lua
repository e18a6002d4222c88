--- glibc's getopt_long, step for step (posix/getopt.c of glibc 2.36): words that are not
-- options are permuted to the end, long options may be abbreviated to an unambiguous
-- prefix (an exact name wins; prefixes shared only by aliases of one option are not
-- ambiguous), "--name=value" and optional arguments work as in C, and with a ':' at the
-- start of optstring a missing argument returns ':' (conntrack runs with opterr = 0, so
-- nothing is ever printed here).
--
-- The caller may read and move `optind` between calls, as conntrack's check_type() does
-- to take the next word as a table name; the permutation then treats that word as part of
-- the option, exactly as in C.
--
-- For callers that replay a parse (parse.lua's plan cache), `optarg_at` is the index of
-- the word optarg was taken from (nil when it was attached to its option). The
-- permutation only moves words before `optind`, which were read already, so that index
-- is the word's place on the command line as given.
-- @module conntrack.cli.getopt
local M = {}

local byte, sub, find = string.byte, string.sub, string.find

local Getopt = {}
Getopt.__index = Getopt

--- new(argv, optstring, longopts[, index, indexed]): argv is 0-based (argv[0] is the
-- program) and is permuted in place; longopts is a list of { name =, has_arg = 0|1|2,
-- val = } that the caller may extend between calls; `exact_only` entries never match an
-- abbreviation. index, when given, maps the names of the first `indexed` options to the
-- first option of each name (a caller that parses many command lines builds it once).
function M.new(argv, argc, optstring, longopts, index, indexed)
  local self = setmetatable({
    argv = argv, argc = argc, longopts = longopts, index = index or {}, indexed = indexed or 0,
    optind = 1, optarg = nil, optarg_at = nil,
    nextchar = nil, first_nonopt = 1, last_nonopt = 1, permute = true,
  }, Getopt)
  if byte(optstring, 1) == 43 then          -- '+'
    self.permute = false
    optstring = sub(optstring, 2)
  elseif os.getenv("POSIXLY_CORRECT") then
    self.permute = false
  end
  self.colon = byte(optstring, 1) == 58
  self.optstring = optstring
  return self
end

-- Exchanges the non-options [first_nonopt, last_nonopt) with the options
-- [last_nonopt, optind), keeping the order within each group (glibc's exchange).
function Getopt:exchange()
  local argv = self.argv
  local moved = {}
  for i = self.last_nonopt, self.optind - 1 do moved[#moved + 1] = argv[i] end
  for i = self.first_nonopt, self.last_nonopt - 1 do moved[#moved + 1] = argv[i] end
  for k, w in ipairs(moved) do argv[self.first_nonopt + k - 1] = w end
  self.first_nonopt = self.first_nonopt + (self.optind - self.last_nonopt)
  self.last_nonopt = self.optind
end

function Getopt:nonoption(i)
  local w = self.argv[i]
  return byte(w, 1) ~= 45 or #w == 1
end

-- The first long option named exactly name: the caller's index of names covers its first
-- `indexed` options (built once for many command lines); the rest are searched in order.
function Getopt:exact(name)
  local p = self.index[name]
  if p then return p end
  local longopts = self.longopts
  for k = self.indexed + 1, #longopts do
    if longopts[k].name == name then return longopts[k] end
  end
end

-- The long option at nextchar ("--" already skipped). Returns val, '?' or ':'.
function Getopt:long_option()
  local d, argv = self, self.argv
  local text = d.nextchar
  local eq = find(text, "=", 1, true)
  local name = eq and sub(text, 1, eq - 1) or text
  local pfound = d:exact(name)
  if not pfound then
    local ambiguous = false
    for _, p in ipairs(d.longopts) do
      if not p.exact_only and sub(p.name, 1, #name) == name then
        if not pfound then
          pfound = p
        elseif pfound.has_arg ~= p.has_arg or pfound.val ~= p.val then
          ambiguous = true
        end
      end
    end
    if ambiguous then
      d.nextchar = nil
      d.optind = d.optind + 1
      return "?"
    end
  end
  if not pfound then
    d.nextchar = nil
    d.optind = d.optind + 1
    return "?"
  end
  d.optind = d.optind + 1
  d.nextchar = nil
  if eq then
    if pfound.has_arg ~= 0 then
      d.optarg = sub(text, eq + 1)
    else
      return "?"
    end
  elseif pfound.has_arg == 1 then
    if d.optind < d.argc then
      d.optarg, d.optarg_at = argv[d.optind], d.optind
      d.optind = d.optind + 1
    else
      return d.colon and ":" or "?"
    end
  end
  return pfound.val
end

--- The next option: its character (a one-byte string) or a long option's val, "?" for an
-- unknown option, ":" for a missing argument, or nil at the end. self.optarg is its
-- argument (nil when none).
function Getopt:next()
  local d, argv, argc = self, self.argv, self.argc
  d.optarg, d.optarg_at = nil, nil
  if d.nextchar == nil or d.nextchar == "" then
    if d.last_nonopt > d.optind then d.last_nonopt = d.optind end
    if d.first_nonopt > d.optind then d.first_nonopt = d.optind end
    if d.permute then
      if d.first_nonopt ~= d.last_nonopt and d.last_nonopt ~= d.optind then
        d:exchange()
      elseif d.last_nonopt ~= d.optind then
        d.first_nonopt = d.optind
      end
      while d.optind < argc and d:nonoption(d.optind) do d.optind = d.optind + 1 end
      d.last_nonopt = d.optind
    end
    if d.optind ~= argc and argv[d.optind] == "--" then
      d.optind = d.optind + 1
      if d.first_nonopt ~= d.last_nonopt and d.last_nonopt ~= d.optind then
        d:exchange()
      elseif d.first_nonopt == d.last_nonopt then
        d.first_nonopt = d.optind
      end
      d.last_nonopt = argc
      d.optind = argc
    end
    if d.optind == argc then
      if d.first_nonopt ~= d.last_nonopt then d.optind = d.first_nonopt end
      return nil
    end
    if d:nonoption(d.optind) then
      if not d.permute then return nil end
      d.optarg, d.optarg_at = argv[d.optind], d.optind
      d.optind = d.optind + 1
      return 1
    end
    local w = argv[d.optind]
    if byte(w, 2) == 45 then
      d.nextchar = sub(w, 3)
      return d:long_option()
    end
    d.nextchar = sub(w, 2)
  end
  local c = sub(d.nextchar, 1, 1)
  d.nextchar = sub(d.nextchar, 2)
  if d.nextchar == "" then d.optind = d.optind + 1 end
  local at = find(d.optstring, c, 1, true)
  if not at or c == ":" or c == ";" then
    return "?"
  end
  if sub(d.optstring, at + 1, at + 1) == ":" then
    if sub(d.optstring, at + 2, at + 2) == ":" then
      if d.nextchar ~= "" then
        d.optarg = d.nextchar
        d.optind = d.optind + 1
      end
      d.nextchar = nil
    else
      if d.nextchar ~= "" then
        d.optarg = d.nextchar
        d.optind = d.optind + 1
      elseif d.optind == argc then
        c = d.colon and ":" or "?"
      else
        d.optarg, d.optarg_at = argv[d.optind], d.optind
        d.optind = d.optind + 1
      end
      d.nextchar = nil
    end
  end
  return c
end

return M
