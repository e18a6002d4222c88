-- Consistent dumps: a dump the kernel marks interrupted (NLM_F_DUMP_INTR) is
-- never returned silently partial. The mark is injected with an LD_PRELOAD
-- shim (tests/fixtures/dump_intr.c) on the replies of the real kernel.
local H = require "helpers"

local SHIM = os.tmpname() .. ".so"

-- Runs a Lua chunk with ct-lua under the shim; returns its stdout, status, stderr.
local function with_fault(env, chunk)
  local script = os.tmpname()
  H.write_file(script, chunk)
  local out, status, err = H.run(env .. " LD_PRELOAD=" .. SHIM .. " ./ct-lua " .. script)
  os.remove(script)
  return out, status, err
end

describe("an interrupted dump", function()
  lazy_setup(function()
    H.must("cc -shared -fPIC -O2 -o " .. SHIM .. " tests/fixtures/dump_intr.c -ldl")
  end)

  lazy_teardown(function()
    os.remove(SHIM)
  end)

  before_each(function()
    H.reset()
    local h = H.open()
    local specs = {}
    for i = 1, 2000 do  -- several datagrams of dump
      specs[i] = { proto = "udp", src = "10.1." .. (i // 250) .. "." .. (i % 250),
                   dst = "10.2.0.1", sport = 1000 + i, dport = 53, timeout = 300 }
    end
    assert.equal(2000, h:create(specs))
    h:close()
  end)

  it("raises a retryable error in a dump loop instead of ending early", function()
    local out, status = with_fault("CT_FAULT_DUMP_INTR=2", [[
      local h = assert(require("conntrack").open())
      local n = 0
      local ok, err = pcall(function() for _ in h:dump() do n = n + 1 end end)
      print(ok, n > 0 and n < 2000, type(err) == "table" and err.errno, tostring(err))
    ]])
    assert.equal(0, status)
    assert.equal("false\ttrue\t4\tconntrack.dump: the table changed during the dump " ..
                 "(NLM_F_DUMP_INTR); retry\n", out)
  end)

  it("is retried by a delete with a filter, which then deletes every match", function()
    local out, status = with_fault("CT_FAULT_DUMP_INTR=2", [[
      local h = assert(require("conntrack").open())
      print(h:delete{ proto = "udp" }, (h:count()))
    ]])
    assert.equal(0, status)
    assert.equal("2000\t0\n", out)
  end)

  it("gives up after three interrupted attempts and says so", function()
    local out = with_fault("CT_FAULT_DUMP_INTR=1 CT_FAULT_DUMP_INTR_COUNT=100", [[
      local h = assert(require("conntrack").open())
      local n, msg, errno, report = h:delete{ proto = "udp" }
      print(n, msg, errno, report.done)
    ]])
    assert.matches("^nil\tconntrack%.delete: the table changed during the dump " ..
                   "%(NLM_F_DUMP_INTR%); retry\t4\t%d+\n$", out)
  end)

  it("makes an update report the interruption (a second pass would count twice)", function()
    local out = with_fault("CT_FAULT_DUMP_INTR=2", [[
      local h = assert(require("conntrack").open())
      local n, msg, errno = h:update({ proto = "udp" }, { mark = 1 })
      print(n, msg, errno)
    ]])
    assert.matches("^nil\tconntrack%.update: the table changed during the dump " ..
                   "%(NLM_F_DUMP_INTR%); retry\t4\n$", out)
  end)
end)
