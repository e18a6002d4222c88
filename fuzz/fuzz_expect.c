/*
 * libFuzzer target: expectation messages (expect.c ct_expect_parse with its
 * re-framing of the nested tuples, expect_ops.c), as expect_dump and
 * expect_get receive them. See harness.h for the input.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "harness.h"

static const char chunk[] =
	"local core, input, sel = ...\n"
	"local read = dofile(FUZZ_DIR .. '/read.lua')\n"
	"local h = assert(core.open())\n"
	"local expected = { proto = 'tcp', src = '10.0.0.1', dst = '10.0.0.2', sport = 0, dport = 2121 }\n"
	"local op = sel % 4\n"
	"if op == 0 then for e in h:expect_dump() do read.expect(core, e) end\n"
	"elseif op == 1 then\n"
	"  for e in h:expect_dump{ family = 'ipv4', function(e) return read.expect(core, e) end } do end\n"
	"elseif op == 2 then\n"
	"  local e = h:expect_get{ expected = expected, zone = 0 }\n"
	"  if e then read.expect(core, e) h:expect_delete(e) end\n"
	"else\n"
	"  h:expect_create{ expected = expected, master = { proto = 'tcp', src = '10.0.0.1',\n"
	"    dst = '10.0.0.2', sport = 40000, dport = 21 }, timeout = 5, helper = 'ftp',\n"
	"    flags = 'PERMANENT,USERSPACE' }\n"
	"  h:expect_flush()\n"
	"end\n"
	"h:close()\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	fakenl_reset(data + 1, size - 1);
	fuzz_run_lua("=fuzz_expect", chunk, data + 1, size - 1, data[0], 0);
	return 0;
}
