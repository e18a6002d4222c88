-- ct-lua top: the live view driven under tmux (send-keys, capture-pane), and --once.
--
-- Each test fills this private namespace's table with five known flows: two UDP flows
-- and one TCP exchange of real traffic to a peer namespace (counters and timestamps on),
-- and two entries made by h:create. It then starts `ct-lua top` in a tmux session of
-- its own (a private socket), sends keys and reads the pane until the expected screen
-- appears (deadlines polled every 50 ms, never fixed sleeps), comparing with
-- conntrack -L on the same table. The tmux server is killed after each test.
local H = require "helpers"

local CT_LUA = "./ct-lua"
local WIDTH, HEIGHT = 120, 30

---------------------------------------------------------------------------------------
-- helpers


local eventually = H.eventually

local function same_list(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do
    if a[i] ~= b[i] then return false end
  end
  return true
end

local function reversed(list)
  local r = {}
  for i = #list, 1, -1 do r[#r + 1] = list[i] end
  return r
end

local function sorted_copy(list)
  local t = table.move(list, 1, #list, 1, {})
  table.sort(t)
  return t
end

--- A flow's key as the view shows it: "proto src:sport dst:dport".
local function key_of(proto, src, sport, dst, dport)
  local function ep(addr, port) return port and (addr .. ":" .. port) or addr end
  return string.format("%s %s %s", proto, ep(src, sport), ep(dst, dport))
end

--- conntrack -L ARGS as flows: { key, packets, bytes (both directions), state }.
local function oracle(args)
  local lines, status, err = H.conntrack("-L " .. (args or ""))
  assert(status == 0, "conntrack -L " .. (args or "") .. ": " .. err)
  local flows = {}
  for _, line in ipairs(lines) do
    local f = { line = line, packets = 0, bytes = 0 }
    f.proto = line:match("^(%S+)")
    f.state = line:match("^%S+%s+%d+%s+%d+%s+(%u[%u_]+)%s") or "-"
    f.key = key_of(f.proto, line:match("src=(%S+)"), line:match("sport=(%d+)"),
                   line:match("dst=(%S+)"), line:match("dport=(%d+)"))
    for n in line:gmatch("packets=(%d+)") do f.packets = f.packets + tonumber(n) end
    for n in line:gmatch("bytes=(%d+)") do f.bytes = f.bytes + tonumber(n) end
    flows[#flows + 1] = f
  end
  return flows
end

local function keys_of(flows)
  local keys = {}
  for i, f in ipairs(flows) do keys[i] = f.key end
  return keys
end

local function table_count()
  return tonumber(H.must(H.CONNTRACK .. " -C"):match("%d+"))
end

--- One screen of the view, parsed: header fields, the rows (with the selected one),
-- the status line (the last one) and the plain lines.
local function parse_screen(raw)
  local s = { raw = raw, lines = {}, rows = {}, keys = {} }
  for line in (raw .. "\n"):gmatch("([^\n]*)\n") do
    -- the selection is in reverse video: tmux writes \27[7m (perhaps after the reset
    -- that ends the line before) ahead of the row's text
    local attrs = line:match("^[\27%[%d;m]*")
    local selected = attrs:find("[%[;]7[;m]") ~= nil
    local text = line:gsub("\27%[[%d;]*m", "")
    s.lines[#s.lines + 1] = text
    local proto, src, dst, state, age, packets, bytes, timeout = text:match(
      "^(%l+)%s+(%S+)%s+(%S+)%s+(%S+)%s+(%S+)%s+(%S+)%s+(%S+)%s+(%S+)%s*$")
    if proto == "tcp" or proto == "udp" or proto == "icmp" then
      local row = { key = string.format("%s %s %s", proto, src, dst), state = state, age = age,
                    packets = tonumber(packets), bytes = tonumber(bytes),
                    timeout = tonumber(timeout) }
      s.rows[#s.rows + 1] = row
      s.keys[#s.keys + 1] = row.key
      if selected then s.selected = row.key end
    end
  end
  while #s.lines > 0 and s.lines[#s.lines] == "" do s.lines[#s.lines] = nil end
  local header = s.lines[1] or ""
  s.header, s.status = header, s.lines[#s.lines]
  s.shown, s.total = header:match("^ct%-lua top: (%d+)/(%d+) flows")
  s.shown, s.total = tonumber(s.shown), tonumber(s.total)
  s.sort, s.order = header:match("sort: (%l+) %(([%l ]+)%)")
  s.filter = header:match("filter: (.-)  ") or header:match("filter: (.*)$")
  s.range = header:match("rows (%d+%-%d+)")
  return s
end

---------------------------------------------------------------------------------------
-- tmux

local session  -- the tmux session of the running test, or nil

local function tmux(args)
  return H.must("tmux -f /dev/null -S " .. session.socket .. " " .. args)
end

--- Starts `ct-lua top ARGS` in a detached WIDTHxHEIGHT tmux session. When it exits,
-- the pane shows its status and `stty -a` of the same terminal.
local function start_top(args)
  local socket = os.tmpname()
  os.remove(socket)
  session = { socket = socket }
  local command = string.format("%s top %s; echo top-exit=$?; stty -a; exec sleep 60",
                                CT_LUA, args or "--interval 0.2")
  tmux(string.format("new-session -d -s ctl -x %d -y %d -c %s %s", WIDTH, HEIGHT,
                     H.quote(H.must("pwd"):match("[^\n]+")), H.quote(command)))
end

local function capture()
  return tmux("capture-pane -p -e -t ctl")
end

local function keys(...)
  local words = {}
  for i, k in ipairs({ ... }) do words[i] = H.quote(k) end
  tmux("send-keys -t ctl " .. table.concat(words, " "))
end

local function type_text(text)
  tmux("send-keys -t ctl -l " .. H.quote(text))
end

--- Waits until pred(screen) is true for a capture of the pane; returns that screen.
local function screen_where(what, pred, seconds)
  local last
  eventually(seconds or 5, what, function()
    last = parse_screen(capture())
    return pred(last)
  end, function()
    return "the pane:\n" .. table.concat(last and last.lines or {}, "\n")
  end)
  return last
end

--- The pid of ct-lua in the pane: the child of the pane's shell.
local function top_pid()
  local shell = tmux("display-message -p -t ctl '#{pane_pid}'"):match("%d+")
  return eventually(5, "ct-lua's pid", function()
    local f = io.open("/proc/" .. shell .. "/task/" .. shell .. "/children")
    local pid = f and f:read("a"):match("%d+")
    if f then f:close() end
    return pid
  end)
end

local function stop_session()
  if session then
    H.run("tmux -S " .. session.socket .. " kill-server")
    os.remove(session.socket)
    session = nil
  end
end

--- The pane after ct-lua exited: its exit status and whether stty -a shows the
-- terminal back in canonical mode with echo.
local function after_exit()
  local s = screen_where("ct-lua to exit", function(sc)
    return sc.raw:find("top%-exit=%d+") and sc.raw:find("%-flusho") -- stty's last line
  end)
  local text = table.concat(s.lines, "\n")
  return tonumber(text:match("top%-exit=(%d+)")), text
end

local function restored(text)
  return text:find("[^-]icanon") ~= nil and text:find("[^-]echo ") ~= nil and
         text:find("[^-]isig") ~= nil and text:find("[^-]opost") ~= nil
end

---------------------------------------------------------------------------------------
-- the flows

local PEER = "10.7.0.2"

--- count UDP datagrams of size bytes from port sport here to dport on the peer
-- (nobody listens there: the flow stays UNREPLIED).
local function send_udp(sport, dport, size, count)
  for _ = 1, count do
    H.must(string.format("head -c %d /dev/zero | socat -u - UDP-SENDTO:%s:%d,sourceport=%d," ..
                         "reuseaddr", size, PEER, dport, sport))
  end
end

--- One TCP request and answer to the peer on port, made only once the server listens
-- (a refused attempt would be a flow of its own).
local function tcp_exchange(peer, port)
  local server = peer:spawn(string.format(
    "socat -T5 TCP-LISTEN:%d,reuseaddr SYSTEM:'read line; echo pong'", port))
  eventually(5, "the server to listen", function()
    return peer:exec("ss -Hltn 'sport = :" .. port .. "'"):find("LISTEN")
  end)
  local answer = H.must(string.format("echo ping | socat -T5 - TCP:%s:%d", PEER, port))
  H.run("kill " .. server .. " 2>/dev/null")
  assert.are.equal("pong\n", answer)
  -- both FINs and the last ACK seen: the counters no longer change
  eventually(5, "the exchange to close", function()
    local flows = oracle("-p tcp --dport " .. port)
    return #flows == 1 and (flows[1].state == "TIME_WAIT" or flows[1].state == "CLOSE")
  end)
end

--- The five flows, made in this order (their ages): A one big UDP datagram, B five
-- small ones, C a TCP exchange, D and E created entries without traffic. Returns the
-- key of each letter, from conntrack -L, and the flows in the order they were made.
local function make_flows(h, peer)
  send_udp(4001, 5001, 1200, 1)
  send_udp(4002, 5002, 1, 5)
  tcp_exchange(peer, 7001)
  assert(h:create{ proto = "udp", src = "10.9.0.1", dst = "10.9.0.2", sport = 1111,
                   dport = 2222, timeout = 600 })
  assert(h:create{ proto = "tcp", src = "10.9.0.3", dst = "10.9.0.4", sport = 3333,
                   dport = 80, state = "ESTABLISHED", timeout = 600 })
  -- no entry times out while a test runs
  h:update({}, { timeout = 600 })
  local letters = {
    A = "udp 10.7.0.1:4001 10.7.0.2:5001", B = "udp 10.7.0.1:4002 10.7.0.2:5002",
    C = assert(oracle("-p tcp --dport 7001")[1]).key,
    D = "udp 10.9.0.1:1111 10.9.0.2:2222", E = "tcp 10.9.0.3:3333 10.9.0.4:80",
  }
  local flows = oracle()
  assert.are.same(sorted_copy({ letters.A, letters.B, letters.C, letters.D, letters.E }),
                  sorted_copy(keys_of(flows)))
  return letters, flows
end

--- The order the view must show: by the key (largest first), ties by age (oldest
-- first, the order made); reverse is the exact reverse.
local function expected_order(flows, letters, field, reverse)
  local made = {}
  for i, letter in ipairs({ "A", "B", "C", "D", "E" }) do made[letters[letter]] = i end
  local list = table.move(flows, 1, #flows, 1, {})
  table.sort(list, function(a, b)
    if field ~= "age" and a[field] ~= b[field] then return a[field] > b[field] end
    return made[a.key] < made[b.key]
  end)
  local keys = keys_of(list)
  return reverse and reversed(keys) or keys
end

---------------------------------------------------------------------------------------

describe("ct-lua top", function()
  local h, peer, letters, flows

  setup(function()
    peer = H.peer()
  end)

  teardown(function()
    peer:close()
  end)

  before_each(function()
    H.reset()
    H.track_traffic()
    h = H.open()
    letters, flows = make_flows(h, peer)
  end)

  after_each(function()
    stop_session()
    h:close()
  end)

  it("--once prints the header and every flow, with conntrack -L's counters", function()
    local out, status, err = H.run(CT_LUA .. " top --once")
    assert.are.equal(0, status, err)
    local s = parse_screen(out)
    assert.are.equal(5, s.shown)
    assert.are.equal(table_count(), s.total)
    assert.are.equal("bytes", s.sort)
    assert.are.equal("largest first", s.order)
    assert.are.equal("none", s.filter)
    assert.are.equal("PROTO", s.lines[2]:match("^%S+"))
    assert.are.same(expected_order(flows, letters, "bytes"), s.keys)
    local by_key = {}
    for _, f in ipairs(flows) do by_key[f.key] = f end
    for _, row in ipairs(s.rows) do
      assert.are.equal(by_key[row.key].packets, row.packets, row.key)
      assert.are.equal(by_key[row.key].bytes, row.bytes, row.key)
      assert.are.equal(by_key[row.key].state, row.state, row.key)
      assert.is_true(row.timeout > 500 and row.timeout <= 600, row.key)
      assert.is_truthy(row.age:match("^%d+s$"), row.age)   -- kernel timestamps: no '+'
    end
    -- the known traffic: one 1200-byte datagram, five of one byte (28 bytes of headers)
    assert.are.same({ 1, 1228 }, { by_key[letters.A].packets, by_key[letters.A].bytes })
    assert.are.same({ 5, 145 }, { by_key[letters.B].packets, by_key[letters.B].bytes })

    -- a filter and another key: the same flows as conntrack -L with that filter
    out, status, err = H.run(CT_LUA .. " top --once --sort packets --filter 'proto=udp src=10.7.0.0/24'")
    assert.are.equal(0, status, err)
    s = parse_screen(out)
    local udp = oracle("-p udp -s 10.7.0.0/24")
    assert.are.equal(#udp, s.shown)
    assert.are.equal("proto=udp src=10.7.0.0/24", s.filter)
    assert.are.same(expected_order(udp, letters, "packets"), s.keys)

    -- a bad filter is the library's error and a usage status
    out, status, err = H.run(CT_LUA .. " top --once --filter 'dprot=22'")
    assert.are.equal(2, status)
    assert.are.equal("", out)
    assert.are.equal("ct-lua top: bad filter: unknown field 'dprot'\n", err)
  end)

  it("sorts by bytes, packets and age with b, p, a, and reverses with r", function()
    start_top()
    local s = screen_where("the first screen", function(sc) return sc.shown == 5 and #sc.rows == 5 end)
    assert.are.equal(table_count(), s.total)
    for _, line in ipairs(s.lines) do assert.is_true(#line <= WIDTH) end
    assert.are.equal(HEIGHT, #tmux("capture-pane -p -t ctl"):gsub("[^\n]", ""))
    local steps = {
      { key = "p", sort = "packets", order = "most first", field = "packets" },
      { key = "a", sort = "age", order = "oldest first", field = "age" },
      { key = "r", sort = "age", order = "newest first", field = "age", reverse = true },
      { key = "b", sort = "bytes", order = "largest first", field = "bytes" },
      { key = "r", sort = "bytes", order = "smallest first", field = "bytes", reverse = true },
    }
    for _, step in ipairs(steps) do
      keys(step.key)
      local want = expected_order(flows, letters, step.field, step.reverse)
      screen_where("sort " .. step.sort .. " (" .. step.order .. ")", function(sc)
        return sc.sort == step.sort and sc.order == step.order and same_list(sc.keys, want)
      end)
    end
    -- the orders the traffic was made for: each key puts another flow first
    assert.are.same({ letters.A, letters.C, letters.B, letters.D, letters.E },
                    expected_order(flows, letters, "bytes"))
    assert.are.same({ letters.C, letters.B, letters.A, letters.D, letters.E },
                    expected_order(flows, letters, "packets"))
    keys("q")
    local status, text = after_exit()
    assert.are.equal(0, status, text)
  end)

  it("filters with / as conntrack -L does; a bad filter is reported and the view goes on", function()
    start_top()
    screen_where("the first screen", function(sc) return sc.shown == 5 end)

    keys("/")
    type_text("proto=udp dport=5002")
    screen_where("the filter being typed", function(sc)
      return sc.status == "filter: proto=udp dport=5002"
    end)
    keys("Enter")
    local want = oracle("-p udp --dport 5002")
    local s = screen_where("the filtered list", function(sc)
      return sc.filter == "proto=udp dport=5002" and same_list(sc.keys, keys_of(want))
    end)
    assert.are.same({ letters.B }, s.keys)
    assert.are.equal(1, s.shown)
    assert.are.equal(table_count(), s.total)

    -- another one, erased with Ctrl-U first: two flows, by bytes then age
    keys("/", "C-u")
    type_text("src=10.9.0.0/16")
    keys("Enter")
    want = oracle("-s 10.9.0.0/16")
    screen_where("the second filter", function(sc)
      return sc.filter == "src=10.9.0.0/16" and sc.shown == #want and
             same_list(sc.keys, expected_order(want, letters, "bytes"))
    end)
    assert.are.equal(2, #want)

    -- Esc cancels an edit
    keys("/", "C-u")
    type_text("proto=icmp")
    keys("Escape")
    screen_where("the edit cancelled", function(sc)
      return sc.status:find("^b/p/a sort") and sc.filter == "src=10.9.0.0/16"
    end)

    -- bad filters: the library's message on the status line, the filter stays
    keys("/", "C-u")
    type_text("proto=tcp dprot=22")
    keys("Enter")
    s = screen_where("the error", function(sc)
      return sc.status == "bad filter: unknown field 'dprot' (the filter stays 'src=10.9.0.0/16')"
    end)
    assert.are.equal("src=10.9.0.0/16", s.filter)
    keys("/", "C-u")
    type_text("dport=http")
    keys("Enter")
    screen_where("the second error", function(sc)
      return sc.status == "bad filter: field 'dport' expects an integer, got string " ..
                          "(the filter stays 'src=10.9.0.0/16')"
    end)
    keys("/", "C-u")
    type_text("tcp")
    keys("Enter")
    screen_where("the third error", function(sc)
      return sc.status == "bad filter: expected key=value, got 'tcp' (the filter stays 'src=10.9.0.0/16')"
    end)

    -- still refreshing: a new matching entry appears, and keys still work
    assert(h:create{ proto = "udp", src = "10.9.0.5", dst = "10.9.0.6", sport = 5555,
                     dport = 6666, timeout = 600 })
    screen_where("the new entry", function(sc)
      return sc.shown == 3 and sc.total == 6
    end)
    keys("p")
    screen_where("sorted by packets", function(sc) return sc.sort == "packets" end)

    -- an empty filter shows everything again
    keys("/", "C-u", "Enter")
    screen_where("no filter", function(sc) return sc.filter == "none" and sc.shown == 6 end)
  end)

  it("d deletes the selected flow and only it", function()
    start_top()
    -- by bytes: A C B D E; the selection starts on the first row
    screen_where("the first screen, A selected", function(sc)
      return same_list(sc.keys, expected_order(flows, letters, "bytes")) and
             sc.selected == letters.A
    end)
    keys("Down", "Down", "Down", "Up")
    screen_where("B selected", function(sc) return sc.selected == letters.B end)
    keys("j", "k")
    screen_where("B still selected", function(sc) return sc.selected == letters.B end)

    keys("d")
    local src, dst = letters.B:match("^udp (%S+) (%S+)$")
    local s = screen_where("the deletion", function(sc)
      return sc.status == "deleted udp " .. src .. " -> " .. dst and sc.shown == 4
    end)
    local rest = oracle()
    assert.are.same(sorted_copy({ letters.A, letters.C, letters.D, letters.E }),
                    sorted_copy(keys_of(rest)))
    assert.are.same(expected_order(rest, letters, "bytes"), s.keys)

    -- the selection stays in place: on D now (A C D E); G and d delete the last (E)
    assert.are.equal(letters.D, s.selected)
    keys("G")
    screen_where("E selected", function(sc) return sc.selected == letters.E end)
    keys("d")
    screen_where("the second deletion", function(sc) return sc.shown == 3 end)
    assert.are.same(sorted_copy({ letters.A, letters.C, letters.D }), sorted_copy(keys_of(oracle())))
  end)

  it("q, SIGTERM and SIGINT quit and restore the terminal; SIGWINCH resizes", function()
    start_top()
    screen_where("the first screen", function(sc) return sc.shown == 5 end)
    keys("q")
    local status, text = after_exit()
    assert.are.equal(0, status, text)
    assert.is_true(restored(text), text)
    stop_session()

    for _, signal in ipairs({ "TERM", "INT" }) do
      start_top()
      screen_where("the first screen", function(sc) return sc.shown == 5 end)
      H.must("kill -" .. signal .. " " .. top_pid())
      status, text = after_exit()
      assert.are.equal(0, status, text)
      assert.is_true(restored(text), text)
      stop_session()
    end

    -- more flows than lines: a smaller window shows fewer rows, and scrolls
    for i = 1, 20 do
      assert(h:create{ proto = "udp", src = "10.8.0.1", dst = "10.8.0.2", sport = 10000 + i,
                       dport = 53, timeout = 600 })
    end
    start_top()
    screen_where("all rows in 30 lines", function(sc) return sc.shown == 25 end)
    tmux("resize-window -t ctl -x 90 -y 15")
    local s = screen_where("12 rows in 15 lines", function(sc)
      return #sc.rows == 12 and sc.range == "1-12" and sc.status:find("^b/p/a sort")
    end)
    assert.are.equal(15, #s.lines)
    for _, line in ipairs(s.lines) do assert.is_true(#line <= 90, line) end
    keys("G")
    screen_where("the last rows, the last one selected", function(sc)
      return sc.range == "14-25" and #sc.keys == 12 and sc.selected == sc.keys[12]
    end)
    keys("PageUp")
    screen_where("a page up, the first row selected", function(sc)
      return sc.range == "13-24" and #sc.keys == 12 and sc.selected == sc.keys[1]
    end)
    keys("q")
    status, text = after_exit()
    assert.are.equal(0, status, text)
  end)
end)
