/*
 * A filter compiled to a classic BPF socket filter for the event socket, so
 * the kernel drops unwanted events before they take room in the receive
 * buffer. The program walks the netlink attributes with the NLATTR and
 * NLATTR_NEST ancillary loads. Dumps run the same program in userspace
 * (bpf_run.c) to skip the parsing of entries it drops.
 *
 * It needs only to pass a superset of what the filter wants: C checks every
 * term again on each event. So a term goes to the kernel only where its
 * meaning there is exactly the C meaning, or wider; the rest stays in C.
 * Each term is a block that falls through when the event passes it and
 * ends in its own "ret 0", which keeps every jump short.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/filter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>

/* Where a field's attribute lives: the chain of nested attribute types. */
static const struct bpf_path {
	int attr;
	uint16_t path[3];
	uint8_t depth;
	uint8_t size;		/* bytes of the value */
} paths[] = {
	{ ATTR_ORIG_L4PROTO, { CTA_TUPLE_ORIG, CTA_TUPLE_PROTO, CTA_PROTO_NUM }, 3, 1 },
	{ ATTR_ORIG_IPV4_SRC, { CTA_TUPLE_ORIG, CTA_TUPLE_IP, CTA_IP_V4_SRC }, 3, 4 },
	{ ATTR_ORIG_IPV4_DST, { CTA_TUPLE_ORIG, CTA_TUPLE_IP, CTA_IP_V4_DST }, 3, 4 },
	{ ATTR_REPL_IPV4_SRC, { CTA_TUPLE_REPLY, CTA_TUPLE_IP, CTA_IP_V4_SRC }, 3, 4 },
	{ ATTR_REPL_IPV4_DST, { CTA_TUPLE_REPLY, CTA_TUPLE_IP, CTA_IP_V4_DST }, 3, 4 },
	{ ATTR_ORIG_IPV6_SRC, { CTA_TUPLE_ORIG, CTA_TUPLE_IP, CTA_IP_V6_SRC }, 3, 16 },
	{ ATTR_ORIG_IPV6_DST, { CTA_TUPLE_ORIG, CTA_TUPLE_IP, CTA_IP_V6_DST }, 3, 16 },
	{ ATTR_REPL_IPV6_SRC, { CTA_TUPLE_REPLY, CTA_TUPLE_IP, CTA_IP_V6_SRC }, 3, 16 },
	{ ATTR_REPL_IPV6_DST, { CTA_TUPLE_REPLY, CTA_TUPLE_IP, CTA_IP_V6_DST }, 3, 16 },
	{ ATTR_ORIG_PORT_SRC, { CTA_TUPLE_ORIG, CTA_TUPLE_PROTO, CTA_PROTO_SRC_PORT }, 3, 2 },
	{ ATTR_ORIG_PORT_DST, { CTA_TUPLE_ORIG, CTA_TUPLE_PROTO, CTA_PROTO_DST_PORT }, 3, 2 },
	{ ATTR_REPL_PORT_SRC, { CTA_TUPLE_REPLY, CTA_TUPLE_PROTO, CTA_PROTO_SRC_PORT }, 3, 2 },
	{ ATTR_REPL_PORT_DST, { CTA_TUPLE_REPLY, CTA_TUPLE_PROTO, CTA_PROTO_DST_PORT }, 3, 2 },
	{ ATTR_TCP_STATE, { CTA_PROTOINFO, CTA_PROTOINFO_TCP, CTA_PROTOINFO_TCP_STATE }, 3, 1 },
	{ ATTR_MARK, { CTA_MARK }, 1, 4 },
	{ ATTR_ZONE, { CTA_ZONE }, 1, 2 },
};

/* Symbolic jump targets inside one term's block, resolved when it ends. */
enum target { NEXT, ABSENT, MATCH, MISMATCH };

#define PROGRAM_MAX CT_BPF_MAX

struct program {
	struct sock_filter insn[PROGRAM_MAX];
	uint8_t jt[PROGRAM_MAX], jf[PROGRAM_MAX];	/* enum target while open */
	unsigned int n, block;		/* instructions; start of the open block */
};

#define ATTRS_OFFSET (NLMSG_HDRLEN + sizeof(struct nfgenmsg))
#define FAMILY_OFFSET (NLMSG_HDRLEN + offsetof(struct nfgenmsg, nfgen_family))

static void emit(struct program *p, uint16_t code, enum target jt, enum target jf, uint32_t k)
{
	p->insn[p->n] = (struct sock_filter){ code, 0, 0, k };
	p->jt[p->n] = (uint8_t)jt;
	p->jf[p->n] = (uint8_t)jf;
	p->n++;
}

/*
 * Close the open block: its "ret 0" comes next, then the next block. The
 * term passes on MATCH (or, negated, on MISMATCH); ABSENT goes where
 * absent_passes says.
 */
static void end_block(struct program *p, bool negate, bool absent_passes)
{
	unsigned int fail = p->n, pass = p->n + 1;

	for (unsigned int i = p->block; i < p->n; i++) {
		uint8_t *jumps[2] = { &p->jt[i], &p->jf[i] };
		uint8_t *offsets[2] = { &p->insn[i].jt, &p->insn[i].jf };

		for (int j = 0; j < 2; j++) {
			unsigned int to = i + 1;

			switch ((enum target)*jumps[j]) {
			case NEXT:     to = i + 1; break;
			case ABSENT:   to = absent_passes ? pass : fail; break;
			case MATCH:    to = negate ? fail : pass; break;
			case MISMATCH: to = negate ? pass : fail; break;
			}
			*offsets[j] = (uint8_t)(to - i - 1);
			*jumps[j] = NEXT;
		}
	}
	emit(p, BPF_RET | BPF_K, NEXT, NEXT, 0);
	p->block = p->n;
}

/* Leave the offset of the attribute at path in X, or jump to ABSENT. */
static void find_attribute(struct program *p, const struct bpf_path *at)
{
	emit(p, BPF_LD | BPF_IMM, NEXT, NEXT, ATTRS_OFFSET);
	for (unsigned int d = 0; d < at->depth; d++) {
		emit(p, BPF_LDX | BPF_IMM, NEXT, NEXT, at->path[d]);
		emit(p, BPF_LD | BPF_W | BPF_ABS, NEXT, NEXT,
		     (uint32_t)(SKF_AD_OFF + (d == 0 ? SKF_AD_NLATTR : SKF_AD_NLATTR_NEST)));
		emit(p, BPF_JMP | BPF_JEQ | BPF_K, ABSENT, NEXT, 0);
	}
	emit(p, BPF_MISC | BPF_TAX, NEXT, NEXT, 0);
}

/* Compare the value of the attribute at X with want under mask, word by word. */
static void compare(struct program *p, const struct bpf_path *at, const uint32_t *want,
		    const uint32_t *mask)
{
	static const uint16_t load_size[] = { [1] = BPF_B, [2] = BPF_H, [4] = BPF_W, [16] = BPF_W };
	unsigned int words = at->size == 16 ? 4 : 1;

	for (unsigned int w = 0; w < words; w++) {
		emit(p, BPF_LD | load_size[at->size] | BPF_IND, NEXT, NEXT,
		     (uint32_t)(NLA_HDRLEN + 4 * w));
		if (mask[w] != UINT32_MAX)
			emit(p, BPF_ALU | BPF_AND | BPF_K, NEXT, NEXT, mask[w]);
		emit(p, BPF_JMP | BPF_JEQ | BPF_K, w + 1 == words ? MATCH : NEXT, MISMATCH,
		     want[w] & mask[w]);
	}
}

static const struct bpf_path *path_of(int attr)
{
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (paths[i].attr == attr)
			return &paths[i];
	return NULL;
}

static uint32_t load_be32(const uint8_t *b)
{
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static bool port_proto(int proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_UDPLITE ||
	       proto == IPPROTO_SCTP || proto == IPPROTO_DCCP;
}

/*
 * Emit the block of one term, or return false when the kernel cannot give
 * it the C meaning. Absent attributes: C does not match them (a negated
 * term then passes), except the mark and the zone, which the kernel leaves
 * out when 0 (and which read as 0 then).
 */
static bool compile_term(struct program *p, const struct ct_field *f, const struct ct_value *want,
			 int proto)
{
	uint32_t value[4] = { 0 }, mask[4] = { UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX };
	const struct bpf_path *at;
	int attr = f->attr;
	bool absent_is_zero = false;

	switch (f->kind) {
	case K_FAMILY:
		emit(p, BPF_LD | BPF_B | BPF_ABS, NEXT, NEXT, FAMILY_OFFSET);
		emit(p, BPF_JMP | BPF_JEQ | BPF_K, MATCH, MISMATCH, (uint32_t)want->v.num);
		end_block(p, want->negate, false);
		return true;
	case K_PROTO:
		value[0] = (uint32_t)want->v.num;
		break;
	case K_ADDR:
		if (want->family == AF_INET6)
			attr = f->attr6;
		for (int w = 0; w < (want->family == AF_INET6 ? 4 : 1); w++) {
			value[w] = load_be32(&want->v.bits[4 * w]);
			mask[w] = load_be32(&want->mask.bits[4 * w]);
		}
		break;
	case K_PORT:
		/* a GRE key shares the port attribute: only with a port protocol */
		if (f->scope != S_PORTS || (want->negate && !port_proto(proto)))
			return false;
		value[0] = (uint32_t)want->v.num;
		break;
	case K_U32:
		if (attr != ATTR_MARK)
			return false;
		value[0] = (uint32_t)want->v.num;
		if (want->has_mask)
			mask[0] = (uint32_t)want->mask.num;
		/* C compares (mark & mask) with the whole value, which then never
		 * matches: the masked compare here would, and drop what "!" passes */
		if (value[0] & ~mask[0])
			return false;
		absent_is_zero = true;
		break;
	case K_U16:
		if (attr != ATTR_ZONE)
			return false;
		value[0] = (uint32_t)want->v.num;
		absent_is_zero = true;
		break;
	case K_STATE: {
		int state = proto == IPPROTO_TCP ? ct_state_number(IPPROTO_TCP, want->str) : -1;

		if (state < 0)
			return false;
		attr = ATTR_TCP_STATE;
		value[0] = (uint32_t)state;
		break;
	}
	default:
		return false;
	}
	at = path_of(attr);
	if (!at || p->n + 40 > PROGRAM_MAX)
		return false;
	find_attribute(p, at);
	compare(p, at, value, mask);
	/* an absent mark or zone is 0: it passes when 0 would, negated or not */
	end_block(p, want->negate,
		  absent_is_zero ? ((value[0] & mask[0]) == 0) != want->negate : want->negate);
	return true;
}

/*
 * Compile the terms whose kernel meaning is their C meaning (or wider) into
 * p; compiled[i] says whether term i is in it. Returns false when none is.
 */
static bool compile_filter(const struct ct_filter *filter, struct program *p, bool *compiled)
{
	int proto = ct_filter_proto(filter);
	bool any = false;

	p->n = p->block = 0;
	for (size_t i = 0; i < filter->nterms; i++) {
		compiled[i] = compile_term(p, filter->terms[i].field, &filter->terms[i].want, proto);
		any = any || compiled[i];
	}
	if (any)
		emit(p, BPF_RET | BPF_K, NEXT, NEXT, UINT32_MAX);
	return any;
}

/*
 * Compile filter and attach it to the socket fd, marking the terms that
 * run in the kernel. Returns 0, or an errno value when the kernel refused
 * the program (C still applies every term, so that only costs buffer space).
 */
int ct_bpf_attach(int fd, struct ct_filter *filter)
{
	struct program p;
	struct sock_fprog prog;
	bool compiled[sizeof(filter->terms) / sizeof(filter->terms[0])];

	if (!compile_filter(filter, &p, compiled))
		return 0;
	prog.len = (unsigned short)p.n;
	prog.filter = p.insn;
	if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) < 0)
		return errno;
	for (size_t i = 0; i < filter->nterms; i++)
		filter->terms[i].in_kernel = compiled[i];
	return 0;
}

/*
 * The program of filter into insn (CT_BPF_MAX instructions), for
 * ct_bpf_run; returns its length, 0 when no term compiles.
 */
unsigned int ct_bpf_compile(const struct ct_filter *filter, struct sock_filter *insn)
{
	struct program p;
	bool compiled[sizeof(filter->terms) / sizeof(filter->terms[0])];

	if (!compile_filter(filter, &p, compiled))
		return 0;
	memcpy(insn, p.insn, p.n * sizeof(p.insn[0]));
	return p.n;
}
