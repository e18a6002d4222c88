-- The ct-lua interpreter, side by side with lua5.4.
--
-- Runs the built binary (CT_LUA, default ./ct-lua at the repository root) and lua5.4 on the
-- same command lines in a scratch directory and compares stdout, stderr and exit status.
-- Differences that are by design are normalised explicitly: the program name in messages
-- ("ct-lua" vs "lua5.4"), the interpreter path in 'arg', and the extra usage line listing
-- the bundled scripts. Relies on one bundled script, 'summary', which requires "conntrack".

local LUA = "lua5.4"

local function shell_quote(s)
  return "'" .. s:gsub("'", [['\'']]) .. "'"
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("a")
  f:close()
  return data
end

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function plain(s)
  return (s:gsub("%p", "%%%0"))
end

local function cwd()
  local p = io.popen("pwd")
  local dir = p:read("l")
  p:close()
  return dir
end

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  return cwd() .. "/" .. path
end

local CT_LUA = (function()
  local from_env = os.getenv("CT_LUA")
  if from_env and from_env ~= "" then return absolute(from_env) end
  local spec = debug.getinfo(1, "S").source:match("^@(.*)$")
  local tests_dir = spec:match("^(.*)/[^/]*$") or "."
  return absolute(tests_dir .. "/../ct-lua")
end)()

describe("ct-lua interpreter", function()
  local tmp, work  -- scratch root (command output files) and the commands' working directory

  before_each(function()
    local p = io.popen("mktemp -d /tmp/ct-lua-spec.XXXXXX")
    tmp = p:read("l")
    p:close()
    assert.truthy(tmp and tmp:match("^/tmp/ct%-lua%-spec%."))
    work = tmp .. "/work"
    assert.truthy(os.execute("mkdir " .. shell_quote(work)))
  end)

  after_each(function()
    os.execute("rm -rf " .. shell_quote(tmp))
  end)

  -- Runs argv in 'work' with a clean Lua environment plus opts.env; opts.stdin feeds stdin,
  -- opts.timeout bounds commands whose run time we do not control.
  -- Returns { status = n, stdout = s, stderr = s }.
  local function run(argv, opts)
    opts = opts or {}
    local cmd = { "cd", shell_quote(work), "&&", "env",
                  "-u LUA_INIT -u LUA_INIT_5_4 -u LUA_PATH -u LUA_PATH_5_4",
                  "-u LUA_CPATH -u LUA_CPATH_5_4" }
    for k, v in pairs(opts.env or {}) do cmd[#cmd + 1] = shell_quote(k .. "=" .. v) end
    if opts.timeout then cmd[#cmd + 1] = "timeout " .. opts.timeout end
    for _, a in ipairs(argv) do cmd[#cmd + 1] = shell_quote(a) end
    local stdin = "/dev/null"
    if opts.stdin then
      stdin = tmp .. "/stdin"
      write_file(stdin, opts.stdin)
    end
    os.execute(string.format("(%s) <%s >%s 2>%s; echo $? >%s", table.concat(cmd, " "),
                             shell_quote(stdin), shell_quote(tmp .. "/stdout"),
                             shell_quote(tmp .. "/stderr"), shell_quote(tmp .. "/status")))
    return {
      status = tonumber(read_file(tmp .. "/status")),
      stdout = read_file(tmp .. "/stdout"),
      stderr = read_file(tmp .. "/stderr"),
    }
  end

  local function with_interp(interp, args)
    local argv = { interp }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    return argv
  end

  -- Runs the same arguments under both interpreters; lua5.4's results are rewritten to say
  -- "ct-lua" where the program names itself in messages.
  local function both(args, opts)
    local ct = run(with_interp(CT_LUA, args), opts)
    local ref = run(with_interp(LUA, args), opts)
    ref.stderr = ("\n" .. ref.stderr):gsub("\n" .. plain(LUA) .. ": ", "\nct-lua: "):sub(2)
    return ct, ref
  end

  local function assert_same(ct, ref)
    assert.are.same(ref, ct)
  end

  local function in_work(name) return work .. "/" .. name end

  it("passes script arguments and builds 'arg' with negative indices", function()
    write_file(in_work("args.lua"), [[
      local lo = 0
      while arg[lo - 1] ~= nil do lo = lo - 1 end
      for i = lo, #arg do print(i, arg[i]) end
      print("varargs", select("#", ...), ...)
    ]])
    local ct, ref = both({ "-e", "x = 1", "args.lua", "a", "b c", "" })
    ct.stdout = ct.stdout:gsub("\t" .. plain(CT_LUA) .. "\n", "\t<interpreter>\n")
    ref.stdout = ref.stdout:gsub("\t" .. plain(LUA) .. "\n", "\t<interpreter>\n")
    assert_same(ct, ref)
    assert.matches("^%-3\t<interpreter>\n%-2\t%-e\n%-1\tx = 1\n0\targs%.lua\n1\ta\n", ct.stdout)
  end)

  it("keeps lua5.4's module paths for plain scripts", function()
    assert_same(both({ "-e", "print(package.path) print(package.cpath)" }))
  end)

  it("runs -e chunks in order and reports their errors", function()
    assert_same(both({ "-e", "print(1 + 1)", "-e", "print(_VERSION)" }))
    local ct, ref = both({ "-e", "error('bad')" })
    assert_same(ct, ref)
    assert.are.equal(1, ct.status)
  end)

  it("requires -l modules into globals, including -l g=mod", function()
    write_file(in_work("mod.lua"), "return { v = 42, name = ... }\n")
    local ct, ref = both({ "-l", "mod", "-l", "m=mod", "-e", "print(mod.v, m.name, m == mod)" })
    assert_same(ct, ref)
    assert.are.equal("42\tmod\ttrue\n", ct.stdout)
  end)

  it("prints a version line naming ct-lua and Lua 5.4", function()
    local r = run({ CT_LUA, "-v" })
    assert.are.equal(0, r.status)
    assert.matches("^ct%-lua %S+ %(Lua 5%.4", r.stdout)
    assert.are.equal("", r.stderr)
  end)

  it("runs LUA_INIT_5_4 or LUA_INIT, and ignores them and LUA_PATH with -E", function()
    local env = { LUA_INIT = "print('init')" }
    local ct, ref = both({ "-e", "print('main')" }, { env = env })
    assert_same(ct, ref)
    assert.are.equal("init\nmain\n", ct.stdout)

    ct, ref = both({ "-E", "-e", "print('main')" }, { env = env })
    assert_same(ct, ref)
    assert.are.equal("main\n", ct.stdout)

    env.LUA_INIT_5_4 = "print('init 5.4')"
    ct, ref = both({ "-e", "print('main')" }, { env = env })
    assert_same(ct, ref)
    assert.are.equal("init 5.4\nmain\n", ct.stdout)

    env = { LUA_PATH = "/nowhere/?.lua" }
    ct, ref = both({ "-e", "print(package.path)" }, { env = env })
    assert_same(ct, ref)
    assert.are.equal("/nowhere/?.lua\n", ct.stdout)
    ct, ref = both({ "-E", "-e", "print(package.path)" }, { env = env })
    assert_same(ct, ref)
    assert.falsy(ct.stdout:find("/nowhere", 1, true))
  end)

  it("runs LUA_INIT=@file", function()
    write_file(in_work("init.lua"), "print('from init file', ...)\n")
    local ct, ref = both({ "-e", "print('main')" }, { env = { LUA_INIT = "@init.lua" } })
    assert_same(ct, ref)
    assert.are.equal("from init file\nmain\n", ct.stdout)

    ct, ref = both({ "-e", "print('main')" }, { env = { LUA_INIT = "@missing.lua" } })
    assert_same(ct, ref)
    assert.are.equal(1, ct.status)
  end)

  it("runs stdin as the script with '-'", function()
    local opts = { stdin = "print(arg[0], ...)\n" }
    local ct, ref = both({ "-", "a", "b" }, opts)
    assert_same(ct, ref)
    assert.are.equal("-\ta\tb\n", ct.stdout)
  end)

  it("runs stdin as a file when it is not a terminal, and fails on its errors", function()
    local r = run({ CT_LUA }, { stdin = "print('from stdin')\n" })
    assert.are.equal("from stdin\n", r.stdout)
    assert.are.equal(0, r.status)
    -- lua5.4 exits 0 here; ct-lua deliberately reports the failure.
    r = run({ CT_LUA }, { stdin = "error('x')\n" })
    assert.are.equal(1, r.status)
    assert.matches("^ct%-lua: stdin:1: x\nstack traceback:", r.stderr)
  end)

  it("reports a runtime error with a traceback naming the chunk and exits 1", function()
    write_file(in_work("err.lua"), "local function f() error('boom') end\nf()\n")
    local ct, ref = both({ "err.lua" })
    assert_same(ct, ref)
    assert.are.equal(1, ct.status)
    assert.matches("^ct%-lua: err%.lua:1: boom\nstack traceback:\n", ct.stderr)
    assert.matches("err%.lua:2: in main chunk", ct.stderr)

    write_file(in_work("obj.lua"),
               "error(setmetatable({}, { __tostring = function() return 'custom' end }))\n")
    ct, ref = both({ "obj.lua" })
    assert_same(ct, ref)
    assert.are.equal("ct-lua: custom\n", ct.stderr)
  end)

  -- tools/embed.lua keeps the bundled chunks' lines and drops the names of their locals
  it("names the repository file and line of an error inside a bundled module", function()
    local lua_dir = CT_LUA:gsub("ct%-lua$", "lua")
    local line
    local n = 0
    for text in io.lines(lua_dir .. "/conntrack/cli/values.lua") do
      n = n + 1
      if not line and text:find('match(s, "^[1-9]', 1, true) then line = n end
    end
    assert.is_number(line)
    local r = run({ CT_LUA, "-e", "require('conntrack.cli.values').strtoul(nil, 10)" })
    assert.are.equal(1, r.status)
    assert.truthy(r.stderr:find("^ct%-lua: lua/conntrack/cli/values%.lua:" .. line .. ": bad argument #1"),
                  r.stderr)
    assert.truthy(r.stderr:find("\n\tlua/conntrack/cli/values%.lua:" .. line ..
                                ": in function 'conntrack%.cli%.values%.strtoul'\n"), r.stderr)
    -- a parameter's name is debug information the chunk no longer has
    r = run({ CT_LUA, "-e", "print(debug.getlocal(require('conntrack.cli.values').strtoul, 1))" })
    assert.are.equal("nil\n", r.stdout)
    r = run({ "lua5.4", "-e", string.format("package.path = %q", lua_dir .. "/?.lua"), "-e",
              "print(debug.getlocal(require('conntrack.cli.values').strtoul, 1))" })
    assert.are.equal("s\n", r.stdout)
  end)

  it("reports a syntax error and exits 1", function()
    write_file(in_work("syntax.lua"), "x = = 1\n")
    local ct, ref = both({ "syntax.lua" })
    assert_same(ct, ref)
    assert.are.equal(1, ct.status)
    assert.matches("^ct%-lua: syntax%.lua:1: ", ct.stderr)
  end)

  it("passes os.exit statuses through", function()
    assert_same(both({ "-e", "os.exit(3)" }))
  end)

  it("prints lua5.4's usage plus the bundled scripts on a bad option, and exits 1", function()
    for _, args in ipairs({ { "-z" }, { "-h" }, { "-e" }, { "-vx" } }) do
      local ct = run(with_interp(CT_LUA, args))
      local ref = run(with_interp(LUA, args))
      local expected = ref.stderr:gsub(plain(LUA), "ct-lua")
      assert.are.equal(1, ct.status)
      assert.are.equal(ref.status, ct.status)
      assert.are.equal("", ct.stdout)
      assert.are.equal(expected, ct.stderr:sub(1, #expected))
      assert.matches("^Bundled scripts[^\n]* summary", ct.stderr:sub(#expected + 1))
    end
  end)

  it("runs a REPL with -i: expressions, =expr and continuation lines", function()
    local r = run({ CT_LUA, "-i" },
                  { stdin = "1 + 1\n=2, 3\nfor i = 1, 2 do\nprint(i)\nend\nerror('oops')\n" })
    assert.are.equal(0, r.status)
    assert.matches("^ct%-lua ", r.stdout)
    assert.matches("\n> 2\n> 2\t3\n> >> >> 1\n2\n> > \n$", r.stdout)
    assert.matches("^stdin:1: oops\n", r.stderr)  -- no program name in interactive mode
  end)

  it("preloads conntrack.core without loading it", function()
    local r = run({ CT_LUA, "-e", [[
      print(type(package.preload["conntrack.core"]), package.loaded["conntrack.core"])]] })
    assert.are.equal("", r.stderr)
    assert.are.equal("function\tnil\n", r.stdout)
  end)

  it("runs a bundled script by name with 'arg' built as for a script file", function()
    local dump = "local f = io.open('arg.txt', 'w') " ..
                 "for i = -3, #arg do f:write(i, '=', tostring(arg[i]), '\\n') end f:close()"
    run({ CT_LUA, "-e", dump, "summary", "--help", "x" }, { timeout = 20 })
    assert.are.equal(table.concat({
      "-3=" .. CT_LUA, "-2=-e", "-1=" .. dump, "0=summary", "1=--help", "2=x", "" }, "\n"),
      read_file(in_work("arg.txt")))
  end)

  it("resolves bundled names before files of the same name in the cwd", function()
    write_file(in_work("summary"),
               "io.open('planted-ran', 'w'):close() os.exit(42)\n")
    local r = run({ CT_LUA, "summary", "--help" }, { timeout = 20 })
    assert.are_not.equal(42, r.status)
    assert.is_false(exists(in_work("planted-ran")))
    -- with a '/' it is a path, exactly as lua5.4 treats it
    r = run({ CT_LUA, "./summary" })
    assert.are.equal(42, r.status)
    assert.is_true(exists(in_work("planted-ran")))
  end)

  describe("a bundled script in a directory with planted modules", function()
    local MARK = "io.open(%q, 'w'):close() return {}\n"
    -- Installed with -e before the bundled script starts; logs every package.path and
    -- package.cpath that a require call made by the script (or its modules) would search.
    local SPY = [[
      local real = require
      function require(...)
        local f = io.open("paths.txt", "a")
        f:write(package.path, "\n", package.cpath, "\n")
        f:close()
        return real(...)
      end]]

    before_each(function()
      assert.truthy(os.execute("mkdir " .. shell_quote(in_work("conntrack"))))
      write_file(in_work("conntrack.lua"), MARK:format("planted-conntrack"))
      write_file(in_work("conntrack/init.lua"), MARK:format("planted-conntrack-init"))
      write_file(in_work("x.lua"), MARK:format("planted-x"))
    end)

    it("loads the embedded modules and searches only absolute paths", function()
      run({ CT_LUA, "-e", SPY, "summary", "--help" }, { timeout = 20 })
      assert.is_false(exists(in_work("planted-conntrack")))
      assert.is_false(exists(in_work("planted-conntrack-init")))
      assert.is_true(exists(in_work("paths.txt")), "summary never called require")
      for template in read_file(in_work("paths.txt")):gmatch("[^;\n]+") do
        assert.matches("^/", template)
      end
    end)

    it("scrubs the paths also when run through a symlink (busybox style)", function()
      assert.truthy(os.execute("ln -s " .. shell_quote(CT_LUA) .. " " ..
                               shell_quote(in_work("summary"))))
      -- No options are parsed in this mode; LUA_INIT still runs first, as for any script.
      local dump = "local f = io.open('arg.txt', 'w') " ..
                   "for i = -1, #arg do f:write(i, '=', tostring(arg[i]), '\\n') end f:close() "
      run({ "./summary", "-e", "x" }, { env = { LUA_INIT = dump .. SPY }, timeout = 20 })
      assert.are.equal("-1=nil\n0=./summary\n1=-e\n2=x\n", read_file(in_work("arg.txt")))
      assert.is_false(exists(in_work("planted-conntrack")))
      assert.is_true(exists(in_work("paths.txt")), "summary never called require")
      for template in read_file(in_work("paths.txt")):gmatch("[^;\n]+") do
        assert.matches("^/", template)
      end
    end)

    it("is a real trap: a plain ct-lua chunk does load ./x.lua, as lua5.4 does", function()
      local r = run({ CT_LUA, "-e", "require 'x'" })
      assert.are.equal(0, r.status)
      assert.is_true(exists(in_work("planted-x")))
    end)
  end)
end)
