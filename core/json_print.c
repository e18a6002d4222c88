/*
 * A flow as one JSON object, the bytes json.flow(flow) gives (see
 * lua/conntrack/json.lua for the schema), written in C so that h:write can
 * list a table as JSON without a Lua object per entry. The keys are the
 * present readable fields in the order of ct_fields[], their values read
 * through ct_field_read as Lua reads them, and encoded by json.lua's rules:
 * strings escaped alike, integers in decimal, sets as arrays in ascending
 * order (names, then the numbers of unnamed labels).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <string.h>

/*
 * The length of the valid UTF-8 sequence at s (n bytes left), or 0: the
 * strict rules of Lua's utf8.len, which json.lua checks with (no overlong
 * forms, no surrogates, nothing above U+10FFFF).
 */
static size_t utf8_sequence(const unsigned char *s, size_t n)
{
	static const uint32_t least[] = { 0, 0, 0x80, 0x800, 0x10000 };
	size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : 2;
	uint32_t cp;

	if (s[0] < 0xc0 || s[0] >= 0xf8 || len > n)
		return 0;
	cp = s[0] & (0x7f >> len);
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < least[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* s as a JSON string: json.lua's quote(), each byte outside valid UTF-8 as U+FFFD. */
static void put_string(struct ct_line *l, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), plain = 0;

	ct_put(l, "\"", 1);
	while (plain < n) {
		const unsigned char *c = p + plain;
		size_t len = 0;

		if (*c >= 0x20 && *c != '"' && *c != '\\' && *c < 0x80) {
			plain++;	/* copied with its run below */
			continue;
		}
		if (*c >= 0x80)
			len = utf8_sequence(c, n - plain);
		if (len) {
			plain += len;
			continue;
		}
		ct_put(l, (const char *)p, plain);
		switch (*c) {
		case '"':  ct_put(l, "\\\"", 2); break;
		case '\\': ct_put(l, "\\\\", 2); break;
		case '\b': ct_put(l, "\\b", 2); break;
		case '\f': ct_put(l, "\\f", 2); break;
		case '\n': ct_put(l, "\\n", 2); break;
		case '\r': ct_put(l, "\\r", 2); break;
		case '\t': ct_put(l, "\\t", 2); break;
		default:
			if (*c < 0x20) {
				char u[6] = { '\\', 'u', '0', '0', hex[*c >> 4], hex[*c & 15] };

				ct_put(l, u, sizeof(u));
			} else {
				ct_put(l, "\\ufffd", 6);
			}
		}
		p = c + 1;
		n -= plain + 1;
		plain = 0;
	}
	ct_put(l, (const char *)p, plain);
	ct_put(l, "\"", 1);
}

/* A Lua integer as tostring writes it. */
static void put_integer(struct ct_line *l, int64_t v)
{
	if (v < 0)
		ct_put(l, "-", 1);
	ct_put_u64(l, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
}

/*
 * Sets are arrays of their members as json.lua sorts them: the names in
 * ascending byte order, then the numbers of labels without a name.
 */

/* A flag set (status, TCP flags: at most 32 bits): its names, sorted by insertion. */
static void put_flags(struct ct_line *l, const struct ct_reading *r)
{
	const char *names[32];
	size_t n = 0;

	for (int bit = 0; r->names[bit]; bit++) {
		size_t i;

		if (!(r->num & (1 << bit)))
			continue;
		for (i = n++; i > 0 && strcmp(names[i - 1], r->names[bit]) > 0; i--)
			names[i] = names[i - 1];
		names[i] = r->names[bit];
	}
	ct_put(l, "[", 1);
	for (size_t i = 0; i < n; i++) {
		if (i)
			ct_put(l, ",", 1);
		put_string(l, names[i]);
	}
	ct_put(l, "]", 1);
}

/*
 * Labels: up to 128 of them (more if the kernel ever sends more), two of
 * which may share a name, which a Lua set holds once. Each name is found by
 * a pass for the least one above the last, so no buffer bounds them.
 */
static void put_labels(struct ct_line *l, const struct ct_labels *b,
		       struct nfct_labelmap *map)
{
	unsigned int nbits = ct_labels_bits(b);
	const char *last = NULL;
	bool first = true;

	ct_put(l, "[", 1);
	for (;;) {
		const char *next = NULL;

		for (unsigned int bit = 0; bit < nbits; bit++) {
			const char *name = ct_labels_test(b, bit) ? ct_label_name(map, bit) : NULL;

			if (name && (!last || strcmp(name, last) > 0) && (!next || strcmp(name, next) < 0))
				next = name;
		}
		if (!next)
			break;
		if (!first)
			ct_put(l, ",", 1);
		put_string(l, next);
		last = next;
		first = false;
	}
	for (unsigned int bit = 0; bit < nbits; bit++) {
		if (ct_labels_test(b, bit) && !ct_label_name(map, bit)) {
			if (!first)
				ct_put(l, ",", 1);
			ct_put_u64(l, bit);
			first = false;
		}
	}
	ct_put(l, "]", 1);
}

static void put_value(struct ct_line *l, const struct ct_reading *r, struct nfct_labelmap *map)
{
	switch (r->type) {
	case CT_R_STRING:
		put_string(l, r->str);
		break;
	case CT_R_INTEGER:
		put_integer(l, r->num);
		break;
	case CT_R_BOOLEAN:
		ct_put_str(l, r->num ? "true" : "false");
		break;
	case CT_R_ADDR:
		ct_put(l, "\"", 1);
		ct_put_addr(l, r->ipv6, r->addr);
		ct_put(l, "\"", 1);
		break;
	case CT_R_FLAGS:
		put_flags(l, r);
		break;
	case CT_R_LABELS:
		put_labels(l, &r->labels, map);
		break;
	}
}

/*
 * json.flow's object of entry e (parsed, or indexed and not odd) into buf
 * (not NUL-terminated), naming labels from map (may be NULL). Returns its
 * length, or 0 when it does not fit in size bytes (an object is never
 * empty: "{}" at least).
 */
size_t ct_json_flow(char *buf, size_t size, const struct ct_entry *e, struct nfct_labelmap *map)
{
	struct ct_line l = { buf, buf + size, false };
	bool first = true;

	for (size_t i = 0; i < ct_nfields; i++) {
		const struct ct_field *f = &ct_fields[i];
		struct ct_reading r;

		if (!(f->flags & F_READ) || !ct_field_present(f, e))
			continue;
		ct_field_read(f, e, &r);
		ct_put(&l, first ? "{\"" : ",\"", 2);
		ct_put_str(&l, f->name);
		ct_put(&l, "\":", 2);
		put_value(&l, &r, map);
		first = false;
	}
	ct_put_str(&l, first ? "{}" : "}");
	return l.full ? 0 : (size_t)(l.p - buf);
}
