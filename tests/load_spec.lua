-- -R files of many lines, side by side with /usr/sbin/conntrack: ct-lua creates their
-- entries in pipelined batches, and must still end as conntrack does, which runs one line
-- at a time and stops at the first failure. Each case starts both from the same table and
-- compares the exit status, the messages and the table each leaves.
--
-- tests/run gives this file its own network namespace: the tables here are ours.

local H = require "helpers"
local random_lines = require "helpers.random_lines"
local conntrack = require "conntrack"

-- The table as sorted lines, normalised (timeouts count down between the runs).
local function table_now()
  local lines, status = H.conntrack("-L 2>/dev/null")
  assert.equal(0, status)
  return H.sorted(lines)
end

-- Runs `-R file` with both programs, each from the table the conntrack commands of setup
-- make; returns what each did: { status, stdout, stderr, table }.
local function both(lines, setup)
  local file = os.tmpname()
  H.write_file(file, table.concat(lines, "\n") .. "\n")
  local result = {}
  for _, who in ipairs({ "conntrack", "ct-lua" }) do
    H.run(H.CONNTRACK .. " -F")
    for _, args in ipairs(setup or {}) do H.must(H.CONNTRACK .. " " .. args .. " 2>/dev/null") end
    local out, status, err = H.run_words(who, { "-R", file })
    result[who] = { status = status, stdout = H.sorted(H.lines(out)), stderr = err,
                    table = table_now() }
  end
  os.remove(file)
  H.run(H.CONNTRACK .. " -F")
  return result.conntrack, result["ct-lua"]
end

-- -I (or -A) of udp entry i: 10.30.i/256.i%256 -> 10.31.0.1.
local function create_line(i, command)
  return string.format("%s -p udp -s 10.30.%d.%d -d 10.31.0.1 --sport 1000 --dport 53 -t 300",
                       command or "-I", i // 256, i % 256)
end

-- The same entry as conntrack -L -o save writes it: a line the library reads in C.
local function saved_line(i, command)
  return string.format("%s -t 300 -u UNSET -s 10.30.%d.%d -d 10.31.0.1 -r 10.31.0.1 " ..
                       "-q 10.30.%d.%d -p udp --sport 1000 --dport 53 --reply-port-src 53 " ..
                       "--reply-port-dst 1000", command or "-I", i // 256, i % 256, i // 256,
                       i % 256)
end
assert(conntrack.save_command(saved_line(1)), "saved_line is no save line")

local function creates(first, last, command, line)
  local lines = {}
  for i = first, last do lines[#lines + 1] = (line or create_line)(i, command) end
  return lines
end

local function same(theirs, ours)
  assert.same(theirs, ours)
end

describe("-R of many creates as conntrack -o save writes them", function()
  it("creates them all", function()
    local theirs, ours = both(creates(1, 700, "-I", saved_line))
    assert.equal(0, theirs.status)
    assert.equal(700, #theirs.table)
    same(theirs, ours)
  end)

  it("stops at an entry that exists, in the middle of a batch: none after it stays", function()
    local theirs, ours = both(creates(1, 700, "-I", saved_line), { create_line(300) })
    assert.equal(1, theirs.status)
    assert.equal(300, #theirs.table)
    same(theirs, ours)
  end)

  it("goes on past -A of an entry that exists", function()
    local theirs, ours = both(creates(1, 600, "-A", saved_line), { create_line(10), create_line(400) })
    assert.equal(0, theirs.status)
    assert.equal(600, #theirs.table)
    same(theirs, ours)
  end)

  it("runs them in file order with other lines: hand-written creates, -D, -F, comments", function()
    local lines = creates(1, 100, "-I", saved_line)
    for _, l in ipairs({ "", "# a comment", "  " .. saved_line(101), saved_line(102) .. "\0 -L",
                         "-D -s 10.30.0.7", saved_line(7, "-A"), create_line(103),
                         saved_line(104) .. "  ", "-D -s 10.30.0.8" }) do
      lines[#lines + 1] = l
    end
    for _, l in ipairs(creates(105, 300, "-I", saved_line)) do lines[#lines + 1] = l end
    lines[#lines + 1] = "-F"
    for _, l in ipairs(creates(301, 400, "-A", saved_line)) do lines[#lines + 1] = l end
    lines[#lines + 1] = saved_line(350)      -- exists: -I fails there
    lines[#lines + 1] = saved_line(401)
    local theirs, ours = both(lines)
    assert.equal(1, theirs.status)
    assert.equal(100, #theirs.table)
    same(theirs, ours)
  end)
end)

describe("-R of many creates", function()
  it("creates them all", function()
    local theirs, ours = both(creates(1, 700))
    assert.equal(0, theirs.status)
    assert.equal(700, #theirs.table)
    same(theirs, ours)
  end)

  it("stops at an entry that exists, in the middle of a batch: none after it stays", function()
    local theirs, ours = both(creates(1, 700), { create_line(300) })
    assert.equal(1, theirs.status)
    assert.equal(300, #theirs.table)       -- lines 1..299 and the entry that was there
    same(theirs, ours)
  end)

  it("stops at the first of several failures", function()
    local theirs, ours = both(creates(1, 700), { create_line(650), create_line(120), create_line(5) })
    assert.equal(1, theirs.status)
    same(theirs, ours)
  end)

  it("goes on past -A of an entry that exists", function()
    local theirs, ours = both(creates(1, 600, "-A"), { create_line(10), create_line(400) })
    assert.equal(0, theirs.status)
    assert.equal(600, #theirs.table)
    same(theirs, ours)
  end)

  --- 400 creates with line at, which fails: both stop there, the lines before it applied.
  local function stops_at(at, line)
    local lines = creates(1, 400)
    lines[at] = line
    local theirs, ours = both(lines)
    assert.equal(1, theirs.status)
    assert.equal(at - 1, #theirs.table)
    same(theirs, ours)
  end

  it("stops at a line the kernel refuses in the middle of a batch", function()
    -- sent, and refused by the kernel: type 3 has no reply type (EINVAL)
    stops_at(150, "-I -p icmp -s 10.32.0.1 -d 10.32.0.2 --icmp-type 3 --icmp-code 1 -t 100")
  end)

  it("stops at a line whose template conntrack cannot send, the lines before it applied", function()
    -- a reply tuple without ports: conntrack's template is invalid (EINVAL)
    stops_at(200, "-I -p tcp -s 10.32.0.1 -d 10.32.0.2 --sport 1 --dport 2 -r 10.32.0.2 " ..
                  "-q 10.32.0.1 -t 100 --state ESTABLISHED")
  end)

  -- (not -U: 1.4.7's -U in a file uses the last line's template, #11)
  it("runs -D and -F between creates in file order", function()
    local lines = creates(1, 300)
    lines[#lines + 1] = "-D -s 10.30.0.7"
    lines[#lines + 1] = create_line(7)
    lines[#lines + 1] = "-D -s 10.30.0.8"
    for _, l in ipairs(creates(301, 500)) do lines[#lines + 1] = l end
    lines[#lines + 1] = "-F"
    for _, l in ipairs(creates(501, 650)) do lines[#lines + 1] = l end
    lines[#lines + 1] = "-D -s 10.30.2.100"
    local theirs, ours = both(lines)
    assert.equal(0, theirs.status)
    assert.equal(149, #theirs.table)
    same(theirs, ours)
  end)

  it("reads a line up to a NUL byte, as conntrack's C strings do", function()
    for _, lines in ipairs({
      { create_line(1) .. "\0 -L", create_line(2) },
      { "\0-L", create_line(3) },
      { (create_line(4):gsub(" %-t 300", "\0 -t 300")) },
    }) do
      same(both(lines))
    end
  end)

  -- Files of mostly good creates over 2000 tuples (so that a file often makes one twice),
  -- half of them as -o save writes them, random -I and -A lines (any of which may fail to
  -- parse or be refused) and -D lines:
  -- where each run stops, and what it leaves, must be conntrack's. (LOAD_SEED replaces
  -- the seed.)
  it("ends random files as conntrack does", function()
    math.randomseed(tonumber(os.getenv("LOAD_SEED")) or 20261127)
    local rand = math.random
    local stopped, applied = 0, 0
    for _ = 1, 12 do
      local lines = {}
      for i = 1, 150 + math.floor(rand() * 150) do
        local r = rand()
        if r < 0.004 then
          lines[i] = table.concat(random_lines.create(rand), " ")
        elseif r < 0.02 then
          lines[i] = string.format("-D -s 10.30.%d.%d", math.floor(rand() * 2), math.floor(rand() * 256))
        else
          local line = rand() < 0.5 and saved_line or create_line
          lines[i] = line(math.floor(rand() * 2000), rand() < 0.2 and "-A" or "-I")
        end
      end
      local theirs, ours = both(lines)
      same(theirs, ours)
      if theirs.status ~= 0 then stopped = stopped + 1 end
      applied = applied + #theirs.table
    end
    -- the runs must stop now and then, and go deep into their files
    assert.is_true(stopped > 0, "no run stopped early")
    assert.is_true(applied > 300, "the runs left only " .. applied .. " entries")
  end)

  it("reads a line longer than 10239 bytes in pieces, as conntrack's fgets does", function()
    local pad = string.rep(" ", 10300)
    same(both({
      saved_line(1) .. pad,                                   -- a save line, then blanks
      (saved_line(2):gsub(" %-d ", pad .. "-d ", 1)),         -- cut before -d
      saved_line(3),
    }))
    same(both({ saved_line(4), (saved_line(5):gsub(" %-p ", pad .. "-p ", 1)) }))
    -- pieces across the blocks the file is read in
    same(both({ saved_line(6), string.rep(" ", 40000) .. saved_line(7), saved_line(8) }))
  end)

  it("leaves the table untouched when a line does not parse", function()
    local lines = creates(1, 500)
    lines[#lines + 1] = "-I -p udp -s 10.33.0.1 -d 10.33.0.2 --sport 1 --dport 2 -t 100 --bogus"
    local theirs, ours = both(lines, { create_line(1000) })
    assert.equal(2, theirs.status)
    assert.equal(1, #theirs.table)
    same(theirs, ours)
  end)
end)

describe("a table saved with -L -o save", function()
  -- The whole of it, every protocol and state of the benchmark's mix (bench/fill.lua),
  -- zones and source-NATed reply tuples included.
  it("comes back whole from -R - in another namespace, as conntrack restores it", function()
    H.run(H.CONNTRACK .. " -F")
    H.must("./ct-lua bench/fill.lua 3000 7")
    local file = os.tmpname()
    H.must("./ct-lua conntrack -L -o save >" .. file .. " 2>/dev/null")
    local function saved(text)   -- without the timeouts, which count down
      local lines = {}
      for line in text:gmatch("[^\n]+") do lines[#lines + 1] = (line:gsub("%-t %d+ ", "")) end
      table.sort(lines)
      return lines
    end
    local here = saved(H.must("./ct-lua conntrack -L -o save 2>/dev/null"))
    assert.equal(3000, #here)
    local taken = 0
    for line in io.lines(file) do
      if conntrack.save_command(line) then taken = taken + 1 end
    end
    assert.equal(3000, taken)      -- (every line read in C)
    local peer = H.peer()
    local restored = {}
    for _, who in ipairs({ "./ct-lua conntrack", H.CONNTRACK }) do
      peer:exec(H.CONNTRACK .. " -F 2>/dev/null; " .. who .. " -R - <" .. file)
      restored[#restored + 1] = saved(peer:exec("./ct-lua conntrack -L -o save 2>/dev/null"))
    end
    peer:close()
    os.remove(file)
    H.run(H.CONNTRACK .. " -F")
    assert.same(here, restored[1])
    assert.same(restored[2], restored[1])
  end)
end)
