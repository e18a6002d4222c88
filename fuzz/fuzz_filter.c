/*
 * libFuzzer target: filter and attribute values through the Lua API, as
 * scripts pass them: ct_field_check/ct_field_parse (addresses, masks, CIDR,
 * mark/mask, ports, state and status names, label lists), ct_filter_compile,
 * bpf.c's socket filter, ct_spec_build/ct_spec_changes and the requests
 * built from them, ct_expect_build. The fake kernel (harness.h) answers
 * nothing, so every call ends with a return or a Lua error.
 *
 * Input: a selector byte (the method), then NUL-separated tokens, read in
 * pairs as key and value. A key starting with '#' is an integer key. A
 * value is typed by its first byte: s string, i number (tonumber), I and F
 * 8 raw bytes as an integer or a float, b boolean, t a list split at ','
 * (an item "=x" becomes x = true, "-x" x = false), T a tuple table of
 * "k=v;k=v" (string values), f a predicate; anything else is a string.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "harness.h"

static const char chunk[] =
	"local core, input, sel = ...\n"
	"local tokens = {}\n"
	"for tok in (input .. '\\0'):gmatch('([^%z]*)%z') do tokens[#tokens + 1] = tok end\n"
	"local function value(tok)\n"
	"  local kind, rest = tok:sub(1, 1), tok:sub(2)\n"
	"  if kind == 's' then return rest\n"
	"  elseif kind == 'i' then return tonumber(rest) or rest\n"
	"  elseif kind == 'I' and #rest >= 8 then return (string.unpack('<i8', rest))\n"
	"  elseif kind == 'F' and #rest >= 8 then return (string.unpack('<d', rest))\n"
	"  elseif kind == 'b' then return rest == '1'\n"
	"  elseif kind == 'f' then return function() return rest == '' end\n"
	"  elseif kind == 't' then\n"
	"    local t = {}\n"
	"    for item in rest:gmatch('[^,]+') do\n"
	"      local c = item:sub(1, 1)\n"
	"      if c == '=' then t[item:sub(2)] = true elseif c == '-' then t[item:sub(2)] = false\n"
	"      else t[#t + 1] = math.tointeger(tonumber(item)) or item end\n"
	"    end\n"
	"    return t\n"
	"  elseif kind == 'T' then\n"
	"    local t = {}\n"
	"    for k, v in rest:gmatch('([^=;]*)=([^;]*)') do t[k] = math.tointeger(tonumber(v)) or v end\n"
	"    return t\n"
	"  end\n"
	"  return tok\n"
	"end\n"
	"local spec = {}\n"
	"for i = 1, #tokens - 1, 2 do\n"
	"  local key = tokens[i]\n"
	"  if key:sub(1, 1) == '#' then key = math.tointeger(tonumber(key:sub(2))) or key end\n"
	"  spec[key] = value(tokens[i + 1])\n"
	"end\n"
	"local h = assert(core.open{ labelmap = FUZZ_DIR .. '/connlabel.conf' })\n"
	"local op = sel % 10\n"
	"if op == 0 then for _ in h:dump(spec) do end\n"
	"elseif op == 1 then\n"
	"  local ev = assert(h:listen{ filter = spec, kernel_filter = true })\n"
	"  ev:explain() ev:recv() ev:close()\n"
	"elseif op == 2 then h:get(spec)\n"
	"elseif op == 3 then h:create(spec)\n"
	"elseif op == 4 then h:update({ proto = 'tcp' }, spec)\n"
	"elseif op == 5 then h:delete(spec)\n"
	"elseif op == 6 then h:flush(spec)\n"
	"elseif op == 7 then h:expect_create(spec)\n"
	"elseif op == 8 then h:expect_get(spec)\n"
	"else h:create{ spec, spec }\n"
	"end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	fakenl_reset(NULL, 0);
	fuzz_run_lua("=fuzz_filter", chunk, data + 1, size - 1, data[0], 0);
	return 0;
}
