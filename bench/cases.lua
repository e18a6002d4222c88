--- The benchmark driver. bench/run starts it with ct-lua inside a private
-- network namespace; it fills the table at each size, runs each case with
-- ct-lua's conntrack and /usr/sbin/conntrack alternately (A B B A A B ...),
-- prints the results and appends them to bench/RESULTS.md.
--
-- Each run is one child under /usr/bin/time (CPU user+sys and peak RSS of
-- the child), with stdout to /dev/null; wall time is taken on the monotonic
-- clock around it. Before the timed pairs, each side runs once with its
-- output kept, to check that both outputs (and, for the cases that change
-- the table, the tables they leave) match once volatile fields are masked.
local conntrack = require "conntrack"

local monotonic = conntrack.monotonic
local DIR = assert(arg[0]:match("^(.*)/[^/]*$"), "run as: ct-lua bench/cases.lua")
local fill = dofile(DIR .. "/fill.lua")

local function env(name, default) return os.getenv(name) or default end

local cfg = {
  root = env("BENCH_ROOT", DIR .. "/.."),
  tmp = assert(os.getenv("BENCH_TMP"), "BENCH_TMP: a scratch directory"),
  pairs = assert(math.tointeger(tonumber(env("BENCH_PAIRS", "5"))), "BENCH_PAIRS"),
  seed = assert(math.tointeger(tonumber(env("BENCH_SEED", "1"))), "BENCH_SEED"),
  only = os.getenv("BENCH_CASES"),  -- Lua patterns split by |: run the cases they find
  results = env("BENCH_RESULTS", DIR .. "/RESULTS.md"),
  -- seconds of timed pairs per case: a slow case gets fewer pairs
  budget = assert(tonumber(env("BENCH_CASE_BUDGET", "40")), "BENCH_CASE_BUDGET"),
  sizes = {},
}
cfg.ours = env("BENCH_OURS", cfg.root .. "/ct-lua conntrack")
cfg.theirs = env("BENCH_THEIRS", "/usr/sbin/conntrack")
cfg.rawdump = env("BENCH_RAWDUMP", cfg.root .. "/build/rawdump")
cfg.ctlua = cfg.root .. "/ct-lua"
for size in env("BENCH_SIZES", "10000,100000,262144"):gmatch("%d+") do
  cfg.sizes[#cfg.sizes + 1] = math.tointeger(tonumber(size))
end

local LOAD_LINES = 100000   -- lines of the -R file
local RSS_MAX = 4096        -- KiB, every command at every size (issue 6)
local TIME_FORMAT = "%e %U %S %M"

-- Shell and file helpers ---------------------------------------------------

local function sleep(seconds) conntrack.poll({}, seconds) end

local function read_file(path)
  local f = io.open(path)
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end

local function file_size(path)
  local f = io.open(path)
  if not f then return 0 end
  local size = f:seek("end")
  f:close()
  return size
end

local function capture(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return (out:gsub("%s+$", ""))
end

local function must(cmd)
  local ok, _, code = os.execute(cmd)
  if not ok then error(string.format("command failed (%s): %s", code, cmd), 2) end
end

local function first_line(text)
  return (text or ""):match("[^\n]*") or ""
end

local function median(list)
  if #list == 0 then return nil end
  local t = table.move(list, 1, #list, 1, {})
  table.sort(t)
  local m = (#t + 1) // 2
  return #t % 2 == 1 and t[m] or (t[m] + t[m + 1]) / 2
end

local function max(list)
  local m
  for _, v in ipairs(list) do if not m or v > m then m = v end end
  return m
end

local function tmp(name) return cfg.tmp .. "/" .. name end

-- Reads /usr/bin/time's file: { cpu =, sys =, rss =, status = } (cpu is user + sys),
-- status being the child's exit status or 128 + the signal that ended it.
local function read_time(path)
  local text = read_file(path) or ""
  local _, user, sys, rss = text:match("([%d.]+) ([%d.]+) ([%d.]+) (%d+)%s*$")
  if not user then return nil end
  local status = tonumber(text:match("non%-zero status (%d+)")) or 0
  local signal = tonumber(text:match("terminated by signal (%d+)"))
  if signal then status = 128 + signal end
  return { cpu = tonumber(user) + tonumber(sys), sys = tonumber(sys), rss = tonumber(rss),
           status = status }
end

--- Runs one command under /usr/bin/time: { wall =, cpu =, sys =, rss =, status = }.
-- stdout goes to out (default /dev/null), stderr to err.
local function run(cmd, out, err)
  local timefile = tmp("time")
  os.remove(timefile)
  local line = string.format("exec /usr/bin/time -f '%s' -o %s %s <%s >%s 2>%s", TIME_FORMAT,
                             timefile, cmd, "/dev/null", out or "/dev/null", err or tmp("stderr"))
  local t0 = monotonic()
  os.execute(line)
  local wall = monotonic() - t0
  local r = read_time(timefile) or { cpu = 0, sys = 0, rss = 0, status = 255 }
  r.wall = wall
  return r
end

-- Output comparison ---------------------------------------------------------

--- Masks what changes between two reads of the same entry: the countdown
-- timeout, delta-time, the reference count and the id (text, xml, save,
-- event lines).
local function normalize(line)
  local prefix, rest = line:match("^(%s*%[%u+%]%s+)(.*)$")  -- an event's "[NEW] "
  if not prefix then prefix, rest = "", line end
  rest = rest:gsub("^(%a[%w]*%s+%d+%s+)%d+", "%1T", 1)                -- "tcp      6 99"
  rest = rest:gsub("^(ipv%d%s+%d+%s+%a[%w]*%s+%d+%s+)%d+", "%1T", 1)  -- extended
  rest = rest:gsub("^(%-[AIUD] %-t )%d+", "%1T", 1)                    -- save
  rest = rest:gsub("delta%-time=%d+", "delta-time=D"):gsub("use=%d+", "use=U")
             :gsub(" id=%d+", " id=I")
             :gsub("<timeout>%d+</timeout>", "<timeout/>"):gsub("<deltatime>%d+</deltatime>", "<deltatime/>")
             :gsub("<use>%d+</use>", "<use/>"):gsub("<id>%d+</id>", "<id/>")
  return prefix .. rest
end

local function normalized_lines(path)
  local t = {}
  local f = io.open(path)
  if not f then return t end
  for line in f:lines() do t[#t + 1] = normalize(line) end
  f:close()
  return t
end

--- Compares two lists of normalised lines as sets in order-free fashion:
-- nil when they are equal, else a short description of the difference.
local function diff_lines(theirs, ours, what)
  if #theirs ~= #ours then
    return string.format("%s: %d lines vs conntrack's %d", what, #ours, #theirs)
  end
  table.sort(theirs)
  table.sort(ours)
  for i = 1, #theirs do
    if theirs[i] ~= ours[i] then
      return string.format("%s differs: ours `%s`, conntrack's `%s`", what, ours[i]:sub(1, 100),
                           theirs[i]:sub(1, 100))
    end
  end
  return nil
end

--- Every entry of the table as a normalised conntrack -L line.
local function snapshot(h)
  local t = {}
  for f in h:dump() do t[#t + 1] = normalize(tostring(f)) end
  return t
end

-- The table -----------------------------------------------------------------

local function refill(ctx)
  if ctx.h:count() == ctx.n then return end
  assert(ctx.h:flush())
  fill.create(ctx.h, 1, ctx.n, cfg.seed)
end

-- Deletes the entries that filter matches and re-creates those of the
-- generated table that pred selects (the same set).
local function restore_subset(ctx, filter, pred)
  assert(ctx.h:delete(filter))
  fill.create(ctx.h, 1, ctx.n, cfg.seed, pred)
end

local function is_ipv6(s) return s.src:find(":", 1, true) ~= nil end

-- -G's target: the first plain IPv4 tcp entry (zone 0, not NATed).
local function get_args(ctx)
  for i = 1, ctx.n do
    local s = fill.spec(i, cfg.seed)
    if s.proto == "tcp" and not is_ipv6(s) and not s.zone and not s.reply_src and
       not s.reply_dst then
      return string.format("-G -p tcp -s %s -d %s --sport %d --dport %d", s.src, s.dst,
                           s.sport, s.dport)
    end
  end
  error("no plain tcp entry to get")
end

-- The -R file: the first LOAD_LINES entries as conntrack -L -o save prints
-- them, with each -A turned into -I. Made once, in an emptied table.
local load_file
local function make_load_file(ctx)
  if load_file then return load_file end
  load_file = tmp("load.txt")
  assert(ctx.h:flush())
  fill.create(ctx.h, 1, LOAD_LINES, cfg.seed)
  must(string.format("%s -L -o save 2>/dev/null | sed 's/^-A /-I /' >%s", cfg.theirs, load_file))
  assert(ctx.h:flush())
  return load_file
end

-- The cases -----------------------------------------------------------------
-- name; args (or ours/theirs, strings or functions of ctx); target = { ratio
-- = max ours/theirs, raw = max ours/raw dump }; prepare(ctx) before every
-- run and cleanup(ctx) after the case (untimed); mutates: compare the
-- tables the check runs leave; compare = false: outputs are not comparable.

local UDP_FILTER, UDP = { proto = "udp" }, function(s) return s.proto == "udp" end
-- -U's matches: the http flows of the clients 10.0.0.0/26 (entries 1..1024), about
-- 130 at every size. conntrack 1.4.7 cannot update many more: its -U leaves one
-- stale ACK per entry in its socket, and after a few hundred the socket
-- overflows (ENOBUFS, exit 1). Even these it updates unreliably: it prints about
-- a third of them, reports ENOENT for some, and now and then exits 1 ("Protocol
-- error") part way, in a fraction of its usual time (run_pairs leaves those out).
local HTTP_FILTER = { src = "10.0.0.0/26", proto = "tcp", dport = 80 }
local function HTTP(s, i) return i <= 1024 and s.proto == "tcp" and s.dport == 80 and not is_ipv6(s) end

local CASES = {
  { name = "-L", args = "-L", target = { ratio = 0.6, raw = 1.6 } },
  { name = "-L -o extended", args = "-L -o extended", target = { ratio = 0.6, raw = 1.6 } },
  { name = "-L -o xml", args = "-L -o xml", target = { ratio = 0.6 } },
  { name = "-L -o json (vs -L)", ours = "-L -o json", theirs = "-L", compare = false },
  { name = "-L -p tcp --dport 22", args = "-L -p tcp --dport 22", target = { ratio = 0.3 } },
  { name = "-L -m 5", args = "-L -m 5" },
  { name = "-L -u ASSURED", args = "-L -u ASSURED" },
  { name = "-L -w 3", args = "-L -w 3", target = { ratio = 0.3 } },
  { name = "-G (one entry)", args = get_args, target = { ratio = 1.3 } },
  { name = "-C", args = "-C", target = { ratio = 1.3 } },
  { name = "-U -s 10.0.0.0/26 -p tcp --dport 80 -m 42", args = "-U -s 10.0.0.0/26 -p tcp --dport 80 -m 42",
    target = { ratio = 0.3 }, mutates = true,
    prepare = function(ctx) restore_subset(ctx, HTTP_FILTER, HTTP) end,
    cleanup = function(ctx) restore_subset(ctx, HTTP_FILTER, HTTP) end },
  { name = "-D -p udp", args = "-D -p udp", target = { ratio = 0.25 }, mutates = true,
    prepare = function(ctx) restore_subset(ctx, UDP_FILTER, UDP) end,
    cleanup = function(ctx) restore_subset(ctx, UDP_FILTER, UDP) end },
  { name = "-F", args = "-F", mutates = true, prepare = refill, cleanup = refill },
  { name = "-R (100k -I lines)", target = { ratio = 0.3 }, mutates = true,
    args = function(ctx) return "-R " .. make_load_file(ctx) end,
    prepare = function(ctx)
      make_load_file(ctx)
      assert(ctx.h:flush())
      if ctx.n > LOAD_LINES then fill.create(ctx.h, LOAD_LINES + 1, ctx.n, cfg.seed) end
    end,
    cleanup = function(ctx)
      assert(ctx.h:flush())
      fill.create(ctx.h, 1, ctx.n, cfg.seed)
    end },
}

local function selected(name)
  if not cfg.only then return true end
  for pattern in cfg.only:gmatch("[^|]+") do
    if name:find(pattern) then return true end
  end
  return false
end

local function resolve(v, ctx)
  if type(v) == "function" then return v(ctx) end
  return v
end

-- Whether run rb (conntrack's) failed where run ra (ours) did not.
local function b_failed_alone(ra, rb) return rb.status ~= 0 and ra.status == 0 end

-- Alternates a (ours) and b (theirs) over n pairs: A B, B A, A B, ...
-- skip_a leaves a out (it failed its check). Returns per-side lists and the
-- per-pair ratios of wall time. A pair in which b failed and a did not gives
-- no ratio (b stopped short of the work: conntrack 1.4.7's -U of many entries
-- exits 1 part way at random); they are counted in b_failed.
local function run_pairs(ctx, n, a, b, prepare, skip_a)
  local res = { a = { wall = {}, cpu = {}, sys = {}, rss = {}, status = {} },
                b = { wall = {}, cpu = {}, sys = {}, rss = {}, status = {} }, ratio = {},
                b_failed = 0 }
  local function one(side, cmd)
    if prepare then prepare(ctx) end
    local r = run(cmd, nil, tmp(side .. ".timed.err"))
    local s = res[side]
    s.wall[#s.wall + 1], s.cpu[#s.cpu + 1], s.rss[#s.rss + 1] = r.wall, r.cpu, r.rss
    s.sys[#s.sys + 1] = r.sys
    s.status[#s.status + 1] = r.status
    return r
  end
  for p = 1, n do
    local first, second = "a", "b"
    if p % 2 == 0 then first, second = "b", "a" end
    local ra, rb
    for _, side in ipairs({ first, second }) do
      if side == "a" and not skip_a then ra = one("a", a)
      elseif side == "b" then rb = one("b", b) end
    end
    if ra and b_failed_alone(ra, rb) then
      res.b_failed = res.b_failed + 1
    elseif ra then
      res.ratio[#res.ratio + 1] = ra.wall / rb.wall
    end
  end
  return res
end

-- How many timed pairs a case gets: cfg.pairs, fewer when one check pair
-- took longer than the case budget allows, none (the check runs are the
-- timing) when a single pair would overrun it.
local function pairs_within_budget(check_wall)
  return math.min(cfg.pairs, math.floor(cfg.budget / check_wall))
end

-- The check runs as the only timed pair (stdout went to a file, not /dev/null); as in
-- run_pairs, a conntrack run that failed where ours did not gives no ratio.
local function pairs_from_check(ro, rt, skip_a)
  local function side(r)
    return { wall = { r.wall }, cpu = { r.cpu }, sys = { r.sys }, rss = { r.rss },
             status = { r.status } }
  end
  local failed = not skip_a and b_failed_alone(ro, rt)
  return { a = skip_a and { wall = {}, cpu = {}, sys = {}, rss = {}, status = {} } or side(ro),
           b = side(rt),
           ratio = (skip_a or failed) and {} or { ro.wall / rt.wall },
           b_failed = failed and 1 or 0 }
end

local function summarize(row, res)
  for _, side in ipairs({ "a", "b" }) do
    local s = res[side]
    row[side] = { wall = median(s.wall), cpu = median(s.cpu), sys = median(s.sys),
                  rss = max(s.rss) }
  end
  row.ratio = median(res.ratio)
end

-- Runs each side once with its output kept (and, for a case that changes
-- the table, the table it leaves). Returns the error (ours failed) and the
-- match text.
local function check(case, ctx, ours, theirs)
  local prepare = case.prepare or function() end
  prepare(ctx)
  local rt = run(theirs, tmp("theirs.out"), tmp("theirs.err"))
  local table_theirs = case.mutates and snapshot(ctx.h)
  prepare(ctx)
  local ro = run(ours, tmp("ours.out"), tmp("ours.err"))
  local table_ours = case.mutates and snapshot(ctx.h)

  if ro.status ~= rt.status and ro.status ~= 0 then
    return string.format("exit %d: %s", ro.status, first_line(read_file(tmp("ours.err")))), "—",
           ro, rt
  end
  if case.compare == false then
    return nil, string.format("n/a (%d lines; conntrack -L: %d)", #normalized_lines(tmp("ours.out")),
                              #normalized_lines(tmp("theirs.out"))), ro, rt
  end
  local found = {}
  local function note(d) if d then found[#found + 1] = d end end
  note(diff_lines(normalized_lines(tmp("theirs.out")), normalized_lines(tmp("ours.out")), "stdout"))
  note(diff_lines(normalized_lines(tmp("theirs.err")), normalized_lines(tmp("ours.err")), "stderr"))
  if ro.status ~= rt.status then
    note(string.format("exit %d vs conntrack's %d", ro.status, rt.status))
  end
  if case.mutates then note(diff_lines(table_theirs, table_ours, "table after")) end
  return nil, #found > 0 and "no: " .. table.concat(found, "; ") or "yes", ro, rt
end

-- Runs one command-line case: the check, then the timed pairs.
local function cli_case(case, ctx)
  local row = { name = case.name, target = case.target, cli = true }
  local ours = cfg.ours .. " " .. resolve(case.ours or case.args, ctx)
  local theirs = cfg.theirs .. " " .. resolve(case.theirs or case.args, ctx)
  local ro, rt
  row.error, row.match, ro, rt = check(case, ctx, ours, theirs)
  collectgarbage()

  local skip = row.error ~= nil
  local n = pairs_within_budget(rt.wall + (skip and 0 or ro.wall))
  local res
  if n >= 1 then
    res = run_pairs(ctx, n, ours, theirs, case.prepare, skip)
  else
    res = pairs_from_check(ro, rt, skip)
  end
  if n < cfg.pairs then row.pairs = math.max(n, 0) end
  summarize(row, res)
  row.theirs_failed = res.b_failed
  for i, status in ipairs(res.a.status) do
    if status ~= res.b.status[i] and status ~= 0 and not row.error then
      row.error = string.format("exit %d in a timed run: %s", status,
                                first_line(read_file(tmp("a.timed.err"))))
    end
  end
  if case.cleanup then case.cleanup(ctx) end
  return row
end

-- The Lua API's dump loop against the raw dump; leaves ctx.raw (median wall).
local function api_dump_case(ctx)
  local row = { name = "Lua API: dump loop, 4 fields (vs raw dump)", target = { ratio = 2 },
                sides = { "Lua loop", "raw dump" } }
  local ours = cfg.ctlua .. " " .. DIR .. "/luadump.lua"
  local ro = run(ours, tmp("ours.out"), tmp("ours.err"))
  local rt = run(cfg.rawdump, tmp("theirs.out"), tmp("theirs.err"))
  assert(rt.status == 0, "rawdump failed: " .. first_line(read_file(tmp("theirs.err"))))
  if ro.status ~= 0 then
    row.error = string.format("exit %d: %s", ro.status, first_line(read_file(tmp("ours.err"))))
    row.match = "—"
  else
    local d = diff_lines(normalized_lines(tmp("theirs.out")), normalized_lines(tmp("ours.out")),
                         "entry count")
    row.match = d and "no: " .. d or "yes (counts)"
  end
  summarize(row, run_pairs(ctx, cfg.pairs, ours, cfg.rawdump, nil, row.error ~= nil))
  ctx.raw = row.b.wall
  return row
end

-- Events --------------------------------------------------------------------
-- A churn generator in this process makes udp entries and deletes them
-- through ctnetlink. At a fixed rate, every TICK it creates a batch (one
-- h:create list) and deletes the previous batch entry by entry (h:get, then
-- h:delete of the flow: a delete by filter would dump the table, and every
-- dump walks all 262144 hash buckets, about 10 ms even when the table is
-- empty). Flat out, it creates FLAT_BATCH entries at a time and deletes the
-- previous batch by its mark (one dump per batch).

local TICK, FLAT_BATCH = 0.01, 2000
local CHURN_MARK = 0x7c00
local PROBE = { proto = "udp", src = "192.0.2.250", dst = "192.0.2.251", sport = 9, dport = 9,
                timeout = 120 }
local churned = 0   -- tuples used so far, so that each entry is new

local function churn_batch(k, mark)
  local specs = {}
  for j = 1, k do
    local n = churned + j
    specs[j] = { proto = "udp", src = string.format("10.99.%d.%d", (n >> 8) & 255, n & 255),
                 dst = "10.98.0.1", sport = 1024 + (n >> 16) % 60000, dport = 53, timeout = 120,
                 mark = mark }
  end
  churned = churned + k
  return specs
end

local function delete_each(h, specs)
  for _, s in ipairs(specs) do
    local f = assert(h:get{ proto = s.proto, src = s.src, dst = s.dst, sport = s.sport,
                            dport = s.dport })
    assert(h:delete(f))
  end
end

--- Creates and deletes `creates` entries at rate events/s (nil: flat out);
-- returns the events made (2 per entry) and the seconds it took.
local function churn(h, creates, rate)
  local made, b, t0 = 0, 0, monotonic()
  if not rate then
    while made < creates do
      local k = math.min(FLAT_BATCH, creates - made)
      assert(h:create(churn_batch(k, CHURN_MARK + b % 2)))
      if b > 0 then assert(h:delete{ mark = CHURN_MARK + (b - 1) % 2 }) end
      made, b = made + k, b + 1
    end
    assert(h:delete{ mark = CHURN_MARK + (b - 1) % 2 })
    return 2 * creates, monotonic() - t0
  end
  local per_tick = math.max(1, math.floor(rate / 2 * TICK + 0.5))
  local previous = {}
  while made < creates do
    local batch = churn_batch(math.min(per_tick, creates - made), CHURN_MARK)
    assert(h:create(batch))
    delete_each(h, previous)
    previous, made, b = batch, made + #batch, b + 1
    local due = t0 + b * TICK - monotonic()
    if due > 0 then sleep(due) end
  end
  delete_each(h, previous)
  return 2 * creates, monotonic() - t0
end

-- Starts cmd in the background, in a process group of its own, under
-- /usr/bin/time. Returns { pgid =, out =, err =, timefile = }.
local running = {}  -- the started listeners not yet stopped, by pgid

local function start(name, cmd)
  local l = { out = tmp(name .. ".out"), err = tmp(name .. ".err"), timefile = tmp(name .. ".time") }
  os.remove(l.timefile)
  l.pgid = capture(string.format("setsid /usr/bin/time -f '%s' -o %s %s </dev/null >%s 2>%s & echo $!",
                                 TIME_FORMAT, l.timefile, cmd, l.out, l.err))
  assert(l.pgid:match("^%d+$"), "could not start " .. cmd)
  running[l.pgid] = l
  local f = assert(io.open(tmp("listeners"), "a"))  -- bench/run stops them if we die
  f:write(l.pgid, "\n")
  f:close()
  return l
end

local function finished(l) return read_time(l.timefile) ~= nil end

-- SIGINT to the group (time ignores it, the listener stops), then wait.
local function stop(l)
  if not finished(l) then os.execute("kill -INT -" .. l.pgid .. " 2>/dev/null") end
  for _ = 1, 200 do
    if finished(l) then break end
    sleep(0.05)
  end
  if not finished(l) then os.execute("kill -KILL -" .. l.pgid .. " 2>/dev/null") sleep(0.2) end
  running[l.pgid] = nil
  return read_time(l.timefile) or { cpu = 0, rss = 0, status = 255 }
end

-- After a harness error: no listener outlives the run.
local function stop_all()
  for _, l in pairs(running) do stop(l) end
end

-- Waits until every listener's output has stopped growing for `quiet` seconds.
local function drain(listeners, quiet, limit)
  local sizes, still, t0 = {}, monotonic(), monotonic()
  while monotonic() - t0 < limit do
    local changed = false
    for i, l in ipairs(listeners) do
      local s = file_size(l.out)
      if s ~= sizes[i] then sizes[i], changed = s, true end
    end
    if changed then still = monotonic() end
    if monotonic() - still >= quiet then return end
    sleep(0.05)
  end
end

local function count_lines(path, skip)
  local n = 0
  local f = io.open(path)
  if not f then return 0 end
  for line in f:lines() do
    if not line:find(skip, 1, true) then n = n + 1 end
  end
  f:close()
  return n
end

-- What ours says it lost: the first number on each stderr line that speaks of
-- loss (its "WARNING: N events have been lost."), summed. Ours warns on every
-- overrun, so a run without such a line reported 0; conntrack only warns,
-- without a count, so only ours is read.
local function reported_lost(errtext)
  local total = 0
  for line in errtext:gmatch("[^\n]+") do
    local lower = line:lower()
    if lower:find("lost") or lower:find("losing") or lower:find("overrun") then
      total = total + (tonumber(line:match("(%d+)")) or 0)
    end
  end
  return total
end

-- Kernel-made events: UDP datagrams over loopback, each to a port of its own and so a
-- new entry with a NEW event made by the packet (conntrack -E prints those without the
-- /proc/net/netlink lookup that ctnetlink-made events cost it). bash opens a socket per
-- datagram itself (/dev/udp), so the sender runs flat out without a fork per packet. A
-- rule that asks for conntrack makes the namespace track its loopback traffic. Returns
-- the events made (the entries the kernel counts after) and the seconds it took.
local TRACKING = [[
table inet ct_lua_bench {
  chain out {
    type filter hook output priority 0;
    ct state new counter
  }
}
]]
local function traffic(h, packets)
  local rules = tmp("tracking.nft")
  local f = assert(io.open(rules, "w"))
  f:write(TRACKING)
  f:close()
  must("nft -f " .. rules)
  local t0 = monotonic()
  must(string.format("bash -c 'for ((i = 0; i < %d; i++)); do " ..
                     "echo x >/dev/udp/127.0.0.1/$((1024 + i %% 60000)); done 2>/dev/null'",
                     packets))
  local seconds = monotonic() - t0
  must("nft delete table inet ct_lua_bench")
  return assert(h:count()), seconds
end

--- Both listeners at once on the same churn (or traffic). Returns the measurements.
local function events_run(h, spec, keep_outputs)
  local listeners = { ours = start("ev_ours", cfg.ours .. " -E"),
                      theirs = start("ev_theirs", cfg.theirs .. " -E") }
  -- a probe entry shows when each listener is subscribed
  sleep(0.1)
  assert(h:create(PROBE))
  local t0 = monotonic()
  while monotonic() - t0 < 5 do
    local ready = true
    for _, l in pairs(listeners) do
      if not finished(l) and file_size(l.out) == 0 then ready = false end
    end
    if ready then break end
    sleep(0.02)
  end
  assert(h:delete{ src = PROBE.src })
  local made, seconds
  if spec.packets then
    made, seconds = traffic(h, spec.packets)
  else
    made, seconds = churn(h, spec.creates, spec.rate)
  end
  drain({ listeners.ours, listeners.theirs }, 0.5, 30)
  local r = { made = made, rate = made / seconds }
  for side, l in pairs(listeners) do
    local t = stop(l)
    local received = count_lines(l.out, PROBE.src)
    local errtext = read_file(l.err) or ""
    r[side] = { received = received, lost = made - received,
                reported = side == "ours" and reported_lost(errtext) or nil,
                cpu = t.cpu, rss = t.rss, status = t.status, err = errtext,
                per_event = received > 0 and t.cpu / received or nil }
    if keep_outputs then os.rename(l.out, tmp("ev_" .. side .. ".kept")) end
  end
  assert(h:flush())  -- the traffic's entries (after the listeners stopped)
  return r
end

local EVENT_RATES = {
  { name = "-E, churn 5k events/s", rate = 5000, creates = 5000 },
  { name = "-E, churn 20k events/s", rate = 20000, creates = 20000 },
  { name = "-E, churn 50k events/s", rate = 50000, creates = 50000 },
  { name = "-E, churn flat out", creates = 50000 },
  { name = "-E, real traffic (kernel-made events), flat out", packets = 30000 },
}

-- The values of one field over the runs (runs[i][side][key], or runs[i][key]).
local function column(runs, side, key)
  local t = {}
  for _, r in ipairs(runs) do
    local v
    if key then v = r[side][key] else v = r[side] end
    if v then t[#t + 1] = v end
  end
  return t
end

local function events_case(h, spec)
  local row = { name = spec.name, events = true, runs = {} }
  for rep = 1, cfg.pairs do
    local r = events_run(h, spec, rep == 1)
    row.runs[rep] = r
    print(string.format("  rep %d: %d events at %.0f/s; ours %d received, %d reported lost, " ..
                        "%.2f s CPU; conntrack %d received, %.2f s CPU", rep, r.made, r.rate,
                        r.ours.received, r.ours.reported, r.ours.cpu, r.theirs.received,
                        r.theirs.cpu))
    if rep == 1 and r.ours.status ~= 0 and r.ours.received == 0 then
      row.error = string.format("exit %d: %s", r.ours.status, first_line(r.ours.err))
    end
  end
  local ratios = {}
  for _, r in ipairs(row.runs) do
    if r.ours.per_event and r.theirs.per_event then
      ratios[#ratios + 1] = r.ours.per_event / r.theirs.per_event
    end
  end
  row.made, row.rate, row.ratio = row.runs[1].made, median(column(row.runs, "rate")), median(ratios)
  for _, side in ipairs({ "ours", "theirs" }) do
    -- loss comes in some runs only, which the medians hide and the verdict counts:
    -- keep the run that lost most too, with its own numbers
    local worst = row.runs[1][side]
    for _, r in ipairs(row.runs) do
      if r[side].lost > worst.lost then worst = r[side] end
    end
    row[side] = { received = median(column(row.runs, side, "received")),
                  lost = median(column(row.runs, side, "lost")),
                  worst = worst,
                  reported = median(column(row.runs, side, "reported")),
                  per_event = median(column(row.runs, side, "per_event")),
                  rss = max(column(row.runs, side, "rss")) }
  end
  local first = row.runs[1]
  if row.error then
    row.match = "—"
  elseif first.ours.lost == 0 and first.theirs.lost == 0 then
    local d = diff_lines(normalized_lines(tmp("ev_theirs.kept")), normalized_lines(tmp("ev_ours.kept")),
                         "events")
    row.match = d and "no: " .. d or "yes"
  else
    row.match = "n/a (events lost)"
  end
  return row
end

-- The Lua API's event loop under flat-out churn: events per CPU second, with each()'s
-- settle (seconds) when given.
local function api_events_case(h, settle)
  local row = { name = "Lua API: event loop, trivial callback" ..
                       (settle and string.format(", each(%g)", settle) or ""),
                api_events = true, runs = {} }
  for rep = 1, cfg.pairs do
    local l = start("ev_lua", cfg.ctlua .. " " .. DIR .. "/luaevents.lua " .. (settle or ""))
    local t0 = monotonic()
    while file_size(l.out) == 0 and not finished(l) and monotonic() - t0 < 5 do sleep(0.02) end
    local made = churn(h, 50000, nil)
    -- the stop signal: an update event, once the churn has been read
    sleep(0.2)
    assert(h:create(PROBE))
    local probe = assert(h:get{ proto = PROBE.proto, src = PROBE.src, dst = PROBE.dst,
                                sport = PROBE.sport, dport = PROBE.dport })
    assert(h:update(probe, { mark = 1 }))
    t0 = monotonic()
    while not finished(l) and monotonic() - t0 < 10 do sleep(0.05) end
    local t = stop(l)
    assert(h:delete{ src = PROBE.src })
    local handled, lost = (read_file(l.out) or ""):match("ready\n(%d+)%s+(%d+)")
    if not handled then
      row.error = string.format("exit %d: %s", t.status, first_line(read_file(l.err)))
      break
    end
    handled = tonumber(handled) - 1  -- the probe's new event
    row.runs[rep] = { made = made, handled = handled, lost = tonumber(lost), rss = t.rss,
                      per_second = t.cpu > 0 and handled / t.cpu or nil }
    print(string.format("  rep %d: %d of %d events handled, %d reported lost, %.2f s CPU",
                        rep, handled, made, lost, t.cpu))
  end
  local function col(key) local t = {} for i, r in ipairs(row.runs) do t[i] = r[key] end return t end
  row.made = row.runs[1] and row.runs[1].made
  row.per_second, row.handled, row.lost = median(col("per_second")), median(col("handled")),
                                          median(col("lost"))
  row.rss = max(col("rss"))
  return row
end

-- Reporting -----------------------------------------------------------------

local function ms(s)
  if not s then return "—" end
  local v = s * 1000
  if v >= 100 then return string.format("%.0f ms", v) end
  if v >= 10 then return string.format("%.1f ms", v) end
  return string.format("%.2f ms", v)
end

local function kib(k) return k and string.format("%.1f MiB", k / 1024) or "—" end

local function target_text(row)
  local t = {}
  if row.target and row.target.ratio then t[#t + 1] = string.format("≤ %.2g", row.target.ratio) end
  if row.target and row.target.raw then t[#t + 1] = string.format("≤ %.2gx raw", row.target.raw) end
  if row.cli then t[#t + 1] = "RSS ≤ 4 MiB" end
  return #t > 0 and table.concat(t, ", ") or "—"
end

local function verdict(row, raw)
  if row.error then return "ERROR: " .. row.error end
  local missed = {}
  -- no ratio when every conntrack run failed: nothing to compare, no miss
  local compared = row.ratio or (row.theirs_failed or 0) == 0
  if row.target and row.target.ratio and compared and
     not (row.ratio and row.ratio <= row.target.ratio) then
    missed[#missed + 1] = "ratio"
  end
  if row.target and row.target.raw then
    local vs_raw = raw and row.a.wall / raw
    if not (vs_raw and vs_raw <= row.target.raw) then
      missed[#missed + 1] = string.format("raw %.2fx", vs_raw or 0 / 0)
    end
  end
  if row.cli and not (row.a.rss and row.a.rss <= RSS_MAX) then missed[#missed + 1] = "RSS" end
  if #missed > 0 then return "MISS (" .. table.concat(missed, ", ") .. ")" end
  if not compared then return "n/a (conntrack failed in every timed run)" end
  return (row.target or row.cli) and "PASS" or "—"
end

local function ratio_text(r) return r and string.format("%.2f", r) or "—" end

local function md_row(cells) return "| " .. table.concat(cells, " | ") .. " |" end

local function md_header(names)
  local rule = {}
  for i = 1, #names do rule[i] = "---" end
  return md_row(names) .. "\n" .. md_row(rule)
end

-- A side's CPU time and the kernel's part of it: "370 ms (sys 60.0 ms)".
local function cpu_text(side)
  if not side.cpu then return "—" end
  if not side.sys then return ms(side.cpu) end
  return string.format("%s (sys %s)", ms(side.cpu), ms(side.sys))
end

local function size_table(rows, raw)
  local out = { md_header({ "case", "ours wall", "conntrack wall", "ratio", "ours CPU", "conntrack CPU",
                            "ours RSS", "conntrack RSS", "outputs match", "target", "result" }) }
  for _, row in ipairs(rows) do
    local a, b = row.a or {}, row.b or {}
    local ratio = ratio_text(row.ratio)
    if row.target and row.target.raw and a.wall and raw then
      ratio = string.format("%s (raw %.2fx)", ratio, a.wall / raw)
    end
    if (row.theirs_failed or 0) > 0 then
      ratio = string.format("%s (conntrack failed in %d timed run%s, left out)", ratio,
                            row.theirs_failed, row.theirs_failed > 1 and "s" or "")
    end
    local name = row.sides and string.format("%s (ours = %s, conntrack = %s)", row.name,
                                             row.sides[1], row.sides[2])
                 or "`" .. row.name .. "`"
    if row.pairs == 0 then
      name = name .. " (timed once: the check runs)"
    elseif row.pairs then
      name = name .. string.format(" (%d pairs)", row.pairs)
    end
    local failed = row.error ~= nil
    out[#out + 1] = md_row({ name, failed and "ERROR" or ms(a.wall), ms(b.wall), ratio,
                             failed and "—" or cpu_text(a), cpu_text(b),
                             failed and "—" or kib(a.rss),
                             kib(b.rss), row.match, target_text(row), verdict(row, raw) })
  end
  return table.concat(out, "\n")
end

local function us(v) return v and string.format("%.1f µs", v * 1e6) or "—" end

local EVENTS_TARGET = "no loss where conntrack loses, CPU ≤ 0.5, RSS ≤ 4 MiB"

local function events_verdict(row)
  if row.error then return "ERROR: " .. row.error end
  local missed = {}
  local miscount = false
  for _, r in ipairs(row.runs) do
    if r.theirs.lost > 0 and r.ours.lost > 0 then missed[1] = "loss" end
    miscount = miscount or r.ours.reported ~= r.ours.lost
  end
  -- ours claims to count every event it lost: a run where it did not is a bug
  if miscount then missed[#missed + 1] = "miscount" end
  if not (row.ratio and row.ratio <= 0.5) then missed[#missed + 1] = "CPU" end
  if not (row.ours.rss and row.ours.rss <= RSS_MAX) then missed[#missed + 1] = "RSS" end
  return #missed > 0 and ("MISS (" .. table.concat(missed, ", ") .. ")") or "PASS"
end

-- "; worst run R / L (reported)" when some run lost more than the median one.
local function worst_run(side)
  local w = side.worst
  if not w or w.lost <= side.lost then return "" end
  return string.format("; worst run %d / %d", w.received, w.lost) ..
         (w.reported and string.format(" (%d)", w.reported) or "")
end

local function events_table(rows)
  local out = { md_header({ "case", "events made (median rate)",
                            "ours received / lost (reported), median; worst run",
                            "conntrack received / lost, median; worst run", "ours CPU per event",
                            "conntrack CPU per event", "ratio", "ours RSS", "conntrack RSS",
                            "outputs match", "target", "result" }) }
  for _, row in ipairs(rows) do
    if row.api_events then
      local result = row.error and "ERROR: " .. row.error
                     or (row.per_second or 0) >= 300000 and "PASS" or "MISS"
      out[#out + 1] = md_row({ row.name, tostring(row.made or "—"),
        string.format("%s / %s", row.handled or "—", row.lost or "—"), "—",
        row.per_second and string.format("%.0fk events per CPU second", row.per_second / 1000) or "—",
        "—", "—", kib(row.rss), "—", "—", "≥ 300k events per CPU second", result })
    else
      local o, t = row.ours, row.theirs
      local failed = row.error ~= nil
      out[#out + 1] = md_row({ "`" .. row.name .. "`", string.format("%d (%.0f/s)", row.made, row.rate),
        failed and "ERROR" or string.format("%d / %d (%.0f)", o.received, o.lost, o.reported) ..
                              worst_run(o),
        string.format("%d / %d", t.received, t.lost) .. worst_run(t),
        failed and "—" or us(o.per_event),
        us(t.per_event), ratio_text(row.ratio), failed and "—" or kib(o.rss), kib(t.rss), row.match,
        EVENTS_TARGET, events_verdict(row) })
    end
  end
  return table.concat(out, "\n")
end

-- Main ----------------------------------------------------------------------

local function sysctl(name, value)
  local f = assert(io.open("/proc/sys/net/netfilter/" .. name, "w"))
  f:write(tostring(value), "\n")
  f:close()
end

local function machine()
  local cpu = (read_file("/proc/cpuinfo") or ""):match("model name%s*:%s*([^\n]+)") or "?"
  return string.format("nproc %s, kernel %s, CPU %s, %s; ct-lua %s",
                       capture("nproc"), capture("uname -r"), cpu,
                       capture(cfg.theirs .. " -V 2>&1"),
                       capture("git -C " .. cfg.root .. " describe --always --dirty 2>/dev/null"))
end

local function load_average()
  return ((read_file("/proc/loadavg") or ""):match("^(%S+ %S+ %S+)")) or "?"
end

local function command_line()
  local t = {}
  for _, v in ipairs({ "BENCH_SIZES", "BENCH_PAIRS", "BENCH_SEED", "BENCH_CASES", "BENCH_OURS" }) do
    local value = os.getenv(v)
    if value then
      if value:find("[^%w%.,/_:=-]") then value = "'" .. value:gsub("'", [['\'']]) .. "'" end
      t[#t + 1] = v .. "=" .. value
    end
  end
  t[#t + 1] = os.getenv("BENCH_COMMAND") or "bench/run"
  return table.concat(t, " ")
end

local function main()
  sysctl("nf_conntrack_acct", 1)        -- packets= bytes=, as on a real box
  sysctl("nf_conntrack_timestamp", 1)   -- delta-time=
  sysctl("nf_conntrack_events", 1)      -- events for every entry
  local h = assert(conntrack.open())
  assert(h:flush())

  local started = monotonic()
  local report = {
    string.format("## %s: `%s`", os.date("%Y-%m-%d %H:%M %Z"), command_line()),
    "",
    "Machine: " .. machine() .. ".",
    "Load average at the start: " .. load_average() .. " (the machine may be shared).",
  }
  -- what launching a command costs here: included in every wall time
  local launch = {}
  for i = 1, 10 do launch[i] = run("/bin/true").wall end
  report[#report + 1] = string.format("Launching a command (sh, time, exec) costs %s of each wall time " ..
                                      "(median of 10 runs of /bin/true). CPU times (user + sys, " ..
                                      "the kernel's part in parentheses) have a 10 ms " ..
                                      "resolution (/usr/bin/time). %d pairs per case, seed %d.",
                                      ms(median(launch)), cfg.pairs, cfg.seed)
  print(table.concat(report, "\n"))

  for _, n in ipairs(cfg.sizes) do
    local ctx = { h = h, n = n }
    assert(h:flush())
    local t0 = monotonic()
    fill.create(h, 1, n, cfg.seed)
    local count = h:count()
    local header = string.format("### %d entries (filled in %.1f s; the kernel counts %d)", n,
                                 monotonic() - t0, count)
    print("\n" .. header)
    local rows = {}
    if selected("Lua API: dump loop") then
      print("- Lua API: dump loop vs raw dump")
      rows[#rows + 1] = api_dump_case(ctx)
    end
    for _, case in ipairs(CASES) do
      if selected(case.name) then
        io.stdout:write("- ", case.name, "\n")
        io.stdout:flush()
        local ok, row = xpcall(cli_case, debug.traceback, case, ctx)
        if not ok then
          row = { name = case.name, error = "harness: " .. first_line(row), match = "—", a = {}, b = {} }
          print(row.error)
          pcall(refill, ctx)
        end
        rows[#rows + 1] = row
        local a, b = row.a or {}, row.b or {}
        print(string.format("  ours %s (CPU %s), conntrack %s (CPU %s), ratio %s, match: %s%s",
                            row.error and "ERROR" or ms(a.wall), cpu_text(a), ms(b.wall),
                            cpu_text(b),
                            ratio_text(row.ratio), row.match, row.error and ("; " .. row.error) or ""))
      end
    end
    if #rows > 0 then
      report[#report + 1] = ""
      report[#report + 1] = header
      report[#report + 1] = ""
      report[#report + 1] = size_table(rows, ctx.raw)
    end
    if ctx.raw then
      report[#report + 1] = ""
      report[#report + 1] = string.format("Raw dump (build/rawdump): %s median, %.2f µs per entry.",
                                          ms(ctx.raw), ctx.raw / n * 1e6)
    end
  end

  local erows = {}
  assert(h:flush())
  local function event_row(name, fn, ...)
    print("- " .. name)
    local ok, row = xpcall(fn, debug.traceback, ...)
    if not ok then
      print(row)
      row = { name = name, error = "harness: " .. first_line(row), runs = {}, made = 0, rate = 0,
              ours = {}, theirs = { received = 0, lost = 0 }, match = "—", api_events = name:find("Lua") }
      stop_all()
      pcall(function() h:flush() end)
    end
    erows[#erows + 1] = row
  end
  for _, spec in ipairs(EVENT_RATES) do
    if selected(spec.name) then event_row(spec.name, events_case, h, spec) end
  end
  if selected("Lua API: event loop") then
    event_row("Lua API: event loop", api_events_case, h)
    event_row("Lua API: event loop, each(0.001)", api_events_case, h, 0.001)
  end
  if #erows > 0 then
    report[#report + 1] = ""
    report[#report + 1] = "### Events (an empty table; churn of udp entries through ctnetlink " ..
                          "from the driver; both listeners run at once)"
    report[#report + 1] = ""
    report[#report + 1] = events_table(erows)
  end
  report[#report + 1] = ""
  report[#report + 1] = string.format("Total run time %.0f s; load average at the end: %s.",
                                      monotonic() - started, load_average())
  assert(h:flush())

  local text = table.concat(report, "\n") .. "\n"
  print("\n" .. text)
  local existing = read_file(cfg.results)
  local f = assert(io.open(cfg.results, "a"))
  if not existing or existing == "" then
    f:write([[
# Benchmark results

Appended to by `make bench` (bench/run, bench/cases.lua), newest run last: ct-lua's
`conntrack` ("ours") against /usr/sbin/conntrack on the same table, in a private network
namespace filled by bench/fill.lua (a seeded mix of tcp states, udp, icmp, IPv6, gre, sctp,
marks, zones and NATed entries). Each case runs the two alternately (A B, B A, ...) with
stdout to /dev/null; wall time is the monotonic clock around the child, CPU (user+sys, 10 ms
resolution) and peak RSS come from /usr/bin/time. Times are medians over the pairs; the ratio
is the median of the per-pair ratios ours/conntrack of wall time. "Outputs match" compares one
extra run of each (sorted lines with the countdown timeout, delta-time, use and id masked; for
-U, -D, -F and -R also the table each leaves). ERROR means ours failed (its first stderr line
is shown); conntrack's side is still timed. The -E cases run both listeners at once on the
same ctnetlink churn; lost = made - received. Targets are issue 6's; they apply at 100k and
262k entries.
]])
  end
  f:write("\n", text)
  f:close()
end

main()
