/*
 * libFuzzer target: lines of conntrack's save format (core/save_line.c).
 * Whatever the bytes, reading them must stay inside them; and a line the
 * reader takes must give a spec that ct_spec_apply accepts whole and that
 * makes a request, as the grammar promises: h:create never refuses a line
 * that conntrack.save_command took. (That the line means what the CLI's
 * parser makes of it is tests/save_line_spec.lua's, against the kernel.)
 *
 * Input: the line.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "harness.h"
#include "ct.h"

#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ct_spec spec;
	char *line = malloc(size ? size : 1);	/* exactly the input: no NUL after it */
	struct nf_conntrack *ct;
	const char *err, *name = NULL;
	char buf[CT_REQUEST_MAX];

	if (!line)
		return 0;
	memcpy(line, data, size);
	if (!ct_save_line_read(line, size, &spec)) {
		free(line);
		return 0;
	}
	ct = nfct_new();
	if (!ct)
		abort();
	err = ct_spec_apply(&spec, F_CREATE, ct, &name);
	if (err) {
		fprintf(stderr, "finding: a line taken, its spec refused: ");
		fprintf(stderr, err, name);
		fprintf(stderr, "\n%.*s\n", (int)size, line);
		abort();
	}
	if (nfct_nlmsg_build(ct_request_header(buf, CT_MSG(IPCTNL_MSG_CT_NEW), 0,
					       nfct_get_attr_u8(ct, ATTR_ORIG_L3PROTO), 0), ct) < 0) {
		fprintf(stderr, "finding: a line taken makes no request:\n%.*s\n", (int)size, line);
		abort();
	}
	nfct_destroy(ct);
	free(line);
	return 0;
}
