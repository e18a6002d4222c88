/*
 * libFuzzer target: conntrack's save format as core/save_line.c reads it:
 * the input as one line (h:create of a string) and as a text of lines
 * (h:restore). Whatever the bytes, reading them must stay inside them; and
 * a line the reader takes must give a spec that ct_spec_apply accepts whole
 * and that makes a request, as the grammar promises: h:create never refuses
 * a line that conntrack.save_command took. (That the line means what the
 * CLI's parser makes of it is tests/save_line_spec.lua's, against the kernel.)
 *
 * Input: the text.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "harness.h"
#include "ct.h"

#include <stdio.h>
#include <stdlib.h>

static void check_line(const char *line, size_t len)
{
	static struct ct_spec spec;
	struct nf_conntrack *ct;
	const char *err, *name = NULL;
	char buf[CT_REQUEST_MAX];

	if (!ct_save_line_read(line, len, &spec))
		return;
	ct = nfct_new();
	if (!ct)
		abort();
	err = ct_spec_apply(&spec, F_CREATE, ct, &name);
	if (err) {
		fprintf(stderr, "finding: a line taken, its spec refused: ");
		fprintf(stderr, err, name);
		fprintf(stderr, "\n%.*s\n", (int)len, line);
		abort();
	}
	if (nfct_nlmsg_build(ct_request_header(buf, CT_MSG(IPCTNL_MSG_CT_NEW), 0,
					       nfct_get_attr_u8(ct, ATTR_ORIG_L3PROTO), 0), ct) < 0) {
		fprintf(stderr, "finding: a line taken makes no request:\n%.*s\n", (int)len, line);
		abort();
	}
	nfct_destroy(ct);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size ? size : 1);	/* exactly the input: no NUL after it */
	struct ct_save_text lines;
	const char *line;
	size_t len;

	if (!text)
		return 0;
	memcpy(text, data, size);
	check_line(text, size);
	ct_save_text_init(&lines, text, size);
	while (ct_save_text_next(&lines, &line, &len)) {
		if (line < text || line + len > text + size) {
			fprintf(stderr, "finding: a line outside the text\n");
			abort();
		}
		check_line(line, len);
	}
	free(text);
	return 0;
}
