/*
 * libFuzzer target: the conntrack command line and its -R file reader
 * (lua/conntrack/cli/), run in process by fuzz/cli.lua under lua_pcall with
 * the module behind the fake kernel. The code under test is Lua, so Lua
 * line coverage guides the fuzzer (FUZZ_LUA_LINES). Input: a selector byte
 * (bit 0: the rest is a -R file; else NUL-separated arguments).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "harness.h"

static const char chunk[] = "return assert(loadfile(FUZZ_DIR .. '/cli.lua'))(...)\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	fakenl_reset(NULL, 0);
	fuzz_run_lua("=fuzz_cli", chunk, data + 1, size - 1, data[0], FUZZ_LUA_LINES);
	return 0;
}
