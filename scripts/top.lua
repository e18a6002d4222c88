--- ct-lua top [options]: a live view of the connection-tracking table, like
-- iptstate: one line per flow, sorted by bytes, packets or age, refreshed
-- every interval, with a filter and the deletion of the selected flow.
--
-- Keys: b, p, a sort by bytes, packets (both directions) or age (largest or
-- oldest first); r reverses the order; / edits the filter (Enter applies it,
-- Esc cancels, Backspace and Ctrl-U erase); up/down or j/k move the selection,
-- PgUp/PgDn by a page, g/G to the first/last flow; d deletes the selected
-- flow; Ctrl-L redraws; q or Ctrl-C quits.
--
-- A filter is words `key=value` in the language of h:dump, e.g.
-- `proto=tcp dport=22 src=10.0.0.0/8 status=ASSURED`; a bad one is reported
-- on the status line and the previous filter stays.
--
-- The terminal is put in raw mode with stty and restored on every way out
-- (q, SIGINT, SIGTERM, SIGHUP, an error). Keys and signals (SIGWINCH for the
-- size) are read in one conntrack.poll loop. A table that takes longer than
-- a quarter of the interval to read is read less often. With --once, one
-- screen goes to standard output without a terminal: the header and every
-- flow, with columns as wide as their contents.
local conntrack = require "conntrack"

local PROGRAM = "ct-lua top"
local USAGE = [[
usage: ct-lua top [--filter EXPR] [--sort bytes|packets|age] [--interval S]
                  [--netns NAME|PATH] [--once]
  --filter EXPR  show only matching flows: key=value words, e.g. 'proto=tcp dport=22'
  --sort KEY     bytes (default), packets or age
  --interval S   seconds between two refreshes (default 1)
  --netns NS     the table of another network namespace (a name or a path)
  --once         print one screen to standard output and exit
keys: b/p/a sort, r reverse, / filter, up/down j/k select, d delete, q quit
]]

local DEFAULT_SIZE = { rows = 24, cols = 80 }
local MIN_INTERVAL = 0.05
local ESCAPE_WAIT = 0.05   -- seconds to wait for the rest of an escape sequence
local SLOW_READ = 4        -- a refresh every interval, or 4 times as long as a read takes
local MIN_ADDRESS = 12     -- the narrowest an address column is squeezed to
local HELP = "b/p/a sort  r reverse  / filter  up/down j/k select  d delete  q quit"

local SORTS = {
  bytes = { field = "bytes", forward = "largest first", backward = "smallest first" },
  packets = { field = "packets", forward = "most first", backward = "fewest first" },
  age = { field = "age_key", forward = "oldest first", backward = "newest first" },
}

-- ---------------------------------------------------------------------------
-- Arguments and filters
-- ---------------------------------------------------------------------------

--- Parses the words of a filter, `key=value ...`, into a filter table. The
-- values stay strings: the library converts and checks them.
local function parse_filter(text)
  local filter = {}
  for word in text:gmatch("%S+") do
    local key, value = word:match("^([%w_]+)=(.+)$")
    if not key then
      return nil, string.format("expected key=value, got '%s'", word)
    end
    if filter[key] ~= nil then
      return nil, string.format("'%s' given twice", key)
    end
    filter[key] = value
  end
  return filter
end

local function parse_args(args)
  local opts = { filter_text = "", sort = "bytes", interval = 1 }
  local i = 1
  while i <= #args do
    local a = args[i]
    local name, inline = a:match("^(%-%-[%w-]+)=(.*)$")
    local v
    if name then
      a, v = name, inline
    else
      v = args[i + 1]
    end
    local step = name and 1 or 2
    if a == "-h" or a == "--help" then
      return nil
    elseif a == "--once" and not name then
      opts.once, step = true, 1
    elseif a == "--filter" and v then
      opts.filter_text = v
    elseif a == "--sort" and v and SORTS[v] then
      opts.sort = v
    elseif a == "--interval" and v and tonumber(v) and tonumber(v) >= MIN_INTERVAL then
      opts.interval = tonumber(v)
    elseif a == "--netns" and v and v ~= "" then
      opts.netns = v
    else
      return nil, "bad argument '" .. args[i] .. "'"
    end
    i = i + step
  end
  local filter, err = parse_filter(opts.filter_text)
  if not filter then return nil, "bad filter: " .. err end
  opts.filter = filter
  return opts
end

--- The message of an error raised by the library, without the position of our
-- call and, for a bad argument, only what is wrong with it.
local function library_message(err)
  local message = tostring(err)
  message = message:gsub("^[^:\n]+:%d+: ", "", 1)
  return message:match("^bad argument #%d+ to '[%w_]+' %((.*)%)$") or message
end

-- ---------------------------------------------------------------------------
-- Reading the table
-- ---------------------------------------------------------------------------

local function sum(a, b)
  if a == nil and b == nil then return nil end
  return (a or 0) + (b or 0)
end

local function endpoint(addr, port)
  if addr and addr:find(":", 1, true) then addr = "[" .. addr .. "]" end
  if port then return (addr or "?") .. ":" .. port end
  return addr or "?"
end

local function state_of(f)
  if f.state then return f.state end
  if f.icmp_type then return "type=" .. f.icmp_type end
  return "-"
end

--- What the view keeps of a flow: the flow itself (for h:delete and the
-- texts of its line, made only for the lines shown), its key (f:key(), which
-- follows the entry from one refresh to the next) and its sort keys. start
-- is in seconds since the epoch: the kernel's timestamp, or else when this
-- view first saw the flow (seen_at).
local function row_of(f, key, seen_at)
  local start_ns = f.start or math.floor(seen_at * 1e9)
  local packets, bytes = sum(f.packets, f.reply_packets), sum(f.bytes, f.reply_bytes)
  return {
    flow = f,
    key = key,
    estimated = f.start == nil,
    start = start_ns / 1e9,
    counted = packets ~= nil,
    packets = packets or 0,
    bytes = bytes or 0,
    age_key = -start_ns,   -- exact: a kernel timestamp is an integer of nanoseconds
  }
end

--- A clock in seconds since the epoch that is finer than os.time (which it
-- follows to within a second) and never jumps.
local function epoch_clock()
  local epoch, mono = os.time(), conntrack.monotonic()
  return function() return epoch + (conntrack.monotonic() - mono) end
end

--- Reads the flows that match the filter; raises the library's error.
local function snapshot(v, filter)
  local rows, seen, now = {}, {}, v.clock()
  for f in v.h:dump(filter) do
    local key = f:key()
    seen[key] = v.seen[key] or now
    rows[#rows + 1] = row_of(f, key, seen[key])
  end
  local total = v.h:count()
  return rows, total or #rows, seen, now
end

-- ---------------------------------------------------------------------------
-- The view: rows, order, selection
-- ---------------------------------------------------------------------------

local function comparator(sort, reverse)
  local field = SORTS[sort].field
  return function(a, b)
    local x, y = a[field], b[field]
    if x == y then x, y = a.age_key, b.age_key end
    if x == y then x, y = a.key, b.key end
    if reverse then return x < y end
    return x > y
  end
end

local function selected_row(v)
  return v.rows[v.selected]
end

--- Sorts the rows and keeps the selection on the flow of the row keep when
-- it is still there (else at the same place).
local function reorder(v, keep)
  table.sort(v.rows, comparator(v.sort, v.reverse))
  if keep then
    for i, row in ipairs(v.rows) do
      if row.key == keep.key then v.selected = i break end
    end
  end
  v.selected = math.max(1, math.min(v.selected, #v.rows))
  v.dirty = true
end

local function install(v, rows, total, seen, now)
  local keep = selected_row(v)
  v.rows, v.total, v.seen, v.now = rows, total, seen, now
  reorder(v, keep)
end

--- Reads the table again; a failure is shown on the status line and the
-- rows read before stay.
local function refresh(v)
  local ok, rows, total, seen, now = pcall(snapshot, v, v.filter)
  if ok then
    install(v, rows, total, seen, now)
  else
    v.message = "refresh failed: " .. library_message(rows)
    v.dirty = true
  end
end

local function new_view(h, opts)
  return {
    h = h, netns = opts.netns, interval = opts.interval, sort = opts.sort,
    reverse = false, filter = opts.filter, filter_text = opts.filter_text,
    rows = {}, total = 0, seen = {}, now = 0, selected = 1, top = 1,
    clock = epoch_clock(), size = DEFAULT_SIZE, dirty = true,
  }
end

-- ---------------------------------------------------------------------------
-- Drawing
-- ---------------------------------------------------------------------------

local COLUMNS = {
  { title = "PROTO", key = "proto" },
  { title = "SOURCE", key = "src", address = true },
  { title = "DESTINATION", key = "dst", address = true },
  { title = "STATE", key = "state" },
  { title = "AGE", key = "age", right = true },
  { title = "PACKETS", key = "packets_text", right = true },
  { title = "BYTES", key = "bytes_text", right = true },
  { title = "TIMEOUT", key = "timeout_text", right = true },
}

local function format_age(seconds)
  seconds = math.max(0, math.floor(seconds))
  if seconds < 60 then return seconds .. "s" end
  if seconds < 3600 then return string.format("%dm%02ds", seconds // 60, seconds % 60) end
  if seconds < 86400 then
    return string.format("%dh%02dm", seconds // 3600, seconds % 3600 // 60)
  end
  return string.format("%dd%02dh", seconds // 86400, seconds % 86400 // 3600)
end

--- The texts of a row's cells. Counters are "-" without nf_conntrack_acct;
-- an age counted from when the view first saw the flow (no kernel timestamp,
-- nf_conntrack_timestamp) is a lower bound, marked with '+'.
local function cells_of(row, now)
  local f = row.flow
  return {
    proto = tostring(f.proto),
    src = endpoint(f.src, f.sport),
    dst = endpoint(f.dst, f.dport),
    state = state_of(f),
    age = format_age(now - row.start) .. (row.estimated and "+" or ""),
    packets_text = row.counted and tostring(row.packets) or "-",
    bytes_text = row.counted and tostring(row.bytes) or "-",
    timeout_text = f.timeout and tostring(f.timeout) or "-",
  }
end

--- Cuts the middle of text to fit width, keeping its end (the port).
local function squeeze(text, width)
  if #text <= width then return text end
  if width < 2 then return text:sub(1, width) end
  local tail = math.min(#text - 1, math.max(6, width // 2))
  tail = math.min(tail, width - 1)
  return text:sub(1, width - 1 - tail) .. "~" .. text:sub(-tail)
end

--- Column widths for these cells and the gap between columns; with
-- max_width, the gap shrinks to one space, then the address columns are
-- narrowed (not below MIN_ADDRESS) until the line fits.
local function column_widths(cells, max_width)
  local widths, total = { gap = 2 }, 0
  for i, col in ipairs(COLUMNS) do
    local w = #col.title
    for _, c in ipairs(cells) do w = math.max(w, #c[col.key]) end
    widths[i] = w
    total = total + w + (i > 1 and 2 or 0)
  end
  if max_width and total > max_width then
    widths.gap, total = 1, total - (#COLUMNS - 1)
  end
  while max_width and total > max_width do
    local widest
    for i, col in ipairs(COLUMNS) do
      if col.address and widths[i] > MIN_ADDRESS and
         (not widest or widths[i] > widths[widest]) then
        widest = i
      end
    end
    if not widest then break end
    widths[widest], total = widths[widest] - 1, total - 1
  end
  return widths
end

local function format_line(values, widths)
  local parts = {}
  for i, col in ipairs(COLUMNS) do
    local text = squeeze(values[col.key], widths[i])
    local pad = string.rep(" ", widths[i] - #text)
    parts[i] = col.right and (pad .. text) or (text .. pad)
  end
  return (table.concat(parts, string.rep(" ", widths.gap)):gsub("%s+$", ""))
end

local function titles()
  local t = {}
  for _, col in ipairs(COLUMNS) do t[col.key] = col.title end
  return t
end

local function header(v, first, last)
  local sort = SORTS[v.sort]
  local parts = {
    string.format("%s: %d/%d flows", PROGRAM, #v.rows, v.total),
    string.format("sort: %s (%s)", v.sort, v.reverse and sort.backward or sort.forward),
    "filter: " .. (v.filter_text:match("%S") and v.filter_text or "none"),
  }
  if v.netns then parts[#parts + 1] = "netns: " .. v.netns end
  if first and last and (first > 1 or last < #v.rows) then
    parts[#parts + 1] = string.format("rows %d-%d", first, last)
  end
  return table.concat(parts, "  ")
end

local function fit(text, width)
  if #text >= width then return text:sub(1, width) end
  return text .. string.rep(" ", width - #text)
end

--- Keeps the selection inside the visible rows.
local function scroll(v, lines)
  if v.selected < v.top then v.top = v.selected end
  if v.selected >= v.top + lines then v.top = v.selected - lines + 1 end
  v.top = math.max(1, math.min(v.top, #v.rows - lines + 1))
end

--- The whole screen as one string: header, titles, rows, status line; every
-- line padded to the width, so nothing of the previous screen is left.
local function screen(v)
  local rows_n, cols = v.size.rows, v.size.cols
  local lines_n = math.max(0, rows_n - 3)
  scroll(v, lines_n)
  local first, last = v.top, math.min(#v.rows, v.top + lines_n - 1)
  local cells = {}
  for i = first, last do cells[#cells + 1] = cells_of(v.rows[i], v.now) end
  local widths = column_widths(cells, cols)
  local out, y = {}, 0
  local function put(line, attr)
    y = y + 1
    out[#out + 1] = string.format("\27[%d;1H", y)
    out[#out + 1] = attr and (attr .. fit(line, cols) .. "\27[m") or fit(line, cols)
  end
  put(header(v, first, last))
  if rows_n >= 3 then put(format_line(titles(), widths), "\27[1m") end
  for i = 1, lines_n do
    local n = first + i - 1
    if n <= last then
      put(format_line(cells[i], widths), n == v.selected and "\27[7m" or nil)
    else
      put("")
    end
  end
  if v.editing then
    put("filter: " .. v.editing)
    out[#out + 1] = string.format("\27[%d;%dH\27[?25h", rows_n, math.min(cols, 9 + #v.editing))
  else
    put(v.message or HELP)
    out[#out + 1] = "\27[?25l"
  end
  return table.concat(out)
end

local function print_once(v)
  local cells = {}
  for i, row in ipairs(v.rows) do cells[i] = cells_of(row, v.now) end
  local widths = column_widths(cells)
  io.stdout:write(header(v), "\n", format_line(titles(), widths), "\n")
  for _, c in ipairs(cells) do io.stdout:write(format_line(c, widths), "\n") end
end

-- ---------------------------------------------------------------------------
-- Actions
-- ---------------------------------------------------------------------------

local function describe_row(row)
  local f = row.flow
  return string.format("%s %s -> %s", f.proto, endpoint(f.src, f.sport), endpoint(f.dst, f.dport))
end

local function set_filter(v, text)
  local filter, err = parse_filter(text)
  if filter then
    local ok, rows, total, seen, now = pcall(snapshot, v, filter)
    if ok then
      v.filter, v.filter_text = filter, text
      v.selected, v.top = 1, 1
      install(v, rows, total, seen, now)
      v.message = string.format("filter: %s (%d flow%s)", text:match("%S") and text or "none",
                                #rows, #rows == 1 and "" or "s")
      return
    end
    err = library_message(rows)
  end
  v.message = "bad filter: " .. err .. " (the filter stays '" .. v.filter_text .. "')"
end

local function delete_selected(v)
  local row = selected_row(v)
  if not row then
    v.message = "no flow selected"
    return
  end
  local ok, n, err = pcall(v.h.delete, v.h, row.flow)
  if ok and n and n > 0 then
    v.message = "deleted " .. describe_row(row)
  elseif ok then
    v.message = "not deleted (already gone?): " .. describe_row(row) ..
                (err and (": " .. err) or "")
  else
    v.message = "delete failed: " .. library_message(n)
  end
  refresh(v)
end

local function move(v, delta)
  v.selected = math.max(1, math.min(#v.rows, v.selected + delta))
end

local function page(v)
  return math.max(1, v.size.rows - 3)
end

--- Sorts by key (nil: the same key), in reverse or not; the selection
-- follows its flow.
local function sort_by(v, key, reverse)
  local keep = selected_row(v)
  v.sort, v.reverse = key or v.sort, reverse
  reorder(v, keep)
end

local NORMAL_KEYS = {
  b = function(v) sort_by(v, "bytes", false) end,
  p = function(v) sort_by(v, "packets", false) end,
  a = function(v) sort_by(v, "age", false) end,
  r = function(v) sort_by(v, nil, not v.reverse) end,
  ["/"] = function(v) v.editing = v.filter_text end,
  j = function(v) move(v, 1) end,
  k = function(v) move(v, -1) end,
  down = function(v) move(v, 1) end,
  up = function(v) move(v, -1) end,
  pagedown = function(v) move(v, page(v)) end,
  pageup = function(v) move(v, -page(v)) end,
  g = function(v) v.selected = 1 end,
  G = function(v) v.selected = math.max(1, #v.rows) end,
  home = function(v) v.selected = 1 end,
  ["end"] = function(v) v.selected = math.max(1, #v.rows) end,
  d = delete_selected,
  ["\12"] = function(v) v.clear = true end,          -- Ctrl-L
  q = function(v) v.quit = true end,
  ["\3"] = function(v) v.quit = true end,            -- Ctrl-C (raw mode: no SIGINT)
}

local function edit_key(v, key)
  if key == "\r" or key == "\n" then
    local text = v.editing
    v.editing = nil
    set_filter(v, text)
  elseif key == "escape" or key == "\3" or key == "\7" then
    v.editing = nil
    v.message = nil
  elseif key == "\127" or key == "\8" then
    v.editing = v.editing:sub(1, -2)
  elseif key == "\21" then                            -- Ctrl-U
    v.editing = ""
  elseif #key == 1 and key:match("[\32-\126]") then
    v.editing = v.editing .. key
  end
end

local function handle_key(v, key)
  v.dirty = true
  if v.editing then return edit_key(v, key) end
  local action = NORMAL_KEYS[key]
  if action then
    if key ~= "d" then v.message = nil end
    action(v)
  end
end

-- ---------------------------------------------------------------------------
-- The terminal
-- ---------------------------------------------------------------------------

--- Runs a command with our terminal as its standard input; its output, or nil.
local function capture(command)
  local p = io.popen(command .. " 2>/dev/null")
  if not p then return nil end
  local out = p:read("a")
  local ok = p:close()
  return ok and out or nil
end

local function terminal_size()
  local rows, cols = (capture("stty size") or ""):match("^(%d+)%s+(%d+)")
  rows, cols = tonumber(rows), tonumber(cols)
  if not rows or rows < 1 or cols < 1 then return DEFAULT_SIZE end
  return { rows = rows, cols = cols }
end

local function terminal_open()
  local saved = (capture("stty -g") or ""):match("^%s*([%x:]+)%s*$")
  if not saved then
    return nil, "standard input is not a terminal (use --once)"
  end
  if not os.execute("stty raw -echo 2>/dev/null") then
    return nil, "cannot put the terminal in raw mode"
  end
  io.stdin:setvbuf("no")        -- poll(fd 0) must see every byte not yet read
  io.stdout:setvbuf("full", 1 << 16)  -- a screen goes out in one write
  io.stdout:write("\27[?1049h\27[?25l\27[2J")
  io.stdout:flush()
  return { saved = saved }
end

local function terminal_close(term)
  if term.closed then return end
  term.closed = true
  io.stdout:write("\27[m\27[?25h\27[?1049l")
  io.stdout:flush()
  if not os.execute("stty " .. term.saved .. " 2>/dev/null") then
    os.execute("stty sane 2>/dev/null")
  end
end

-- Standard input as a pollable object for conntrack.poll.
local STDIN = {
  pollfd = function() return 0 end,
  events = function() return "r" end,
  timeout = function() return nil end,
}

local function readable(seconds)
  local ready = conntrack.poll({ STDIN }, seconds)
  return ready and #ready > 0
end

local ESCAPES = {
  ["[A"] = "up", ["[B"] = "down", ["OA"] = "up", ["OB"] = "down",
  ["[5~"] = "pageup", ["[6~"] = "pagedown", ["[H"] = "home", ["[F"] = "end",
  ["OH"] = "home", ["OF"] = "end", ["[1~"] = "home", ["[4~"] = "end",
}

--- Reads one key: a byte, or the name of an escape sequence ("up", ...,
-- "escape" for Esc alone, "unknown" for others). nil at the end of input.
local function read_key()
  local byte = io.stdin:read(1)
  if byte ~= "\27" then return byte end
  if not readable(ESCAPE_WAIT) then return "escape" end
  local seq = io.stdin:read(1)
  if seq ~= "[" and seq ~= "O" then return "unknown" end
  while readable(ESCAPE_WAIT) do
    local b = io.stdin:read(1)
    if not b then break end
    seq = seq .. b
    if b:match("[@-~]") or #seq > 8 then break end
  end
  return ESCAPES[seq] or "unknown"
end

local function handle_signals(v, signals)
  for _, name in ipairs(signals:recv()) do
    if name == "WINCH" then
      v.size, v.clear, v.dirty = terminal_size(), true, true
    else
      v.quit = true
    end
  end
end

local function run(v, signals)
  local next_refresh = conntrack.monotonic()
  while not v.quit do
    local now = conntrack.monotonic()
    if now >= next_refresh then
      refresh(v)
      -- a table so big that reading it takes a good part of the interval is
      -- read less often, so that keys are still answered at once
      next_refresh = now + math.max(v.interval, SLOW_READ * (conntrack.monotonic() - now))
    end
    if v.dirty or v.clear then
      io.stdout:write(v.clear and "\27[2J" or "", screen(v))
      io.stdout:flush()
      v.dirty, v.clear = false, false
    end
    local ready, err = conntrack.poll({ STDIN, signals },
                                      math.max(0, next_refresh - conntrack.monotonic()))
    if not ready then error(err, 0) end
    for _, obj in ipairs(ready) do
      if obj == signals then
        handle_signals(v, signals)
      elseif obj == STDIN and not v.quit then
        local key = read_key()
        if not key then v.quit = true else handle_key(v, key) end
      end
    end
  end
end

local function interactive(v)
  local signals, sig_err = conntrack.signals{ "INT", "TERM", "HUP", "WINCH" }
  if not signals then
    io.stderr:write(PROGRAM, ": ", sig_err, "\n")
    return 1
  end
  local term, term_err = terminal_open()
  if not term then
    signals:close()
    io.stderr:write(PROGRAM, ": ", term_err, "\n")
    return 1
  end
  v.size = terminal_size()
  local ok, err = xpcall(run, debug.traceback, v, signals)
  terminal_close(term)
  signals:close()
  if not ok then
    io.stderr:write(PROGRAM, ": ", tostring(err), "\n")
    return 1
  end
  return 0
end

local function main(args)
  local opts, err = parse_args(args)
  if not opts then
    io.stderr:write(err and (PROGRAM .. ": " .. err .. "\n") or "", USAGE)
    return err and 2 or 0
  end
  local h, open_err = conntrack.open{ netns = opts.netns }
  if not h then
    io.stderr:write(PROGRAM, ": ", open_err, "\n")
    return 1
  end
  local v = new_view(h, opts)
  -- The first read reports a bad --filter before the terminal changes.
  local ok, rows, total, seen, now = pcall(snapshot, v, v.filter)
  local status
  if not ok then
    local bad_filter = tostring(rows):find("bad argument", 1, true)
    io.stderr:write(PROGRAM, ": ", bad_filter and "bad filter: " or "",
                    library_message(rows), "\n")
    status = bad_filter and 2 or 1
  else
    install(v, rows, total, seen, now)
    if opts.once then
      print_once(v)
      status = 0
    else
      status = interactive(v)
    end
  end
  h:close()
  return status
end

os.exit(main(arg), true)
