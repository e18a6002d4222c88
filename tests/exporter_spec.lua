-- ct-lua exporter: Prometheus metrics of the table, scraped over HTTP and read from a
-- node_exporter textfile.
--
-- Each exporter runs in the background of this private namespace (`sh -c '... &'`, its
-- pid and exit status in files) and is stopped by its pid. Scrapes are raw HTTP through
-- socat, so the status line and headers are checked as sent; the body is parsed by the
-- strict exposition-format parser below and compared with conntrack(8) on the same
-- table: flows with `conntrack -L`, entries with `conntrack -C`, stats with
-- `conntrack -S`. Loopback traffic is not tracked (a notrack rule), so the scrapes never
-- add entries of their own. Waits are deadlines polled every 50 ms, never fixed sleeps.
--
-- The exporter takes every event already queued before it answers a scrape, and changes
-- made through ctnetlink are queued on every listener before the request returns: after
-- h:create/update/delete, the next scrape counts them, exactly.
local H = require "helpers"
local conntrack = require "conntrack"

local CT_LUA = "./ct-lua"
local CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

---------------------------------------------------------------------------------------
-- The exposition format (text 0.0.4), strictly

local METRIC_NAME = "^[a-zA-Z_:][a-zA-Z0-9_:]*$"
local LABEL_NAME = "^[a-zA-Z_][a-zA-Z0-9_]*$"
local TYPES = { counter = true, gauge = true, histogram = true, summary = true, untyped = true }

local function unescape(text, allowed, where)
  return (text:gsub("\\(.)", function(c)
    local v = allowed[c]
    if not v then error(where .. ": bad escape '\\" .. c .. "'", 0) end
    return v
  end))
end

local function parse_value(text, where)
  local specials = { ["NaN"] = 0 / 0, ["+Inf"] = math.huge, ["-Inf"] = -math.huge,
                     ["Inf"] = math.huge }
  if specials[text] then return specials[text] end
  local v = text:match("^[-+]?%d+%.?%d*[eE]?[-+]?%d*$") and tonumber(text)
  if not v then v = text:match("^[-+]?%.%d+[eE]?[-+]?%d*$") and tonumber(text) end
  if not v then error(where .. ": bad value '" .. text .. "'", 0) end
  return v
end

--- Labels "{a="x",b="y"}" from position i of line; returns the labels and the
-- position after the closing brace.
local function parse_labels(line, i, where)
  local labels, n = {}, 0
  i = i + 1
  while true do
    if line:sub(i, i) == "}" then return labels, i + 1, n end
    local name, after = line:match("^([a-zA-Z_][a-zA-Z0-9_]*)=\"()", i)
    if not name then error(where .. ": bad label at column " .. i, 0) end
    if labels[name] then error(where .. ": label '" .. name .. "' twice", 0) end
    local j, raw = after, {}
    while true do
      local c = line:sub(j, j)
      if c == "" then error(where .. ": unterminated label value", 0) end
      if c == "\\" then
        raw[#raw + 1] = line:sub(j, j + 1)
        j = j + 2
      elseif c == "\"" then
        break
      else
        raw[#raw + 1] = c
        j = j + 1
      end
    end
    labels[name] = unescape(table.concat(raw), { ["\\"] = "\\", ["\""] = "\"", n = "\n" }, where)
    n = n + 1
    i = j + 1
    local sep = line:sub(i, i)
    if sep == "," then
      i = i + 1
    elseif sep ~= "}" then
      error(where .. ": expected ',' or '}' after a label", 0)
    end
  end
end

--- The canonical key of a series: name and sorted labels.
local function series_key(name, labels)
  local keys = {}
  for k in pairs(labels) do keys[#keys + 1] = k end
  table.sort(keys)
  for i, k in ipairs(keys) do keys[i] = k .. "=" .. labels[k] end
  return name .. "{" .. table.concat(keys, ",") .. "}"
end

--- Parses text; returns { [family] = { help =, type =, samples = { {labels=, value=} } } }
-- and the family names in order. Raises on anything the format does not allow, or that
-- it allows but leaves ambiguous: a sample without a TYPE, HELP or TYPE twice or after
-- a sample, a family split in two groups, a series twice, a missing final newline.
local function parse_exposition(text)
  assert(text:sub(-1) == "\n", "the text does not end with a newline")
  local families, order, seen, current = {}, {}, {}, nil
  local function family(name, where)
    if not name:match(METRIC_NAME) then error(where .. ": bad metric name '" .. name .. "'", 0) end
    local f = families[name]
    if not f then
      f = { samples = {} }
      families[name] = f
      order[#order + 1] = name
    elseif current ~= name then
      error(where .. ": family '" .. name .. "' is split in two groups", 0)
    end
    current = name
    return f
  end
  local n = 0
  for line in text:gmatch("([^\n]*)\n") do
    n = n + 1
    local where = "line " .. n
    if line == "" then error(where .. ": empty line", 0) end
    local kw, name, rest = line:match("^#%s+(%u+)%s+(%S+)%s?(.*)$")
    if kw == "HELP" then
      local f = family(name, where)
      if f.help or #f.samples > 0 then error(where .. ": HELP twice or after samples", 0) end
      f.help = unescape(rest, { ["\\"] = "\\", n = "\n" }, where)
    elseif kw == "TYPE" then
      local f = family(name, where)
      if f.type or #f.samples > 0 then error(where .. ": TYPE twice or after samples", 0) end
      if not TYPES[rest] then error(where .. ": bad type '" .. rest .. "'", 0) end
      f.type = rest
    elseif line:sub(1, 1) ~= "#" then  -- (other comments are allowed anywhere)
      local mname, i = line:match("^([^%s{]+)()")
      if not mname then error(where .. ": bad sample line", 0) end
      local f = family(mname, where)
      if not f.type then error(where .. ": sample of '" .. mname .. "' has no TYPE", 0) end
      local labels = {}
      if line:sub(i, i) == "{" then labels, i = parse_labels(line, i, where) end
      local value, ts = line:sub(i):match("^ (%S+)( ?%-?%d*)$")
      if not value then error(where .. ": bad value or timestamp", 0) end
      if ts ~= "" and not ts:match("^ %-?%d+$") then error(where .. ": bad timestamp", 0) end
      local key = series_key(mname, labels)
      if seen[key] then error(where .. ": series " .. key .. " twice", 0) end
      seen[key] = true
      f.samples[#f.samples + 1] = { labels = labels, value = parse_value(value, where) }
    end
  end
  return families, order
end

--- Prometheus's naming conventions for this exporter's families.
local function check_conventions(families)
  for name, f in pairs(families) do
    assert(f.help and f.help ~= "", name .. " has no HELP")
    assert(f.type, name .. " has no TYPE")
    assert(name:match("^conntrack_[a-z0-9_]+$"), name .. " is not snake_case with conntrack_")
    assert(not name:match("__"), name .. " has a double underscore")
    if f.type == "counter" then
      assert(name:match("_total$"), "counter " .. name .. " does not end in _total")
    else
      assert(not name:match("_total$"), name .. " ends in _total but is a " .. f.type)
    end
    for _, s in ipairs(f.samples) do
      for label in pairs(s.labels) do
        assert(label:match(LABEL_NAME) and label:match("^[a-z][a-z0-9_]*$") and
               not label:match("^__"), name .. ": bad label name " .. label)
      end
      if f.type == "counter" then
        assert(s.value >= 0 and math.type(s.value) ~= nil, name .. ": a counter below 0")
      end
    end
  end
end

--- The value of the series name{labels} (labels: exactly these), or nil.
local function value_of(families, name, labels)
  local f = families[name]
  if not f then return nil end
  local key = series_key(name, labels or {})
  for _, s in ipairs(f.samples) do
    if series_key(name, s.labels) == key then return s.value end
  end
end

---------------------------------------------------------------------------------------
-- Processes, HTTP, conntrack(8)

local now = H.now

local read_file = H.file_text

local eventually = H.eventually

local scratch
local processes = {}

--- Starts `ct-lua exporter ARGS` in the background (env: a prefix such as
-- "LUA_CPATH=..."). Returns a process: .pid, :stderr(), :status() (nil while it runs),
-- :stop(signal) (the exit status), :port() (once it serves).
local function exporter(args, env)
  local n = #processes + 1
  local p = { err = scratch .. "/err" .. n, pidfile = scratch .. "/pid" .. n,
              statusfile = scratch .. "/status" .. n }
  -- the inner shell writes the pid, then waits for the exit status
  local inner = string.format("%s %s exporter %s >/dev/null 2>%s & echo $! >%s; wait $!; echo $? >%s",
                              env or "", CT_LUA, args, p.err, p.pidfile, p.statusfile)
  H.must("(sh -c " .. H.quote(inner) .. " </dev/null >/dev/null 2>&1 &)")
  p.pid = eventually(10, "the exporter's pid", function()
    return (read_file(p.pidfile) or ""):match("%d+")
  end)
  processes[n] = p
  function p.stderr() return read_file(p.err) or "" end
  function p.status()
    local s = read_file(p.statusfile)
    return s and s ~= "" and tonumber(s) or nil
  end
  function p.wait(seconds)
    return eventually(seconds or 10, "the exporter to exit", p.status)
  end
  function p.stop(signal)
    H.run("kill -" .. (signal or "TERM") .. " " .. p.pid)
    return p.wait()
  end
  function p.port()
    return eventually(10, "the exporter to serve", function()
      return tonumber(p.stderr():match("serving http://[^\n]-:(%d+)/metrics"))
    end)
  end
  return p
end

--- A raw HTTP request to 127.0.0.1:port (or host); returns status, headers
-- (lower-case names), body, and the raw response.
local function http(port, request, host)
  local target = host and ("TCP6:[" .. host .. "]:" .. port) or ("TCP:127.0.0.1:" .. port)
  local file = os.tmpname()
  H.write_file(file, request)
  local raw = H.must("socat -t5 -T5 - " .. target .. " <" .. file)
  os.remove(file)
  local head, body = raw:match("^(.-)\r\n\r\n(.*)$")
  assert(head, "no HTTP head in: " .. raw)
  local status = tonumber(head:match("^HTTP/1%.[01] (%d%d%d) "))
  local headers = {}
  for name, value in head:gmatch("\r\n([^:\r\n]+): ([^\r\n]*)") do headers[name:lower()] = value end
  return status, headers, body, raw
end

--- GET /metrics: the parsed families (checked for syntax and conventions).
local function scrape(port)
  local status, headers, body = http(port, "GET /metrics HTTP/1.0\r\n\r\n")
  assert.equal(200, status)
  assert.equal(CONTENT_TYPE, headers["content-type"])
  assert.equal(#body, tonumber(headers["content-length"]))
  local families = parse_exposition(body)
  check_conventions(families)
  return families, body
end

--- Flows by "proto state zone" as `conntrack -L` shows them.
local function listed_flows()
  local counts = {}
  for _, line in ipairs(H.conntrack("-L")) do
    local proto, rest = line:match("^(%S+)%s+%d+%s+%d+%s+(.*)$")
    if proto then
      local state = rest:match("^(%u[%u_]*)%s") or ""
      local zone = line:match(" zone=(%d+)") or "0"
      local key = proto .. " " .. state .. " " .. zone
      counts[key] = (counts[key] or 0) + 1
    end
  end
  return counts
end

local function exported_flows(families)
  local counts = {}
  for _, s in ipairs(families.conntrack_flows.samples) do
    local key = s.labels.proto .. " " .. s.labels.state .. " " .. s.labels.zone
    assert.is_nil(counts[key])
    assert.same({ proto = true, state = true, zone = true },
                { proto = s.labels.proto ~= nil, state = s.labels.state ~= nil,
                  zone = s.labels.zone ~= nil })
    assert.is_true(s.value > 0)
    counts[key] = s.value
  end
  return counts
end

--- `conntrack -S` as { [cpu] = { name = value } }.
local function listed_stats()
  local cpus = {}
  for _, line in ipairs(H.conntrack("-S")) do
    local t = {}
    for k, v in line:gmatch("(%S+)=(%d+)") do t[k] = tonumber(v) end
    cpus[t.cpu] = t
    t.cpu = nil
  end
  return cpus
end

local function exported_stats(families)
  local cpus = {}
  for name, f in pairs(families) do
    local stat = name:match("^conntrack_stat_(.+)_total$")
    if stat then
      assert.equal("counter", f.type)
      for _, s in ipairs(f.samples) do
        local cpu = assert(tonumber(s.labels.cpu), "no cpu label")
        cpus[cpu] = cpus[cpu] or {}
        cpus[cpu][stat] = s.value
      end
    end
  end
  return cpus
end

local function events_of(families)
  local t = {}
  for _, s in ipairs(families.conntrack_events_total.samples) do t[s.labels.kind] = s.value end
  t.overruns = value_of(families, "conntrack_event_overruns_total")
  t.lost = value_of(families, "conntrack_events_lost_total")
  return t
end

--- UDP entries to create: n of them, from 10.base.x.y, in zone.
local function udp_specs(n, base, zone)
  local list = {}
  for i = 1, n do
    list[i] = { proto = "udp", src = ("10.%d.%d.%d"):format(base, i >> 8, i & 255),
                dst = "10.200.0.1", sport = 4000, dport = 53, timeout = 300, zone = zone }
  end
  return list
end

--- Tracks traffic (helpers) except on loopback, where the scrapes go.
local function track_except_loopback()
  H.track_traffic()
  H.nft([[
table inet ct_lua_exporter_test {
  chain pre { type filter hook prerouting priority raw; iifname "lo" notrack; }
  chain out { type filter hook output priority raw; oifname "lo" notrack; }
}]])
end

local EXPECTED_FAMILIES = {
  conntrack_flows = "gauge",
  conntrack_entries = "gauge",
  conntrack_entries_max = "gauge",
  conntrack_events_total = "counter",
  conntrack_event_overruns_total = "counter",
  conntrack_events_lost_total = "counter",
  conntrack_exporter_collector_success = "gauge",
  conntrack_exporter_scrape_duration_seconds = "gauge",
  conntrack_stat_found_total = "counter",
  conntrack_stat_insert_total = "counter",
  conntrack_stat_drop_total = "counter",
}

---------------------------------------------------------------------------------------

describe("the spec's exposition parser", function()
  it("reads escapes, labels, special values and timestamps", function()
    local f = parse_exposition(table.concat({
      [[# HELP m_total A \\ help\nwith a newline]],
      "# TYPE m_total counter",
      [[m_total{a="q\"uote",b="back\\slash",c="new\nline",} 1e3 1700000000000]],
      "m_total{a=\"x\"} +Inf",
      "# TYPE g gauge",
      "g NaN",
      "g{z=\"\"} -1.5",
    }, "\n") .. "\n")
    assert.equal("A \\ help\nwith a newline", f.m_total.help)
    assert.same({ a = "q\"uote", b = "back\\slash", c = "new\nline" }, f.m_total.samples[1].labels)
    assert.equal(1000, f.m_total.samples[1].value)
    assert.equal(math.huge, value_of(f, "m_total", { a = "x" }))
    assert.is_true(value_of(f, "g") ~= value_of(f, "g"))
    assert.equal(-1.5, value_of(f, "g", { z = "" }))
  end)

  it("rejects what the format forbids", function()
    for _, bad in ipairs({
      "m 1\n",                                     -- no TYPE
      "# TYPE m gauge\nm 1\nm 2\n",                -- a series twice
      "# TYPE m gauge\nm{b=\"1\",a=\"2\"} 1\nm{a=\"2\",b=\"1\"} 1\n",
      "# TYPE m gauge\n# TYPE n gauge\nn 1\nm 1\n",  -- a family in two groups
      "# TYPE m gauge\nm 1\n# HELP m late\n",        -- HELP after samples
      "# TYPE m gauge\n# TYPE m gauge\n",
      "# TYPE m gaguge\n",
      "# TYPE 1m gauge\n1m 1\n",
      "# TYPE m gauge\nm{a=\"\\x\"} 1\n",             -- a bad escape
      "# TYPE m gauge\nm{a=\"1\" 1\n",
      "# TYPE m gauge\nm{a=\"1\",a=\"2\"} 1\n",
      "# TYPE m gauge\nm one\n",
      "# TYPE m gauge\nm 1",                          -- no final newline
      "# TYPE m gauge\n\nm 1\n",
    }) do
      assert.is_false(pcall(parse_exposition, bad), bad)
    end
  end)
end)

describe("ct-lua exporter", function()
  local h, x, port

  setup(function()
    scratch = H.must("mktemp -d"):gsub("%s+$", "")
    H.must("ip link set lo up")
    H.reset()
    H.sysctl("nf_conntrack_events", 1)
    track_except_loopback()
    h = H.open()
    x = exporter("--listen 127.0.0.1:0")
    port = x.port()
  end)

  teardown(function()
    for _, p in ipairs(processes) do
      if not p.status() then H.run("kill -KILL " .. p.pid) end
    end
    if h then h:close() end
    if scratch then H.run("rm -rf " .. H.quote(scratch)) end
  end)

  it("answers GET /metrics with the 0.0.4 content type and well-formed, well-named metrics", function()
    local families, body = scrape(port)
    for name, kind in pairs(EXPECTED_FAMILIES) do
      assert.is_table(families[name], name .. " is missing")
      assert.equal(kind, families[name].type, name)
    end
    -- flows carry exactly proto, state and zone: no per-flow labels, bounded cardinality
    assert.is_nil(body:match("conntrack_flows{[^}]*src="))
    assert.same({ "new", "update", "destroy", "expect_new", "expect_update", "expect_destroy" },
                (function()
                  local kinds = {}
                  for i, s in ipairs(families.conntrack_events_total.samples) do
                    kinds[i] = s.labels.kind
                  end
                  return kinds
                end)())
    for _, collector in ipairs{ "flows", "entries", "stats" } do
      assert.equal(1, value_of(families, "conntrack_exporter_collector_success",
                               { collector = collector }))
    end
    local duration = value_of(families, "conntrack_exporter_scrape_duration_seconds")
    assert.is_true(duration >= 0 and duration < 5)
  end)

  it("answers 404 elsewhere, HEAD with headers only, 405 for other methods, 400 for garbage", function()
    local status, headers, body = http(port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert.equal(404, status)
    assert.equal(#body, tonumber(headers["content-length"]))
    assert.equal(404, (http(port, "GET /metricsx HTTP/1.0\r\n\r\n")))
    status, headers = http(port, "GET /metrics?name[]=x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert.equal(200, status)
    assert.equal("close", headers.connection)
    local raw
    status, headers, body, raw = http(port, "HEAD /metrics HTTP/1.0\r\n\r\n")
    assert.equal(200, status)
    assert.equal(CONTENT_TYPE, headers["content-type"])
    assert.is_true(tonumber(headers["content-length"]) > 0)
    assert.equal("", body, raw)
    status, headers = http(port, "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
    assert.equal(405, status)
    assert.equal("GET, HEAD", headers.allow)
    assert.equal(400, (http(port, "hello\r\n\r\n")))
    assert.equal(400, (http(port, "GET /metrics HTTP/2.0\r\n\r\n")))
    -- a bare-LF client is served too
    assert.equal(200, (http(port, "GET /metrics HTTP/1.0\n\n")))
  end)

  it("counts flows by proto, state and zone as conntrack -L lists them", function()
    local peer = H.peer()
    finally(function() peer:close() end)
    assert.equal("pong\n", H.exchange("tcp", peer, 7101))
    assert.equal("pong\n", H.exchange("tcp", peer, 7102))
    assert.equal("pong\n", H.exchange("udp", peer, 7103))
    assert.equal(12, h:create(udp_specs(12, 21, 1)))
    assert.equal(5, h:create(udp_specs(5, 22, 2)))
    assert.equal(3, h:create(udp_specs(3, 23)))
    assert.is_true(h:create{ proto = "tcp", src = "10.24.0.1", dst = "10.200.0.1", sport = 5000,
                             dport = 80, state = "ESTABLISHED", timeout = 300, zone = 3 })
    assert.is_true(h:create{ proto = "tcp", src = "10.24.0.2", dst = "10.200.0.1", sport = 5000,
                             dport = 80, state = "SYN_SENT", timeout = 300, zone = 3 })
    assert.is_true(h:create{ proto = "icmp", src = "10.24.0.3", dst = "10.200.0.1",
                             icmp_type = 8, icmp_code = 0, icmp_id = 77, timeout = 300 })
    -- traffic entries age (CLOSE lasts 10 s): compare when conntrack -L is the same
    -- before and after the scrape
    local listed, exported
    eventually(10, "a scrape between two equal listings", function()
      local before = listed_flows()
      local families = scrape(port)
      listed = listed_flows()
      exported = exported_flows(families)
      local same = true
      for k, v in pairs(before) do same = same and listed[k] == v end
      for k, v in pairs(listed) do same = same and before[k] == v end
      return same
    end)
    assert.same(listed, exported)
    assert.equal(12, exported["udp  1"])
    assert.equal(5, exported["udp  2"])
    assert.equal(1, exported["tcp ESTABLISHED 3"])
    assert.equal(1, exported["tcp SYN_SENT 3"])
    assert.equal(1, exported["icmp  0"])
    local traffic = 0  -- the two TCP exchanges, in whatever state their closing left them
    for key, n in pairs(exported) do
      if key:match("^tcp %S+ 0$") then traffic = traffic + n end
    end
    assert.is_true(traffic >= 2)
  end)

  it("reports the table's fill from the kernel's counters, as conntrack -C and the sysctl", function()
    assert.equal(40, h:create(udp_specs(40, 31, 4)))
    local f = io.open("/proc/sys/net/netfilter/nf_conntrack_max")
    local max = f:read("n")
    f:close()
    local entries
    eventually(10, "a scrape between two equal counts", function()
      local before = tonumber(H.conntrack("-C")[1])
      entries = value_of(scrape(port), "conntrack_entries")
      return before == entries and tonumber(H.conntrack("-C")[1]) == entries
    end)
    assert.is_true(entries >= 40)
    assert.equal(max, value_of(scrape(port), "conntrack_entries_max"))
  end)

  it("exports every per-CPU counter of conntrack -S, between a reading before and after", function()
    local peer = H.peer()
    finally(function() peer:close() end)
    assert.equal("pong\n", H.exchange("tcp", peer, 7104))  -- counters that have moved
    local before = listed_stats()
    local exported = exported_stats(scrape(port))
    local after = listed_stats()
    local cpus = 0
    for cpu, counters in pairs(after) do
      cpus = cpus + 1
      assert.is_table(exported[cpu], "cpu " .. cpu)
      for name, value in pairs(counters) do
        local got = exported[cpu][name]
        assert.is_number(got, "cpu " .. cpu .. " " .. name)
        assert.is_true(got >= before[cpu][name] and got <= value,
                       ("cpu %d %s: %d not in [%d, %d]"):format(cpu, name, got, before[cpu][name], value))
      end
      for name in pairs(exported[cpu]) do assert.is_number(counters[name], name) end
    end
    assert.is_true(cpus > 0)
    for cpu in pairs(exported) do assert.is_table(after[cpu]) end
    local inserts = 0
    for _, counters in pairs(exported) do inserts = inserts + counters.insert end
    assert.is_true(inserts > 0)
  end)

  it("counts events by kind: they grow by exactly the changes made", function()
    H.reset()  -- no traffic entries left to expire during the count
    track_except_loopback()
    local a = events_of(scrape(port))
    assert.equal(25, h:create(udp_specs(25, 41, 9)))
    assert.equal(15, h:update({ zone = 9, src = "10.41.0.0/28" }, { mark = 7 }))
    assert.equal(8, h:delete{ zone = 9, src = "10.41.0.16/29" })
    local b = events_of(scrape(port))
    assert.equal(25, b.new - a.new)
    assert.equal(15, b.update - a.update)
    assert.equal(8, b.destroy - a.destroy)
    for _, kind in ipairs{ "expect_new", "expect_update", "expect_destroy", "overruns", "lost" } do
      assert.equal(a[kind], b[kind], kind)
    end
    -- and nothing more arrives later
    assert.same(b, events_of(scrape(port)))
  end)

  it("counts overruns and lost events when a burst overflows its buffer", function()
    local small = exporter("--listen 127.0.0.1:0 --bufsize 4096")
    local small_port = small.port()
    local a = events_of(scrape(small_port))
    assert.equal(0, a.overruns)
    assert.equal(3000, h:create(udp_specs(3000, 51)))
    local b = events_of(scrape(small_port))
    assert.is_true(b.overruns - a.overruns >= 1, "no overrun")
    assert.is_true(b.lost > a.lost, "nothing lost")
    -- the kernel counts every drop: what arrived and what was lost is the whole burst
    assert.equal(3000, (b.new - a.new) + (b.lost - a.lost))
    assert.equal(0, small.stop("INT"))
  end)

  it("keeps serving and counting while a client stalls half-way through its request", function()
    local socket = require "socket"
    local stalled = assert(socket.tcp4())
    assert(stalled:connect("127.0.0.1", port))
    assert(stalled:send("GET /met"))
    local a = events_of(scrape(port))
    assert.equal(5, h:create(udp_specs(5, 61)))
    local b = events_of(scrape(port))
    assert.equal(5, b.new - a.new)
    -- the stalled client is answered once its request is whole
    assert(stalled:send("rics HTTP/1.0\r\n\r\n"))
    stalled:settimeout(5)
    local reply = assert(stalled:receive("*a"))
    stalled:close()
    assert.matches("^HTTP/1%.1 200 OK\r\n", reply)
    parse_exposition(reply:match("\r\n\r\n(.*)$"))
  end)

  it("serves on [::1] and 127.0.0.0/8 addresses", function()
    local v6 = exporter("--listen [::1]:0")
    local p6 = v6.port()
    assert.matches("serving http://%[::1%]:", v6.stderr())
    local status, headers = http(p6, "GET /metrics HTTP/1.0\r\n\r\n", "::1")
    assert.equal(200, status)
    assert.equal(CONTENT_TYPE, headers["content-type"])
    assert.equal(0, v6.stop())
    local other = exporter("--listen 127.0.0.2:0")
    other.port()
    assert.matches("serving http://127%.0%.0%.2:", other.stderr())
    assert.equal(0, other.stop())
  end)

  it("refuses non-loopback addresses and bad arguments with status 2 and a usage line", function()
    for _, args in ipairs{ "--listen 0.0.0.0:9102", "--listen 10.7.0.1:9102", "--listen [::]:9102",
                           "--listen [fd07::1]:9102", "--listen 128.0.0.1:9102",
                           "--listen [::ffff:127.0.0.1]:9102", "--listen example.com:80" } do
      local _, status, err = H.run(CT_LUA .. " exporter " .. args)
      assert.equal(2, status, args)
      assert.matches("not a loopback address", err, 1, true)
      assert.matches("\nusage: ct%-lua exporter ", err)
    end
    for _, args in ipairs{ "--bogus", "--listen", "--listen 127.0.0.1", "--listen 127.0.0.1:70000",
                           "--interval 0 --textfile x", "--interval 5", "--bufsize -1",
                           "--textfile" } do
      local _, status, err = H.run(CT_LUA .. " exporter " .. args)
      assert.equal(2, status, args)
      assert.matches("^ct%-lua exporter: [^\n]+\nusage: ct%-lua exporter ", err)
    end
    local out, status = H.run(CT_LUA .. " exporter --help")
    assert.equal(0, status)
    assert.matches("^usage: ct%-lua exporter", out)
  end)

  it("stops cleanly on SIGTERM and SIGINT", function()
    local term = exporter("--listen 127.0.0.1:0")
    term.port()
    assert.equal(0, term.stop("TERM"))
    local int = exporter("--listen 127.0.0.1:0")
    int.port()
    assert.equal(0, int.stop("INT"))
    assert.equal(0, x.stop("TERM"))
  end)

  describe("textfile mode", function()
    -- ct-lua alone: no module path reaches LuaSocket
    local NO_MODULES = "LUA_PATH=/nonexistent/?.lua LUA_CPATH=/nonexistent/?.so"

    it("needs nothing but ct-lua; HTTP says which package it lacks", function()
      local p = exporter("--listen 127.0.0.1:0", NO_MODULES)
      assert.equal(1, p.wait())
      assert.matches("LuaSocket %(Debian package lua%-socket%)", p.stderr())
    end)

    it("writes the file at once, then replaces it atomically every interval", function()
      local path = scratch .. "/conntrack.prom"
      local p = exporter("--textfile " .. path .. " --interval 0.1", NO_MODULES)
      eventually(10, "the textfile", function() return read_file(path) end)
      check_conventions(parse_exposition(read_file(path)))
      -- every read is a whole file; each write is a new inode renamed over the old one
      local inodes, distinct, reads = {}, 0, 0
      local deadline = now() + 10
      while distinct < 4 and now() < deadline do
        local inode = H.must("stat -c %i " .. path):match("%d+")
        local text = assert(read_file(path))
        reads = reads + 1
        local families = parse_exposition(text)
        for name in pairs(EXPECTED_FAMILIES) do assert.is_table(families[name], name) end
        if not inodes[inode] then inodes[inode], distinct = true, distinct + 1 end
      end
      assert.is_true(distinct >= 4, "the file was not replaced")
      -- its values follow the table
      assert.equal(7, h:create(udp_specs(7, 71, 6)))
      eventually(10, "the new flows in the textfile", function()
        local families = parse_exposition(read_file(path))
        return value_of(families, "conntrack_flows", { proto = "udp", state = "", zone = "6" }) == 7
           and value_of(families, "conntrack_entries") == tonumber(H.conntrack("-C")[1])
      end)
      assert.equal(0, p.stop("TERM"))
      -- no temporary file is left beside it
      assert.equal(path, H.must("ls " .. path .. "*"):match("^(%S+)\n$"))
      parse_exposition(read_file(path))
      assert.matches("writing " .. path, p.stderr(), 1, true)
    end)

    it("exports the table of another namespace with --netns", function()
      local peer = H.peer()
      finally(function() peer:close() end)
      local ns = "/proc/" .. peer.pid .. "/ns/net"
      local there <close> = assert(conntrack.open{ netns = ns })
      assert.equal(9, there:create(udp_specs(9, 81, 2)))
      local path = scratch .. "/peer.prom"
      local p = exporter("--netns " .. ns .. " --textfile " .. path .. " --interval 0.1")
      eventually(10, "the textfile", function() return read_file(path) end)
      local families = parse_exposition(read_file(path))
      assert.equal(9, value_of(families, "conntrack_entries"))
      assert.equal(9, value_of(families, "conntrack_flows", { proto = "udp", state = "", zone = "2" }))
      assert.equal(0, p.stop())
    end)

    it("fails at once when the file cannot be written", function()
      local p = exporter("--textfile " .. scratch .. "/no/such/dir/x.prom", NO_MODULES)
      assert.equal(1, p.wait())
      assert.matches("no/such/dir", p.stderr(), 1, true)
    end)
  end)
end)
