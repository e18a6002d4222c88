/*
 * The libFuzzer targets' shared parts (fuzz/harness.c, fuzz/fakenl.c).
 *
 * The targets run the real module code, built with the sanitizers, behind a
 * fake kernel: fakenl.c defines libmnl's socket functions, which the
 * fuzzers' link resolves before libmnl's, so the module's requests go
 * nowhere and what it receives is the fuzzer's input, as datagrams on a
 * real AF_UNIX datagram socket (pollable; recvmmsg and socket filters work
 * on it). Nothing in core/ knows about fuzzing.
 *
 * Input of the netlink targets: a selector byte, then records
 * [flags u8][length u16 LE][datagram]. Each request the module sends (and
 * each subscription, for events) is answered with the next records up to
 * one whose flags have FAKENL_END (or the end of the input). In every
 * message of a datagram the fake XORs nlmsg_seq with the request's
 * sequence number and nlmsg_pid with the socket's port id, so the seeds
 * (captured with fuzz/capture.c, which XORs the same way) carry 0 where
 * the kernel's reply matched, and mutations still reach every mismatch.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef CT_FUZZ_HARNESS_H
#define CT_FUZZ_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <lua.h>

#define FAKENL_END 0x01		/* the last datagram of a reply */

/* The records that the fake kernel answers with. */
void fakenl_reset(const uint8_t *data, size_t size);
/* How many fake sockets are open; the module must close every one. */
int fakenl_open_sockets(void);

/*
 * Runs chunk (a Lua source, compiled once under the name name) in the
 * process's one Lua state, which has the standard libraries,
 * conntrack.core in package.loaded, lua/ on package.path and FUZZ_DIR, as
 * chunk(core, input, selector). Lua errors are the expected outcome of bad
 * input and are ignored (FUZZ_VERBOSE=1 prints them); the sanitizers and
 * libFuzzer catch the rest. A full collection afterwards must have closed
 * every fake socket.
 */
void fuzz_run_lua(const char *name, const char *chunk, const uint8_t *input, size_t size,
		  int selector, int flags);

/* flags of fuzz_run_lua: feed Lua line coverage to libFuzzer as extra
 * counters (for targets whose code under test is Lua). The chunk also has
 * FUZZ_TMP, a scratch file of this process, and fuzz_abort(message), which
 * reports a finding the way a crash is reported. */
#define FUZZ_LUA_LINES 1

/* Each target's entry point, called by libFuzzer. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
