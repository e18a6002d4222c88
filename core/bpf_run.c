/*
 * The classic BPF programs of bpf.c run in userspace, on the messages of a
 * dump: what the kernel leaves of a filter (negations, prefixes, IPv6
 * addresses, ...) is tested on each entry's raw attributes before it is
 * parsed, and the ones the filter cannot match cost no parsing. Only the
 * instructions bpf.c emits are known; any other ends the program with
 * "drop", which never happens for bpf.c's programs. Loads out of the
 * message drop it, as in the kernel, and the NLATTR extensions search
 * attributes as the kernel's nla_find.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <linux/filter.h>

/*
 * The offset of the first attribute of type `type` among those from
 * offset `at` to the end of the message, or 0 (the kernel's
 * SKF_AD_NLATTR, over nla_find).
 */
static uint32_t find_attr(const uint8_t *msg, size_t size, uint32_t at, uint32_t type)
{
	while (at + sizeof(struct nlattr) <= size) {
		const struct nlattr *a = (const struct nlattr *)(msg + at);

		if (a->nla_len < sizeof(struct nlattr) || a->nla_len > size - at)
			return 0;
		if ((a->nla_type & NLA_TYPE_MASK) == type)
			return at;
		at += NLA_ALIGN(a->nla_len);
	}
	return 0;
}

/* SKF_AD_NLATTR_NEST: the attribute of type `type` inside the one at `at`. */
static uint32_t find_nested(const uint8_t *msg, size_t size, uint32_t at, uint32_t type)
{
	const struct nlattr *nest = (const struct nlattr *)(msg + at);

	if (at + sizeof(struct nlattr) > size || nest->nla_len > size - at)
		return 0;
	return find_attr(msg, at + nest->nla_len, at + NLA_HDRLEN, type);
}

/* A big-endian load of n bytes at off, or false when it is out of the message. */
static bool load(const uint8_t *msg, size_t size, uint64_t off, unsigned int n, uint32_t *out)
{
	uint32_t v = 0;

	if (off + n > size)
		return false;
	for (unsigned int i = 0; i < n; i++)
		v = v << 8 | msg[off + i];
	*out = v;
	return true;
}

bool ct_bpf_run(const struct sock_filter *insn, unsigned int len, const void *message, size_t size)
{
	const uint8_t *msg = message;
	uint32_t a = 0, x = 0;

	for (unsigned int pc = 0; pc < len; pc++) {
		const struct sock_filter *i = &insn[pc];
		static const unsigned int bytes[] = { [BPF_W] = 4, [BPF_H] = 2, [BPF_B] = 1 };

		switch (i->code) {
		case BPF_LD | BPF_IMM:
			a = i->k;
			break;
		case BPF_LDX | BPF_IMM:
			x = i->k;
			break;
		case BPF_MISC | BPF_TAX:
			x = a;
			break;
		case BPF_ALU | BPF_AND | BPF_K:
			a &= i->k;
			break;
		case BPF_LD | BPF_W | BPF_ABS:
			if (i->k == (uint32_t)(SKF_AD_OFF + SKF_AD_NLATTR)) {
				a = find_attr(msg, size, a, x);
				break;
			}
			if (i->k == (uint32_t)(SKF_AD_OFF + SKF_AD_NLATTR_NEST)) {
				a = find_nested(msg, size, a, x);
				break;
			}
			/* a plain word */
			/* fall through */
		case BPF_LD | BPF_H | BPF_ABS:
		case BPF_LD | BPF_B | BPF_ABS:
			if (!load(msg, size, i->k, bytes[BPF_SIZE(i->code)], &a))
				return false;
			break;
		case BPF_LD | BPF_W | BPF_IND:
		case BPF_LD | BPF_H | BPF_IND:
		case BPF_LD | BPF_B | BPF_IND:
			if (!load(msg, size, (uint64_t)x + i->k, bytes[BPF_SIZE(i->code)], &a))
				return false;
			break;
		case BPF_JMP | BPF_JEQ | BPF_K:
			pc += a == i->k ? i->jt : i->jf;
			break;
		case BPF_RET | BPF_K:
			return i->k != 0;
		default:
			return false;
		}
	}
	return false;
}
