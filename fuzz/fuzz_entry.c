/*
 * libFuzzer target: every conntrack message of the input printed from its
 * attributes (core/entry.c, what h:write does for a dump) must be the same
 * text as printed from libnfct's parse of it (what flow:format does), in
 * every format; and every field must read from the index as from the
 * parse (what a dump's or an event's flow does). The input is fuzz_dump's (see harness.h), so its corpus
 * serves as seeds; the selector byte is unused.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "harness.h"
#include "ct.h"

#include <stdio.h>
#include <stdlib.h>

static const struct ct_format formats[] = {
	{ NFCT_T_UNKNOWN, NFCT_O_DEFAULT, 0, false },
	{ NFCT_T_UNKNOWN, NFCT_O_DEFAULT, NFCT_OF_SHOW_LAYER3 | NFCT_OF_ID, false },
	{ NFCT_T_NEW, NFCT_O_DEFAULT, 0, false },
	{ NFCT_T_DESTROY, NFCT_O_DEFAULT, NFCT_OF_TIMESTAMP, false },
	{ NFCT_T_UNKNOWN, NFCT_O_XML, 0, false },
	{ NFCT_T_UPDATE, NFCT_O_XML, NFCT_OF_ID, false },
};

/* Both prints of one format; delta-time reads the clock, so a second
 * pair settles a difference that a tick made. */
static bool same_text(struct ct_entry *indexed, struct ct_entry *parsed, const struct ct_format *fmt)
{
	static char a[CT_FORMAT_MAX], b[CT_FORMAT_MAX];
	int la = 0, lb = 0;

	for (int attempt = 0; attempt < 2; attempt++) {
		la = ct_format_print(a, sizeof(a), indexed, fmt, NULL);
		lb = ct_format_print(b, sizeof(b), parsed, fmt, NULL);
		if (la == lb && memcmp(a, b, (size_t)la) == 0)
			return true;
	}
	fprintf(stderr, "finding: entry.c's print differs from libnfct's parse:\n%.*s\n%.*s\n",
		la, a, lb, b);
	return false;
}

static bool same_reading(const struct ct_reading *a, const struct ct_reading *b)
{
	if (a->type != b->type || a->num != b->num)
		return false;
	switch (a->type) {
	case CT_R_STRING:
		return a->str == b->str || (a->str && b->str && strcmp(a->str, b->str) == 0);
	case CT_R_ADDR:
		return a->ipv6 == b->ipv6 && memcmp(a->addr, b->addr, a->ipv6 ? 16 : 4) == 0;
	case CT_R_LABELS:
		if (ct_labels_bits(&a->labels) != ct_labels_bits(&b->labels))
			return false;
		for (unsigned int bit = 0; bit < ct_labels_bits(&a->labels); bit++)
			if (ct_labels_test(&a->labels, bit) != ct_labels_test(&b->labels, bit))
				return false;
		return true;
	default:
		return true;
	}
}

/* The fields of a message's index (when it is not odd) against its parse's. */
static bool same_fields(const struct ct_entry *indexed, const struct ct_entry *parsed)
{
	for (size_t i = 0; !indexed->odd && i < ct_nfields; i++) {
		const struct ct_field *f = &ct_fields[i];
		struct ct_reading a = { 0 }, b = { 0 };
		bool present;

		if (!(f->flags & F_READ))
			continue;
		present = ct_field_present(f, indexed);
		if (present != ct_field_present(f, parsed)) {
			fprintf(stderr, "finding: field %s is %s in the index only\n", f->name,
				present ? "present" : "absent");
			return false;
		}
		if (!present)
			continue;
		ct_field_read(f, indexed, &a);
		ct_field_read(f, parsed, &b);
		if (!same_reading(&a, &b)) {
			fprintf(stderr, "finding: field %s reads otherwise from the index\n", f->name);
			return false;
		}
	}
	return true;
}

static void check_message(const struct nlmsghdr *nlh)
{
	struct ct_entry indexed = { 0 }, parsed;
	struct nf_conntrack *ct;

	if (!ct_flow_msg_valid(nlh))
		return;
	ct = nfct_new();
	if (!ct || nfct_nlmsg_parse(nlh, ct) < 0)
		abort();	/* a valid message parses, or memory ran out */
	ct_entry_set(&parsed, ct);
	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
		/* a fresh index each time: a decline parses it (ct_entry_parse) */
		ct_entry_release(&indexed);
		ct_entry_index(&indexed, nlh);
		if (!same_text(&indexed, &parsed, &formats[i]))
			abort();
	}
	ct_entry_release(&indexed);
	ct_entry_index(&indexed, nlh);
	if (!same_fields(&indexed, &parsed))
		abort();
	nfct_destroy(ct);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint32_t datagram[65536 / 4];	/* aligned, as a received one */
	size_t off = 1;

	while (off + 3 <= size) {
		size_t len = (size_t)(data[off + 1] | data[off + 2] << 8);
		off += 3;
		if (len > size - off)
			len = size - off;
		memcpy(datagram, data + off, len);
		off += len;
		/* as dump.c walks a datagram (libmnl's mnl_nlmsg_ok takes a length
		 * of 2^31 or more as negative, and so as fitting) */
		for (size_t at = 0; ct_nlmsg_ok((struct nlmsghdr *)((char *)datagram + at), len - at);) {
			const struct nlmsghdr *nlh = (const struct nlmsghdr *)((char *)datagram + at);

			check_message(nlh);
			at += NLMSG_ALIGN(nlh->nlmsg_len);
			if (at > len)
				break;
		}
	}
	return 0;
}
