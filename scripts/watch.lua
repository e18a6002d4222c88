--- ct-lua watch SCRIPT.lua [args...]: run a reaction script on the stream of
-- connection-tracking events, and reload it without losing events or state.
--
-- SCRIPT is called as chunk(state, ctx) and returns its handlers:
--
--   local state, ctx = ...      -- state: a table kept across reloads
--   state.seen = state.seen or 0
--   return {
--     filter = { proto = "tcp", dport = 22 },  -- the filter language of h:dump
--     on_new = function(flow, event) state.seen = state.seen + 1 end,
--     on_tick = function(now) ctx.log("seen", state.seen) end,
--   }
--
-- Handlers: on_new, on_update, on_destroy (flow, event); on_expect_new,
-- on_expect_update, on_expect_destroy (expectation, event); on_overrun(event);
-- on_tick(now) every `interval` seconds (default 1; `now` is seconds on a
-- monotonic clock, use os.time() for the date); on_reload() after a reload.
-- Settings: filter; events, the kinds to subscribe to (default: those with a
-- handler); interval; resync (after an overrun, re-read the table and deliver
-- what was missed, see h:listen); stop_on_error (default false: a failing
-- handler is reported once and the stream goes on).
-- ctx = { handle = <conntrack handle>, args = { ... }, log = function(...)
-- (a line on stderr), stop = function(status) (exit once the running handler
-- returns) }.
--
-- SIGHUP, or a change of the file's content (checked every second), reloads
-- the script with the same state; if the new version fails to load or run,
-- the error is reported and the running handlers stay. No event is lost
-- across a reload, but one that changes the filter or the kinds may deliver
-- an event twice (where that matters, count flows by flow:key(): an id alone
-- may repeat). A handler
-- error is reported once per handler, message and version of the script.
-- SIGINT and SIGTERM stop with status 0. Standard output is line-buffered, so
-- every line a handler prints reaches a pipe or file at once.
local conntrack = require "conntrack"

local PROGRAM = "ct-lua watch"
local USAGE = "usage: ct-lua watch SCRIPT.lua [args...]\n"
local CHECK_EVERY = 1      -- seconds between two reads of the script file
-- After a turn that received events, the next one waits this long for signals and ticks
-- only, so that a steady stream is taken in batches with fewer wakeups (ct-lua conntrack -E
-- does the same; a counting script under churn used about a third less CPU)
local SETTLE = 0.001
local MAX_REPORTS = 20     -- distinct error messages reported per handler

local KINDS = { "new", "update", "destroy", "expect_new", "expect_update", "expect_destroy" }
local HANDLER_OF_KIND = {}
for _, kind in ipairs(KINDS) do HANDLER_OF_KIND[kind] = "on_" .. kind end

-- What a script's table may hold, and the type each field must have.
local HANDLER_FIELDS = {
  on_overrun = "function", on_tick = "function", on_reload = "function",
  filter = "table or function", events = "table", interval = "number",
  resync = "boolean", stop_on_error = "boolean",
}
for _, handler in pairs(HANDLER_OF_KIND) do HANDLER_FIELDS[handler] = "function" end

local function say(...)
  io.stderr:write(PROGRAM, ": ", ...)
  io.stderr:write("\n")
end

-- ---------------------------------------------------------------------------
-- Loading the script
-- ---------------------------------------------------------------------------

local function read_script(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local source, read_err = f:read("a")
  f:close()
  if not source then return nil, path .. ": " .. tostring(read_err) end
  return source
end

-- Compiles the text that was read, as loadfile(path, "t") would compile the
-- file (text only, chunk name "@path", a BOM and a first line starting with '#'
-- skipped with line numbers kept). Loading the very text that was compared with
-- the previous version means a change is never missed between two reads.
local function compile_script(path, source)
  if source:sub(1, 3) == "\239\187\191" then source = source:sub(4) end
  if source:sub(1, 1) == "#" then source = source:gsub("^[^\n]*", "", 1) end
  return load(source, "@" .. path, "t")
end

-- The message of any error value, as the interpreter would print it.
local function error_message(err)
  if type(err) == "string" then return err end
  local mt = getmetatable(err)
  if type(mt) == "table" and mt.__tostring then return tostring(err) end
  return string.format("(error object is a %s value)", type(err))
end

-- The traceback below an xpcall: the frames of the runner itself are cut.
local function traceback_of(message)
  local trace = debug.traceback(message, 3)
  local cut = trace:find("\n%s*%[C%]: in function 'xpcall'")
  return cut and trace:sub(1, cut - 1) or trace
end

local function check_field(name, value)
  local want = HANDLER_FIELDS[name]
  if not want then
    return string.format("unknown field '%s' in the script's table", tostring(name))
  end
  if not want:find(type(value), 1, true) then
    return string.format("field '%s' must be a %s, got %s", name, want, type(value))
  end
end

-- The kinds to subscribe to: the script's list, or the kinds it handles.
local function kinds_of(handlers)
  local kinds = {}
  if handlers.events then
    for i, kind in ipairs(handlers.events) do
      if not HANDLER_OF_KIND[kind] then
        return nil, string.format("field 'events': [%d] is not one of %s", i,
                                  table.concat(KINDS, ", "))
      end
      kinds[#kinds + 1] = kind
    end
  else
    for _, kind in ipairs(KINDS) do
      if handlers[HANDLER_OF_KIND[kind]] then kinds[#kinds + 1] = kind end
    end
  end
  table.sort(kinds)
  return kinds
end

local function deep_copy(value)
  if type(value) ~= "table" then return value end
  local copy = {}
  for k, v in pairs(value) do copy[deep_copy(k)] = deep_copy(v) end
  return copy
end

-- A reaction is a script's checked table and what the runner derives from it.
-- The filter is copied, so a script that changes its table later cannot make
-- the comparison of two versions disagree with what was subscribed.
local function reaction_of(handlers)
  if type(handlers) ~= "table" then
    return nil, "the script must return a table of handlers, got " .. type(handlers)
  end
  for name, value in pairs(handlers) do
    local err = check_field(name, value)
    if err then return nil, err end
  end
  -- "not (x > 0)" and not "x <= 0": NaN is no positive number either
  if handlers.interval and not (handlers.interval > 0) then  -- luacheck: ignore 581
    return nil, "field 'interval' must be a positive number of seconds"
  end
  local kinds, err = kinds_of(handlers)
  if not kinds then return nil, err end
  local wanted = {}
  for _, kind in ipairs(kinds) do wanted[kind] = true end
  return {
    handlers = handlers,
    kinds = kinds,
    wanted = wanted,
    filter = deep_copy(handlers.filter),
    resync = handlers.resync == true,
    interval = handlers.interval or 1,
    stop_on_error = handlers.stop_on_error == true,
  }
end

-- Loads and runs one version of the script; returns its reaction, or nil and
-- the error (with a traceback when the chunk raised).
local function load_reaction(w, source)
  local chunk, err = compile_script(w.path, source)
  if not chunk then return nil, err end
  local ok, handlers = xpcall(chunk, function(e)
    local trace = traceback_of(error_message(e))  -- not a tail call: it would hide a level
    return trace
  end, w.state, w.ctx)
  if not ok then return nil, handlers end
  return reaction_of(handlers)
end

-- ---------------------------------------------------------------------------
-- Calling handlers
-- ---------------------------------------------------------------------------

local function stop(w, status)
  if not w.status then w.status = status end
end

-- Reports a handler's error: once per handler and message (up to MAX_REPORTS
-- messages per handler), or always and then stop when the script asked for it.
local function report_handler_error(w, name, message, trace)
  if w.reaction.stop_on_error then
    say(name, " failed, stopping (stop_on_error): ", trace)
    stop(w, 1)
    return
  end
  local seen = w.reported[name]
  if not seen then
    seen = { count = 0 }
    w.reported[name] = seen
  end
  if seen[message] or seen.count > MAX_REPORTS then return end
  seen.count = seen.count + 1
  if seen.count > MAX_REPORTS then
    say(name, " keeps failing with new messages; no more of them are reported")
    return
  end
  seen[message] = true
  say(name, " failed (reported once; the stream goes on): ", trace)
end

-- The message handler of every handler call: keeps the message, and a
-- traceback only when it will be reported.
local function capture_error(w)
  return function(err)
    local message = error_message(err)
    local seen = w.reported[w.running]
    local trace = message
    if w.reaction.stop_on_error or not (seen and seen[message]) then
      trace = traceback_of(message)
    end
    return { message = message, trace = trace }
  end
end

local function call_handler(w, name, ...)
  local fn = w.reaction.handlers[name]
  if not fn then return end
  w.running = name
  local ok, err = xpcall(fn, w.on_error, ...)
  if not ok then report_handler_error(w, name, err.message, err.trace) end
end

-- Overruns are told on stderr whether or not the script handles them: the
-- runner never loses events silently.
local function deliver_overrun(w, event)
  say(string.format("overrun: the kernel dropped %d events", event.lost or 0))
  call_handler(w, "on_overrun", event)
end

local function deliver_events(w, batch)
  for _, event in ipairs(batch) do
    if w.status then return end
    local kind = event.kind
    if kind == "overrun" then
      deliver_overrun(w, event)
    elseif w.reaction.wanted[kind] then
      call_handler(w, HANDLER_OF_KIND[kind], event.flow or event.expect, event)
    end
  end
end

-- Receives one batch of ev and delivers it; returns its size (0 when nothing
-- was queued), or nil when the receive failed. A filter predicate that raises
-- is a handler error of "filter": that event is dropped, the others stay.
local function receive_events(w, ev)
  w.running = "filter"
  local ok, batch, err = xpcall(ev.recv, w.on_error, ev)
  if not ok then
    report_handler_error(w, "filter", batch.message, batch.trace)
    return 1
  end
  if not batch then
    say(tostring(err))
    stop(w, 1)
    return nil
  end
  deliver_events(w, batch)
  return #batch
end

local function drain(w, ev)
  repeat
    local n = receive_events(w, ev)
  until not n or n == 0 or w.status
end

-- ---------------------------------------------------------------------------
-- Subscriptions
-- ---------------------------------------------------------------------------

local function same_value(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  for k, v in pairs(a) do
    if not same_value(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

-- Whether two reactions need the same subscription. A predicate in the filter
-- is a new function in each version, so such a filter always resubscribes.
local function same_subscription(a, b)
  return table.concat(a.kinds, ",") == table.concat(b.kinds, ",")
     and a.resync == b.resync and same_value(a.filter, b.filter)
end

-- An error raised by the module at our call names this file and line; the
-- script's author needs only the rest.
local function without_our_position(message)
  local here = debug.getinfo(1, "S").short_src:gsub("%p", "%%%0")
  return (message:gsub("^" .. here .. ":%d+: ", "", 1))
end

-- Opens the subscription of a reaction: the events object, false when the
-- reaction handles no kind, or nil and the error (a bad filter raises in
-- h:listen; that is a failed load here, not a crash).
local function subscribe(h, reaction)
  if #reaction.kinds == 0 then return false end
  local ok, ev, err = pcall(function()  -- a method call, so that errors name 'listen'
    return h:listen{ events = reaction.kinds, filter = reaction.filter, resync = reaction.resync }
  end)
  if not ok then return nil, without_our_position(error_message(ev)) end
  if not ev then return nil, err end
  return ev
end

-- Makes reaction the running one without losing an event. With the same
-- filter and kinds the subscription stays as it is. Otherwise the new one is
-- opened first; then the old one's queued events (everything it received
-- before it is closed) go to the new handlers. Events that arrive while both
-- are open sit in both queues, so across such a reload an event may be
-- delivered twice; none is delivered zero times.
local function switch_to(w, reaction)
  if same_subscription(w.reaction, reaction) then
    w.reaction = reaction
    return true
  end
  local ev, err = subscribe(w.handle, reaction)
  if ev == nil then return nil, err end
  local old = w.ev
  w.reaction, w.ev = reaction, ev or nil
  return true, old
end

-- ---------------------------------------------------------------------------
-- Reloading
-- ---------------------------------------------------------------------------

local function schedule_ticks(w, now)
  w.next_tick = now + w.reaction.interval
end

-- Loads a version of the script and makes it the running one: true and the
-- subscription it replaced (if any), or nil and why it was refused.
local function replace_handlers(w, source)
  local reaction, err = load_reaction(w, source)
  if not reaction then return nil, err end
  return switch_to(w, reaction)
end

local function reload(w, why)
  local source, err = read_script(w.path)
  if not source then
    say("cannot reload (", why, "), keeping the running handlers: ", err)
    return
  end
  w.source = source  -- a version that fails is not tried again until it changes
  local replaced, old = replace_handlers(w, source)
  if not replaced then
    say("reload (", why, ") failed, keeping the running handlers: ", old)
    return
  end
  w.reported = {}  -- new handler code: its errors are news
  schedule_ticks(w, w.clock())
  say("reloaded ", w.path, " (", why, ")")
  call_handler(w, "on_reload")
  if old then
    drain(w, old)
    old:close()
  end
end

local function check_script_file(w)
  local source = read_script(w.path)
  if source and source ~= w.source then reload(w, "file changed") end
end

local function handle_signals(w)
  for _, name in ipairs(w.signals:recv()) do
    if w.status then return end
    if name == "HUP" then
      reload(w, "SIGHUP")
    else
      say("stopping on SIG", name)
      stop(w, 0)
    end
  end
end

-- ---------------------------------------------------------------------------
-- The loop
-- ---------------------------------------------------------------------------

local function tick_if_due(w, now)
  if now < w.next_tick then return end
  call_handler(w, "on_tick", now)
  w.next_tick = w.next_tick + w.reaction.interval
  if w.next_tick <= now then schedule_ticks(w, now) end  -- fell behind: no burst of ticks
end

local function check_file_if_due(w, now)
  if now < w.next_check then return end
  w.next_check = now + CHECK_EVERY
  check_script_file(w)
end

-- Waits for events, signals or the next due time, and handles what is ready:
-- one batch of events per turn, so signals and ticks are never starved. After a
-- turn that received events, the next lets more gather (SETTLE).
local function wait_and_handle(w)
  local objects = { w.signals }
  local wait = math.max(0, math.min(w.next_tick, w.next_check) - w.clock())
  if w.ev and w.settle then
    wait = math.min(wait, SETTLE)
  elseif w.ev then
    objects[2] = w.ev
  end
  w.settle = false
  local ready, err = conntrack.poll(objects, wait)
  if not ready then
    say(tostring(err))
    stop(w, 1)
    return
  end
  local ev = w.ev
  for _, obj in ipairs(ready) do
    if obj == ev then w.settle = (receive_events(w, ev) or 0) > 0 end
  end
  for _, obj in ipairs(ready) do
    if obj == w.signals and not w.status then handle_signals(w) end
  end
end

local function run(w)
  while not w.status do
    local now = w.clock()
    check_file_if_due(w, now)
    if not w.status then tick_if_due(w, now) end
    if not w.status then wait_and_handle(w) end
  end
  return w.status
end

-- ---------------------------------------------------------------------------
-- Setting up
-- ---------------------------------------------------------------------------

local function make_ctx(w, h, args)
  return {
    handle = h,
    args = args,
    log = function(...)
      local parts = table.pack(...)
      for i = 1, parts.n do parts[i] = tostring(parts[i]) end
      io.stderr:write(table.concat(parts, "\t", 1, parts.n), "\n")
    end,
    stop = function(status)
      status = status == nil and 0 or status
      if math.type(status) ~= "integer" or status < 0 or status > 255 then
        error("ctx.stop: the status must be an integer from 0 to 255", 2)
      end
      stop(w, status)
    end,
  }
end

local function new_watch(path, h, signals, args)
  local w = {
    path = path,
    handle = h,
    signals = signals,
    state = {},
    reported = {},
    clock = conntrack.monotonic,
  }
  w.ctx = make_ctx(w, h, args)
  w.on_error = capture_error(w)
  return w
end

local function start(w, source)
  w.source = source
  local reaction, err = load_reaction(w, source)
  if not reaction then
    say(err)
    return false
  end
  if w.status then return false end  -- the script called ctx.stop while loading
  local ev, sub_err = subscribe(w.handle, reaction)
  if ev == nil then
    say(sub_err)
    return false
  end
  w.reaction, w.ev = reaction, ev or nil
  local now = w.clock()
  schedule_ticks(w, now)
  w.next_check = now + CHECK_EVERY
  say("watching ", w.path)
  return true
end

local function main(args)
  local path = args[1]
  if path == "-h" or path == "--help" then
    io.stderr:write(USAGE)
    return 0
  end
  if not path then
    io.stderr:write(PROGRAM, ": no script given\n", USAGE)
    return 2
  end
  local source, err = read_script(path)
  if not source then
    io.stderr:write(PROGRAM, ": cannot read ", err, "\n", USAGE)
    return 2
  end
  io.stdout:setvbuf("line")
  local h, open_err = conntrack.open()
  if not h then
    say(open_err)
    return 1
  end
  local signals, sig_err = conntrack.signals{ "HUP", "INT", "TERM" }
  if not signals then
    say(sig_err)
    h:close()
    return 1
  end
  local w = new_watch(path, h, signals, table.move(args, 2, #args, 1, {}))
  local status = start(w, source) and run(w) or w.status or 1
  if w.ev then w.ev:close() end
  signals:close()
  h:close()
  return status
end

os.exit(main(arg), true)
