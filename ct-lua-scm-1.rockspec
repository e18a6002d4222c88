-- ct-lua: `luarocks --lua-version 5.4 make` from a checkout builds conntrack/core.so and the
-- ct-lua interpreter with the project's Makefile and installs them with `make install`.
rockspec_format = "3.0"
package = "ct-lua"
version = "scm-1"

source = {
  -- Placeholder: the project has no public home yet. `luarocks make` builds the checkout it
  -- runs in and never fetches this; `luarocks build`/`pack` need a real URL here.
  url = "git+https://git.invalid/ct-lua.git",
  branch = "main",
}

description = {
  summary = "Read, change and react to the Linux connection-tracking table from Lua",
  detailed = [[
    A Lua 5.4 binding of ctnetlink (libmnl for the sockets, libnetfilter_conntrack to build
    and parse entries): streaming dumps with filters that run in C or in the kernel,
    pipelined batch updates and deletes, expectations, lossless event subscriptions that any
    event loop can drive, and other namespaces' tables. Also installs ct-lua, a lua5.4-like
    interpreter with the binding and the bundled scripts built in, and ct-conntrack, the
    conntrack(8)-compatible command.
  ]],
  license = "GPL-2.0-or-later",
  labels = { "netfilter", "conntrack", "netlink", "linux", "firewall" },
}

supported_platforms = { "linux" }

dependencies = {
  "lua >= 5.4, < 5.5",
}

-- Found by LuaRocks before the build (override with LIBMNL_DIR=..., *_INCDIR, *_LIBDIR);
-- Debian 12: libmnl-dev and libnetfilter-conntrack-dev.
external_dependencies = {
  LIBMNL = {
    header = "libmnl/libmnl.h",
    library = "mnl",
  },
  NETFILTER_CONNTRACK = {
    header = "libnetfilter_conntrack/libnetfilter_conntrack.h",
    library = "netfilter_conntrack",
  },
}

-- "make", not "builtin": besides the module, the build generates a C file that embeds lua/
-- and scripts/ (tools/embed.lua) and links the ct-lua executable; "builtin" only compiles
-- modules. One Makefile also keeps the flags, the source list and the install layout in one
-- place for make, make install and LuaRocks.
build = {
  type = "make",
  build_target = "all",
  build_variables = {
    CC = "$(CC)",
    CFLAGS = "$(CFLAGS)",
    CPPFLAGS = "-I$(LUA_INCDIR) -I$(LIBMNL_INCDIR) -I$(NETFILTER_CONNTRACK_INCDIR)",
    LDFLAGS = "-L$(LIBMNL_LIBDIR) -L$(NETFILTER_CONNTRACK_LIBDIR)",
    LUA = "$(LUA)",
  },
  install_target = "install",
  -- `make install` writes into this rock's directory; LuaRocks then deploys bin/ to the
  -- tree's bin, lib/ to lib/lua/5.4 and lua/ to share/lua/5.4. The man pages stay in the
  -- rock's doc/ directory.
  install_variables = {
    PREFIX = "$(PREFIX)",
    BINDIR = "$(BINDIR)",
    LUA_CMOD_DIR = "$(LIBDIR)",
    LUA_LMOD_DIR = "$(LUADIR)",
    MANDIR = "$(DOCDIR)/man",
    LUA = "$(LUA)",
  },
}

-- Not type "busted": the suite must run each spec file in its own private network namespace
-- (tests/run does `unshare -rn` per spec) because the specs flush the table and the nft
-- ruleset; plain busted (which .busted would configure) would do that to the host's own table
-- when run as root. tests/run needs busted from Debian's lua-busted (make deps), not a rock.
test = {
  type = "command",
  command = "make all && tests/run",
}
