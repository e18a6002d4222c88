/*
 * libFuzzer target: the event path (events.c: recvmmsg batches,
 * next_message, event_kind, event_time, queue_event, the filter and
 * predicate, seen.c with resync on, bpf.c's socket filter attached to the
 * fake socket; event_write.c's writer), for flow and expectation events. The selector byte picks
 * the filter and the options; the first reply is what the subscription
 * receives. See harness.h.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "harness.h"

static const char chunk[] =
	"local core, input, sel = ...\n"
	"local read = dofile(FUZZ_DIR .. '/read.lua')\n"
	"local h = assert(core.open{ labelmap = FUZZ_DIR .. '/connlabel.conf' })\n"
	"local filters = {\n"
	"  false,\n"
	"  { proto = 'tcp', dport = 22 },\n"
	"  { src = '!10.0.0.0/8', proto = '!udp', mark = '!5/0xff', family = 'ipv4' },\n"
	"  { function(f) return read.flow(core, f) end },\n"
	"  { status = { ASSURED = true, SEEN_REPLY = false }, labels = 'blue,red', state = 'ESTABLISHED' },\n"
	"  { dst = 'fd00::/8', reply_sport = 53, zone = 1, helper = 'ftp' },\n"
	"  { icmp_type = 8, icmp_id = 7, proto = 'icmp' },\n"
	"  { srckey = 5, proto = 'gre', vtag = 1 },\n"
	"}\n"
	"local ev = assert(h:listen{\n"
	"  events = { 'new', 'update', 'destroy', 'expect_new', 'expect_update', 'expect_destroy' },\n"
	"  filter = filters[sel % #filters + 1] or nil, all_netns = sel & 8 ~= 0,\n"
	"  kernel_filter = sel & 16 ~= 0, reliable = sel & 32 ~= 0, resync = sel & 64 ~= 0 })\n"
	"ev:explain() ev:bufsize()\n"
	"local out = assert(io.open(FUZZ_TMP, 'wb'))\n"
	"local write = ev:writer(out, { extended = sel & 1 ~= 0, xml = sel & 2 ~= 0, header = 'h' })\n"
	"local max = sel & 128 ~= 0 and 3 or nil\n"
	"for i = 1, 64 do\n"
	"  local got\n"
	"  if i % 2 == 0 then\n"
	"    -- the writer (event_write.c) and recv take turns\n"
	"    local n, other = write(max)\n"
	"    if other then local _ = other.kind .. other.time end\n"
	"    got = n and (n > 0 or other)\n"
	"  else\n"
	"    local t = ev:recv(max)\n"
	"    got = t and #t > 0\n"
	"    for _, e in ipairs(t or {}) do\n"
	"      local _ = e.kind .. e.time .. (e.portid or '') .. (e.nsid or '')\n"
	"      if e.flow then read.flow(core, e.flow) elseif e.expect then read.expect(core, e.expect) end\n"
	"    end\n"
	"  end\n"
	"  if not got then break end\n"
	"  ev:timeout()\n"
	"end\n"
	"out:close() ev:close() h:close()\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	fakenl_reset(data + 1, size - 1);
	fuzz_run_lua("=fuzz_events", chunk, data + 1, size - 1, data[0], 0);
	return 0;
}
