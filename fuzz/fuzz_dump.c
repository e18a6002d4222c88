/*
 * libFuzzer target: flow messages as dumps, get and the ACKs of batches
 * deliver them (dump.c next_entry and its dump per family, nl.c
 * ct_parse_cb and ct_socket_talk, batch.c, fields.c reading every
 * attribute, filter.c matching, and json_print.c against json.flow). The selector byte picks the operation;
 * see harness.h for the input.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "harness.h"

static const char chunk[] =
	"local core, input, sel = ...\n"
	"local read = dofile(FUZZ_DIR .. '/read.lua')\n"
	"local h = assert(core.open{ labelmap = FUZZ_DIR .. '/connlabel.conf' })\n"
	"local function each(...) for f in h:dump(...) do read.flow(core, f) end end\n"
	"local tuple = { proto = 'tcp', src = '10.0.0.1', dst = '10.0.0.2', sport = 1, dport = 2 }\n"
	"local op = sel % 8\n"
	"-- a protocol without a family: a dump per family (IPv4, then IPv6)\n"
	"if op == 0 then if sel & 8 ~= 0 then each{ proto = 'udp', dport = 53 } else each() end\n"
	"elseif op == 1 then each{ proto = 'tcp', src = '10.0.0.0/8', dport = '!22', mark = '0x1/0x1',\n"
	"  status = 'ASSURED,!DYING', labels = { 'blue' }, state = 'ESTABLISHED', zone = 0 }\n"
	"elseif op == 2 then\n"
	"  -- h:write's JSON (core/json_print.c) must be json.flow's, entry by entry\n"
	"  local json, want, keep = require 'conntrack.json', {}, sel & 8 ~= 0\n"
	"  local out = assert(io.open(FUZZ_TMP, 'wb'))\n"
	"  local ok, err = pcall(h.write, h, out, { json = true }, function(f)\n"
	"    read.flow(core, f)\n"
	"    if keep then want[#want + 1] = json.flow(f) .. '\\n' end\n"
	"    return keep end)\n"
	"  out:close()\n"
	"  local f = assert(io.open(FUZZ_TMP, 'rb'))\n"
	"  local text = f:read('a')\n"
	"  f:close()\n"
	"  if text ~= table.concat(want) then fuzz_abort('h:write json differs from json.flow') end\n"
	"  if not ok then error(err, 0) end\n"
	"elseif op == 3 then\n"
	"  local f = h:get(tuple)\n"
	"  if f then read.flow(core, f) h:update(f, { mark = '0x5/0xff', labels_add = 'blue' }) h:delete(f) end\n"
	"elseif op == 4 then h:delete{ proto = 'udp', src = 'fd00::/8' }\n"
	"elseif op == 5 then h:update({}, { mark = '0x5/0xff', status = 'ASSURED', labels_add = 'blue',\n"
	"  labels_del = { 'red' }, timeout = 5, state = 'ESTABLISHED', helper = 'ftp' })\n"
	"elseif op == 6 then each(nil, { table = 'dying' }) h:flush{ proto = 'tcp' }\n"
	"else\n"
	"  local spec = { proto = 'udp', src = '10.0.0.1', dst = '10.0.0.2', sport = 1, dport = 2, timeout = 9 }\n"
	"  h:create(spec) h:create{ spec, spec } each(nil, { zero = true })\n"
	"end\n"
	"h:close()\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	fakenl_reset(data + 1, size - 1);
	fuzz_run_lua("=fuzz_dump", chunk, data + 1, size - 1, data[0], 0);
	return 0;
}
