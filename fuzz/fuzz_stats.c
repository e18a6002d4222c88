/*
 * libFuzzer target: the per-CPU counters of stats.c and the table size of
 * count(), as the kernel's replies deliver them. See harness.h.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "harness.h"

static const char chunk[] =
	"local core, input, sel = ...\n"
	"local h = assert(core.open())\n"
	"local op = sel % 3\n"
	"local t = op == 0 and h:stats() or op == 1 and h:expect_stats() or { h:count() }\n"
	"for _, cpu in pairs(t or {}) do\n"
	"  if type(cpu) == 'table' then for k, v in pairs(cpu) do local _ = k .. v end end\n"
	"end\n"
	"h:close()\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	fakenl_reset(data + 1, size - 1);
	fuzz_run_lua("=fuzz_stats", chunk, data + 1, size - 1, data[0], 0);
	return 0;
}
