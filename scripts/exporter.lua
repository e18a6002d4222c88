--- ct-lua exporter: the connection-tracking table as Prometheus metrics, served
-- over HTTP on a loopback address or written as a node_exporter textfile.
--
--   ct-lua exporter [--listen ADDR:PORT] [--textfile PATH] [--interval SECONDS]
--                   [--netns NAME|PATH] [--bufsize BYTES]
--
-- Metrics (Prometheus text format 0.0.4):
--   conntrack_flows{proto,state,zone}          gauge, from a dump of the table
--   conntrack_entries, conntrack_entries_max   gauges, the kernel's counters (no dump)
--   conntrack_stat_<name>_total{cpu}           counters, h:stats() (conntrack -S)
--   conntrack_events_total{kind}               counter, events seen by a subscription
--   conntrack_event_overruns_total             counter, times its buffer overflowed
--   conntrack_events_lost_total                counter, events the kernel dropped
--   conntrack_exporter_collector_success{collector}  gauge, 1 or 0 for this scrape
--   conntrack_exporter_scrape_duration_seconds gauge, time to read the table
--
-- One conntrack.poll loop drives the event subscription, SIGINT/SIGTERM, the
-- listening socket and every client, so a slow client never holds up the
-- events. A scrape first takes every event already queued, so the counters
-- it reports include every change made before the request arrived.
--
-- Serving HTTP needs LuaSocket (Debian: lua-socket); --textfile alone needs
-- nothing but ct-lua. The textfile is written every interval to a new file
-- beside PATH (conntrack.replace_file) renamed over PATH, so a reader never
-- sees half of one.
local conntrack = require "conntrack"

local PROGRAM = "ct-lua exporter"
local USAGE = [[
usage: ct-lua exporter [--listen ADDR:PORT] [--textfile PATH] [--interval SECONDS]
                       [--netns NAME|PATH] [--bufsize BYTES]
  --listen ADDR:PORT  serve GET /metrics on this loopback address
                      (default 127.0.0.1:9102; 127.x.x.x, [::1] or localhost; port 0: any)
  --textfile PATH     write the metrics to PATH every interval (node_exporter's
                      textfile collector); without --listen, no HTTP server runs
  --interval SECONDS  how often the textfile is written (default 15)
  --netns NAME|PATH   export the table of that network namespace (ip netns name or path)
  --bufsize BYTES     the event subscription's initial receive buffer
]]
local USAGE_LINE = USAGE:match("^[^\n]*\n[^\n]*\n")

local DEFAULT_LISTEN = "127.0.0.1:9102"
local DEFAULT_INTERVAL = 15
local CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
local MAX_CLIENTS = 32          -- conntrack.poll waits on 64 objects at most
local MAX_REQUEST = 8192        -- bytes of request line and headers
local CLIENT_TIMEOUT = 10       -- seconds a client has to send its request and read the answer
local DRAIN_BATCHES = 400       -- event batches (of 256) taken before a scrape, at most
local MAX_BUFSIZE = (1 << 30) - 1  -- what h:listen accepts
local DUMP_TRIES = 3            -- a dump the table's changes interrupted is tried again

local EVENT_KINDS = { "new", "update", "destroy", "expect_new", "expect_update", "expect_destroy" }

-- What each per-CPU counter of h:stats() counts (conntrack -S names).
local STAT_HELP = {
  searched = "Hash table lookups (kernels before 4.10)",
  found = "Lookups that found an existing entry",
  new = "Entries added (kernels before 4.10)",
  invalid = "Packets that could not be tracked",
  ignore = "Packets that were already tracked (kernels before 5.10)",
  delete = "Entries deleted (kernels before 4.10)",
  delete_list = "Entries put on the dying list (kernels before 4.10)",
  insert = "Entries inserted into the table",
  insert_failed = "Entries that could not be inserted (a clash with an existing one)",
  drop = "Packets dropped because their entry could not be inserted",
  early_drop = "Entries dropped to make room in a full table",
  error = "Packets the protocol tracker found in error",
  search_restart = "Lookups restarted because the table was resized or changed",
  clash_resolve = "Insertion clashes that were resolved",
  chaintoolong = "Insertions into an overlong hash chain",
}

local function say(...)
  io.stderr:write(PROGRAM, ": ", ...)
  io.stderr:write("\n")
end

-- ---------------------------------------------------------------------------
-- Arguments
-- ---------------------------------------------------------------------------

-- The IPv6 address text as eight numbers, or nil.
local function ipv6_groups(text)
  local head, tail = text:match("^([%x:]*)::([%x:]*)$")
  local parts = {}
  local function add(list)
    if list == "" then return true end
    for group in (list .. ":"):gmatch("([^:]*):") do
      if not group:match("^%x%x?%x?%x?$") then return false end
      parts[#parts + 1] = tonumber(group, 16)
    end
    return true
  end
  if head then
    if not add(head) then return nil end
    local before = #parts
    if not add(tail) then return nil end
    if #parts > 7 then return nil end
    for _ = 1, 8 - #parts do table.insert(parts, before + 1, 0) end
  elseif not add(text) then
    return nil
  end
  return #parts == 8 and parts or nil
end

-- Whether host is a loopback address literal (127.0.0.0/8 or ::1); also
-- returns the address family's socket constructor name.
local function loopback(host)
  local a, b, c, d = host:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if a then
    for _, octet in ipairs{ a, b, c, d } do
      if tonumber(octet) > 255 then return false end
    end
    return tonumber(a) == 127, "tcp4"
  end
  local groups = ipv6_groups(host)
  if groups then
    for i = 1, 7 do
      if groups[i] ~= 0 then return false end
    end
    return groups[8] == 1, "tcp6"
  end
  return false
end

-- "127.0.0.1:9102", "[::1]:9102" or "localhost:9102" -> { host, port, family }
local function parse_listen(text)
  local host, port = text:match("^%[([^%]]+)%]:(%d+)$")
  if not host then host, port = text:match("^([^:]+):(%d+)$") end
  if not host then
    return nil, "--listen " .. text .. ": not ADDRESS:PORT (e.g. 127.0.0.1:9102 or [::1]:9102)"
  end
  port = tonumber(port)
  if port > 65535 then return nil, "--listen " .. text .. ": port out of range" end
  if host == "localhost" then host = "127.0.0.1" end
  local ok, family = loopback(host)
  if not ok then
    return nil, "--listen " .. text .. ": not a loopback address; the exporter serves " ..
                "only 127.0.0.0/8 or [::1] (metrics describe this host's connections)"
  end
  return { host = host, port = port, family = family }
end

local function parse_args(args)
  local opts = { interval = DEFAULT_INTERVAL }
  local i = 1
  while i <= #args do
    local a, v = args[i], args[i + 1]
    if a == "-h" or a == "--help" then
      return nil
    elseif v == nil and (a == "--listen" or a == "--textfile" or a == "--interval" or
                         a == "--netns" or a == "--bufsize") then
      return nil, a .. " needs a value"
    elseif a == "--listen" then
      local listen, err = parse_listen(v)
      if not listen then return nil, err end
      opts.listen = listen
    elseif a == "--textfile" and v ~= "" then
      opts.textfile = v
    elseif a == "--interval" and tonumber(v) and tonumber(v) > 0 and tonumber(v) < math.huge then
      opts.interval, opts.interval_given = tonumber(v), true
    elseif a == "--netns" and v ~= "" then
      opts.netns = v
    elseif a == "--bufsize" and math.tointeger(tonumber(v)) and tonumber(v) > 0 and
           tonumber(v) <= MAX_BUFSIZE then
      opts.bufsize = math.tointeger(tonumber(v))
    else
      return nil, "bad argument '" .. a .. "'" .. (v and a:sub(1, 2) == "--" and
                  (" '" .. v .. "'") or "")
    end
    i = i + 2
  end
  if opts.interval_given and not opts.textfile then
    return nil, "--interval is for --textfile"
  end
  if not opts.listen and not opts.textfile then
    opts.listen = assert(parse_listen(DEFAULT_LISTEN))
  end
  return opts
end

-- ---------------------------------------------------------------------------
-- The exposition format
-- ---------------------------------------------------------------------------

local function escape_label(value)
  return (tostring(value):gsub("[\\\"\n]", { ["\\"] = "\\\\", ["\""] = "\\\"", ["\n"] = "\\n" }))
end

local function escape_help(text)
  return (text:gsub("[\\\n]", { ["\\"] = "\\\\", ["\n"] = "\\n" }))
end

-- '{a="x",b="y"}' from the list { "a", "x", "b", "y" }
local function label_set(pairs_list)
  if #pairs_list == 0 then return "" end
  local parts = {}
  for i = 1, #pairs_list, 2 do
    parts[#parts + 1] = pairs_list[i] .. '="' .. escape_label(pairs_list[i + 1]) .. '"'
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

local function format_value(value)
  if math.type(value) == "integer" then return tostring(value) end
  if value ~= value then return "NaN" end
  if value == math.huge then return "+Inf" end
  if value == -math.huge then return "-Inf" end
  return string.format("%.9g", value)
end

-- Appends one metric family: HELP, TYPE and its samples { labels, value }.
local function add_family(out, name, kind, help, samples)
  out[#out + 1] = "# HELP " .. name .. " " .. escape_help(help)
  out[#out + 1] = "# TYPE " .. name .. " " .. kind
  for _, sample in ipairs(samples) do
    out[#out + 1] = name .. label_set(sample[1]) .. " " .. format_value(sample[2])
  end
end

-- ---------------------------------------------------------------------------
-- Collecting
-- ---------------------------------------------------------------------------

-- The dump, as counts by proto, state and zone; retried when the kernel
-- says the table changed under it.
local function count_flows(h)
  local last_err
  for _ = 1, DUMP_TRIES do
    local counts = {}
    local ok, err = pcall(function()
      for f in h:dump() do
        local key = tostring(f.proto) .. "\0" .. (f.state or "") .. "\0" .. tostring(f.zone or 0)
        counts[key] = (counts[key] or 0) + 1
      end
    end)
    if ok then return counts end
    last_err = err
    if not (type(err) == "userdata" or type(err) == "table") or err.errno ~= 4 then break end
  end
  error(last_err, 0)
end

local function flow_samples(counts)
  local keys = {}
  for key in pairs(counts) do keys[#keys + 1] = key end
  table.sort(keys)
  local samples = {}
  for i, key in ipairs(keys) do
    local proto, state, zone = key:match("^(.-)%z(.-)%z(.*)$")
    samples[i] = { { "proto", proto, "state", state, "zone", zone }, counts[key] }
  end
  return samples
end

-- The per-CPU counters as families conntrack_stat_<name>_total{cpu}.
local function add_stats(out, stats)
  local by_name = {}
  for _, cpu in ipairs(stats) do
    for name, value in pairs(cpu) do
      if name ~= "cpu" then
        by_name[name] = by_name[name] or {}
        table.insert(by_name[name], { { "cpu", cpu.cpu }, value, cpu = cpu.cpu })
      end
    end
  end
  local names = {}
  for name in pairs(by_name) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local samples = by_name[name]
    table.sort(samples, function(a, b) return a.cpu < b.cpu end)
    local help = STAT_HELP[name] or ("Kernel per-CPU counter " .. name:gsub("^unknown", "") ..
                                     ", newer than ct-lua")
    add_family(out, "conntrack_stat_" .. name .. "_total", "counter",
               help .. ", per CPU (conntrack -S).", samples)
  end
end

-- Runs collector fn(h); returns its result, or nil after reporting the error
-- (once per message: a scrape interval must not flood the log).
local function run_collector(x, name, fn)
  local ok, result = pcall(fn, x.handle)
  if ok and result then
    x.failing[name] = nil
    return result
  end
  local message = ok and "no result" or tostring(result)
  if x.failing[name] ~= message then
    say("collecting ", name, ": ", message)
    x.failing[name] = message
  end
  return nil
end

-- Takes up to `batches` batches of the events queued now (one per turn of the
-- loop, so that clients and signals are never starved; all of them before a
-- scrape); false when the subscription failed.
local function take_events(x, batches)
  for _ = 1, batches do
    local batch, err = x.ev:recv()
    if not batch then
      say("events: ", tostring(err))
      x.status = 1
      return false
    end
    for _, event in ipairs(batch) do
      if event.kind == "overrun" then
        x.overruns = x.overruns + 1
        x.lost = x.lost + (event.lost or 0)
      else
        x.events[event.kind] = (x.events[event.kind] or 0) + 1
      end
    end
    if #batch == 0 then break end
  end
  return true
end

-- The whole exposition text of one scrape.
local function render(x)
  take_events(x, DRAIN_BATCHES)
  local started = conntrack.monotonic()
  local out = {}
  local flows = run_collector(x, "flows", count_flows)
  local count = run_collector(x, "entries", function(h)
    local entries, max = h:count()
    return entries and { entries, max }
  end)
  local stats = run_collector(x, "stats", function(h) return (h:stats()) end)

  add_family(out, "conntrack_flows", "gauge",
             "Connection-tracking entries by protocol, protocol state and zone (from a dump).",
             flows and flow_samples(flows) or {})
  add_family(out, "conntrack_entries", "gauge",
             "Entries in the connection-tracking table (the kernel's counter).",
             count and { { {}, count[1] } } or {})
  add_family(out, "conntrack_entries_max", "gauge",
             "The table's maximum number of entries (net.netfilter.nf_conntrack_max).",
             count and { { {}, count[2] } } or {})
  if stats then add_stats(out, stats) end

  local kinds = {}
  for i, kind in ipairs(EVENT_KINDS) do kinds[i] = { { "kind", kind }, x.events[kind] or 0 } end
  add_family(out, "conntrack_events_total", "counter",
             "Table events received by the exporter's subscription, by kind.", kinds)
  add_family(out, "conntrack_event_overruns_total", "counter",
             "Times the subscription's receive buffer overflowed (the buffer then grows).",
             { { {}, x.overruns } })
  add_family(out, "conntrack_events_lost_total", "counter",
             "Events the kernel dropped because the subscription's buffer was full.",
             { { {}, x.lost } })
  add_family(out, "conntrack_exporter_collector_success", "gauge",
             "Whether a collector succeeded (1) or failed (0) in this scrape.", {
               { { "collector", "entries" }, count and 1 or 0 },
               { { "collector", "flows" }, flows and 1 or 0 },
               { { "collector", "stats" }, stats and 1 or 0 },
             })
  add_family(out, "conntrack_exporter_scrape_duration_seconds", "gauge",
             "Seconds this scrape took to read the table, its counters and statistics.",
             { { {}, conntrack.monotonic() - started } })
  out[#out + 1] = ""
  return table.concat(out, "\n")
end

-- ---------------------------------------------------------------------------
-- The textfile
-- ---------------------------------------------------------------------------

-- A new file beside the textfile, renamed over it: readers never see half a
-- file, and a symlink planted in the directory is never written through.
local function write_textfile(x)
  return conntrack.replace_file(x.textfile, render(x))
end

-- Writes the textfile when it is due; a failure is reported once per message.
local function textfile_if_due(x, now)
  if now < x.next_write then return end
  local ok, err = write_textfile(x)
  if not ok and x.write_error ~= err then say(err) end
  x.write_error = not ok and err or nil
  x.next_write = x.next_write + x.interval
  if x.next_write <= now then x.next_write = now + x.interval end
end

-- ---------------------------------------------------------------------------
-- HTTP: a listener and clients, pollable objects for conntrack.poll
-- ---------------------------------------------------------------------------

local REASONS = { [200] = "OK", [400] = "Bad Request", [404] = "Not Found",
                  [405] = "Method Not Allowed", [431] = "Request Header Fields Too Large" }

local function response(status, body, content_type, head_only, extra)
  local lines = {
    string.format("HTTP/1.1 %d %s", status, REASONS[status]),
    "Content-Type: " .. (content_type or "text/plain; charset=utf-8"),
    "Content-Length: " .. #body,
    "Connection: close",
  }
  if extra then lines[#lines + 1] = extra end
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. (head_only and "" or body)
end

-- The answer to a request whose head (request line and headers) is complete.
local function answer(x, head)
  local method, target, version = head:match("^(%u+) (%S+) HTTP/(%d%.%d)\r?\n")
  if not method or version:sub(1, 1) ~= "1" then
    return response(400, "bad request\n")
  end
  local path = target:match("^[^?#]*")
  if path ~= "/metrics" then
    return response(404, "not found; the metrics are at /metrics\n", nil, method == "HEAD")
  end
  if method ~= "GET" and method ~= "HEAD" then
    return response(405, "only GET and HEAD\n", nil, false, "Allow: GET, HEAD")
  end
  return response(200, render(x), CONTENT_TYPE, method == "HEAD")
end

local function close_client(x, client)
  client.sock:close()
  client.closed = true
  for i, c in ipairs(x.clients) do
    if c == client then table.remove(x.clients, i) break end
  end
end

-- Reads what the client sent; once its head is complete, the answer is made
-- and the client switches to writing. A client may shut down its sending
-- side after the request (socat does): it still gets the answer.
local function client_read(x, client)
  local err
  repeat
    local data, partial
    data, err, partial = client.sock:receive(4096)
    data = data or partial
    if data and data ~= "" then client.request = client.request .. data end
  until err or #client.request > MAX_REQUEST
  local head = client.request:match("^(.-\r?\n)\r?\n")
  if head then
    client.reply, client.sent, client.writing = answer(x, head), 0, true
  elseif #client.request > MAX_REQUEST then
    client.reply, client.sent, client.writing = response(431, "request too large\n"), 0, true
  elseif err ~= "timeout" then
    close_client(x, client)
  end
end

local function client_write(x, client)
  local last, err, partial = client.sock:send(client.reply, client.sent + 1)
  client.sent = last or partial or client.sent
  if client.sent >= #client.reply or (err and err ~= "timeout") then close_client(x, client) end
end

local function client_ready(x, client, now)
  if client.writing then client_write(x, client) else client_read(x, client) end
  if now >= client.deadline and not client.closed then close_client(x, client) end
end

local function new_client(sock, now)
  sock:settimeout(0)
  local client = { sock = sock, fd = math.tointeger(sock:getfd()), request = "",
                   deadline = now + CLIENT_TIMEOUT }
  function client.pollfd(self) return self.fd end
  function client.events(self) return self.writing and "w" or "r" end
  function client.timeout(self) return math.max(0, self.deadline - conntrack.monotonic()) end
  return client
end

local function accept_clients(x, now)
  while #x.clients < MAX_CLIENTS do
    local sock = x.server.sock:accept()
    if not sock then return end
    x.clients[#x.clients + 1] = new_client(sock, now)
  end
end

-- The listening socket, or nil and the error.
local function listen(where)
  local ok, socket = pcall(require, "socket")
  if not ok then
    return nil, "serving HTTP needs LuaSocket (Debian package lua-socket); " ..
                "--textfile works without it"
  end
  local sock, err = socket[where.family]()
  if not sock then return nil, err end
  sock:setoption("reuseaddr", true)
  local bound, bind_err = sock:bind(where.host, where.port)
  if bound then bound, bind_err = sock:listen(64) end
  if not bound then
    sock:close()
    return nil, string.format("cannot listen on %s port %d: %s", where.host, where.port, bind_err)
  end
  sock:settimeout(0)
  local server = { sock = sock, fd = math.tointeger(sock:getfd()) }
  function server.pollfd(self) return self.fd end
  function server.events() return "r" end
  function server.timeout() return nil end
  return server
end

-- ---------------------------------------------------------------------------
-- The loop
-- ---------------------------------------------------------------------------

local function handle_signals(x)
  for _, name in ipairs(x.signals:recv()) do
    if name == "INT" or name == "TERM" then x.status = 0 end
  end
end

local function wait_and_handle(x)
  local objects = { x.signals, x.ev }
  if x.server then
    if #x.clients < MAX_CLIENTS then objects[#objects + 1] = x.server end
    table.move(x.clients, 1, #x.clients, #objects + 1, objects)
  end
  local wait = x.textfile and math.max(0, x.next_write - conntrack.monotonic()) or nil
  local ready, err = conntrack.poll(objects, wait)
  if not ready then
    say(tostring(err))
    x.status = 1
    return
  end
  local now = conntrack.monotonic()
  for _, obj in ipairs(ready) do
    if x.status then return end
    if obj == x.signals then
      handle_signals(x)
    elseif obj == x.ev then
      take_events(x, 1)
    elseif obj == x.server then
      accept_clients(x, now)
    else
      client_ready(x, obj, now)
    end
  end
end

local function run(x)
  while not x.status do
    if x.textfile then textfile_if_due(x, conntrack.monotonic()) end
    wait_and_handle(x)
  end
  return x.status
end

-- ---------------------------------------------------------------------------
-- Setting up
-- ---------------------------------------------------------------------------

-- Opens everything into x; returns true, or nil and the error (what was
-- opened is in x, for stop).
local function start(x, opts)
  local err
  x.signals, err = conntrack.signals{ "INT", "TERM" }
  if not x.signals then return nil, err end
  x.handle, err = conntrack.open{ netns = opts.netns }
  if not x.handle then return nil, err end
  x.ev, err = x.handle:listen{ events = EVENT_KINDS, bufsize = opts.bufsize,
                               bufsize_max = opts.bufsize and math.max(opts.bufsize, 512 << 20) }
  if not x.ev then return nil, err end
  if opts.listen then
    x.server, err = listen(opts.listen)
    if not x.server then return nil, err end
    local host, port = x.server.sock:getsockname()
    say(string.format("serving http://%s:%d/metrics",
                      host:find(":", 1, true) and ("[" .. host .. "]") or host, port))
  end
  if x.textfile then
    x.next_write = conntrack.monotonic()
    local ok, write_err = write_textfile(x)
    if not ok then return nil, write_err end
    x.next_write = x.next_write + x.interval
    say("writing ", x.textfile, string.format(" every %g s", x.interval))
  end
  return true
end

local function stop(x)
  for _, client in ipairs(x.clients) do client.sock:close() end
  if x.server then x.server.sock:close() end
  if x.signals then x.signals:close() end
  if x.ev then x.ev:close() end
  if x.handle then x.handle:close() end
end

local function main(args)
  local opts, usage_err = parse_args(args)
  if not opts then
    if usage_err then
      io.stderr:write(PROGRAM, ": ", usage_err, "\n", USAGE_LINE)
      return 2
    end
    io.stdout:write(USAGE)
    return 0
  end
  local x = { events = {}, overruns = 0, lost = 0, failing = {}, clients = {},
              textfile = opts.textfile, interval = opts.interval }
  local ok, err = start(x, opts)
  local status = 1
  if ok then
    status = run(x)
  else
    say(tostring(err))
  end
  stop(x)
  return status
end

os.exit(main(arg), true)
