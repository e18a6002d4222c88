/*
 * The fuzzers' Lua side (see harness.h): one Lua state per process, made on
 * the first input, with the standard libraries, conntrack.core and lua/ on
 * package.path; each input runs the target's chunk under lua_pcall, then a
 * full collection must close every socket the input opened. Lua line
 * coverage can guide libFuzzer through extra counters.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <lauxlib.h>
#include <lualib.h>

#include "module.h"

#ifndef CT_SRC
#error "build with -DCT_SRC=\"/path/to/the/source/tree\""
#endif

/* Lua line coverage: an edge (previous line, line, chunk name) hashed into
 * counters that libFuzzer reads, and resets, as it does its own. */
#define LUA_COUNTERS (1 << 16)
__attribute__((section("__libfuzzer_extra_counters"), used))
static uint8_t lua_counters[LUA_COUNTERS];
static uint32_t previous_line;

static void line_hook(lua_State *L, lua_Debug *ar)
{
	uint32_t here = 2166136261u;

	if (!lua_getinfo(L, "S", ar))
		return;
	for (const char *c = ar->source; *c; c++)
		here = (here ^ (uint8_t)*c) * 16777619u;
	here = (here ^ (uint32_t)ar->currentline) * 16777619u;
	lua_counters[(here ^ (previous_line >> 1)) % LUA_COUNTERS]++;
	previous_line = here;
}

static char scratch[64];

static void remove_scratch(void)
{
	unlink(scratch);
}

static int fuzz_abort(lua_State *L)
{
	fprintf(stderr, "finding: %s\n", luaL_tolstring(L, 1, NULL));
	abort();
}

static int traceback(lua_State *L)
{
	luaL_traceback(L, L, luaL_tolstring(L, 1, NULL), 1);
	return 1;
}

static lua_State *new_state(void)
{
	lua_State *L = luaL_newstate();

	if (!L)
		abort();
	snprintf(scratch, sizeof(scratch), "/tmp/ct-fuzz.%ld", (long)getpid());
	atexit(remove_scratch);
	luaL_openlibs(L);
	lua_pushliteral(L, CT_SRC "/fuzz");
	lua_setglobal(L, "FUZZ_DIR");
	lua_pushstring(L, scratch);
	lua_setglobal(L, "FUZZ_TMP");
	lua_pushcfunction(L, fuzz_abort);
	lua_setglobal(L, "fuzz_abort");
	lua_getglobal(L, "package");
	lua_pushliteral(L, CT_SRC "/lua/?.lua;" CT_SRC "/lua/?/init.lua");
	lua_setfield(L, -2, "path");
	lua_pushliteral(L, "");
	lua_setfield(L, -2, "cpath");
	lua_pop(L, 1);
	luaL_requiref(L, "conntrack.core", luaopen_conntrack_core, 0);
	lua_setfield(L, LUA_REGISTRYINDEX, "fuzz.core");
	return L;
}

static lua_State *state;

void fuzz_run_lua(const char *name, const char *chunk, const uint8_t *input, size_t size,
		  int selector, int flags)
{
	lua_State *L;

	if (!state)
		state = new_state();
	L = state;
	lua_pushcfunction(L, traceback);
	/* the chunk, compiled once */
	if (lua_getfield(L, LUA_REGISTRYINDEX, name) != LUA_TFUNCTION) {
		lua_pop(L, 1);
		if (luaL_loadbuffer(L, chunk, strlen(chunk), name) != LUA_OK) {
			fprintf(stderr, "%s\n", lua_tostring(L, -1));
			abort();
		}
		lua_pushvalue(L, -1);
		lua_setfield(L, LUA_REGISTRYINDEX, name);
	}
	lua_getfield(L, LUA_REGISTRYINDEX, "fuzz.core");
	lua_pushlstring(L, (const char *)input, size);
	lua_pushinteger(L, selector);
	if (flags & FUZZ_LUA_LINES) {
		previous_line = 0;
		lua_sethook(L, line_hook, LUA_MASKLINE, 0);
	}
	if (lua_pcall(L, 3, 0, 1) != LUA_OK && getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "%s: %s\n", name, lua_tostring(L, -1));
	lua_sethook(L, NULL, 0, 0);
	lua_settop(L, 0);
	/* what the input left is garbage now: collecting it must close it all */
	lua_gc(L, LUA_GCCOLLECT);
	lua_gc(L, LUA_GCCOLLECT);
	if (fakenl_open_sockets() != 0) {
		fprintf(stderr, "%s: %d sockets left open after a full collection\n", name,
			fakenl_open_sockets());
		abort();
	}
}
