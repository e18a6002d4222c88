--- The commands on the expectation table: -L, -G, -D, -I, -F and -C expect, through the
-- library's expect_* methods. (-E expect is in events.lua, -S expect in commands.lua.)
-- @module conntrack.cli.expect
local kernel = require "conntrack.cli.kernel"
local output = require "conntrack.cli.output"
local tuples = require "conntrack.cli.tuple"

local M = {}

local function now()
  -- wall-clock time with microseconds, for -o timestamp (conntrack's gettimeofday)
  local conntrack = require "conntrack"
  if not M.offset then
    local p = io.popen("date +%s.%N")
    local t = p and tonumber(p:read("l"))
    if p then p:close() end
    M.offset = (t or os.time()) - conntrack.monotonic()
  end
  return M.offset + conntrack.monotonic()
end

-- Prints one expectation as conntrack's dump callback does.
local function print_expect(ctx, cmd, e)
  local out = ctx.out
  if cmd.output.json then
    out:write(require("conntrack.json").expect(e), "\n")
    return
  end
  if cmd.output.xml then
    output.write_xml_start(ctx, "expect")
  elseif cmd.output.timestamp then
    out:write(output.expect_stamp(now()))
  end
  local text = e:format{ xml = cmd.output.xml or nil }
  if cmd.output.xml and cmd.output.timestamp then text = output.with_when(text, "expect") end
  out:write(text, "\n")
end
M.print_expect = print_expect

local function dump(ctx, cmd, each)
  local h = kernel.handle(ctx, cmd)
  kernel.guard(cmd.command, function()
    for e in h:expect_dump{ family = cmd.family } do each(e) end
  end)
end

function M.EXP_LIST(ctx, cmd)
  dump(ctx, cmd, function(e)
    print_expect(ctx, cmd, e)
    ctx.counter = ctx.counter + 1
  end)
  if ctx.xml_header then ctx.out:write("</expect>\n") end
end

-- The count is printed even when the dump fails (then the failure is reported too).
function M.EXP_COUNT(ctx, cmd)
  local ok, err = pcall(dump, ctx, cmd, function() ctx.counter = ctx.counter + 1 end)
  ctx.out:write(string.format("%d\n", ctx.counter))
  if not ok then error(err, 0) end
end

-- Runs a library call whose bad arguments conntrack would have sent to the kernel (EINVAL).
local function call(command, fn, ...)
  local ok, res, msg, errno = pcall(fn, ...)
  if not ok then kernel.failed(command, kernel.EINVAL) end
  if not res then kernel.failed(command, errno, msg) end
  return res
end

-- The command's original tuple, its ids not given as 0 (what conntrack sends).
local function original(cmd)
  local t = tuples.of(cmd.ct, false)
  tuples.put_ids(t, cmd.ct)
  return t
end

-- The expectation named by the command's tuple (conntrack sends it as the master tuple
-- for -G and as the expected tuple for -D; the kernel looks both up as the expected one).
local function named(cmd)
  return { expected = original(cmd) }
end

function M.EXP_GET(ctx, cmd)
  local h = kernel.handle(ctx, cmd)
  local e = call("EXP_GET", h.expect_get, h, named(cmd))
  print_expect(ctx, cmd, e)
  ctx.counter = ctx.counter + 1
end

-- 1.4.7 counts nothing here, so it always reports 0 and exits 1; we count the deletion.
function M.EXP_DELETE(ctx, cmd)
  local h = kernel.handle(ctx, cmd)
  call("EXP_DELETE", h.expect_delete, h, named(cmd))
  ctx.counter = ctx.counter + 1
end

local function tuple(cmd, t, proto)
  local r = { proto = proto }
  if t.src then r.src = t.src.text end
  if t.dst then r.dst = t.dst.text end
  if proto == 47 then
    r.srckey, r.dstkey = t.srckey, t.dstkey
  else
    r.sport, r.dport = t.sport, t.dport
  end
  if cmd.family then r.family = cmd.family end
  return r
end

function M.EXP_CREATE(ctx, cmd)
  local h = kernel.handle(ctx, cmd)
  local proto = cmd.protonum
  local spec = {
    master = original(cmd),
    expected = tuple(cmd, cmd.exptuple, proto),
    mask = tuple(cmd, cmd.mask, proto),
    timeout = cmd.ct.timeout,
  }
  if not (tuples.PORTS[proto] or proto == 47) then
    spec.expected.sport, spec.expected.dport, spec.mask.sport, spec.mask.dport = nil, nil, nil, nil
  end
  if proto == 1 or proto == 58 then   -- no option sets them: conntrack sends 0
    for _, t in ipairs({ spec.expected, spec.mask }) do
      t.icmp_type, t.icmp_code, t.icmp_id = 0, 0, 0
    end
  end
  call("EXP_CREATE", h.expect_create, h, spec)
end

function M.EXP_FLUSH(ctx, cmd)
  local h = kernel.handle(ctx, cmd)
  local ok, msg, errno = h:expect_flush()
  ctx.err:write(require("conntrack.cli.options").PREFIX, "expectation table has been emptied.\n")
  if not ok then kernel.failed("EXP_FLUSH", errno, msg) end
end

return M
