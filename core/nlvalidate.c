/*
 * Checks a received ctnetlink message before libnetfilter_conntrack parses
 * it. Version 1.0.9 validates each attribute it knows as it parses, and on a
 * wrong length or type calls __abi_breakage(), which prints "ctnetlink
 * kernel ABI is broken" and exit()s the whole process; a few other bad
 * shapes make it assert() or write past a stack array. One bad message
 * must not end a root process, so each message is walked here first with
 * the same libmnl checks, and one that fails is never handed over.
 *
 * The tables say, per nest, what 1.0.9 checks (learnt from its
 * src/conntrack/parse_mnl.c and src/expect/parse_mnl.c and its binary).
 * Types above a nest's bound are skipped, as 1.0.9 skips them. Where this
 * is stricter, the comment says why; a kernel never sends such messages.
 * Every occurrence of an attribute is checked, where 1.0.9 parses the last.
 * The CTA_* values come from the kernel's header, which numbers them as
 * 1.0.9's own copy does.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <stddef.h>

#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netfilter/nf_conntrack_tcp.h>

struct nest;

/* What one attribute type of a nest must be. */
struct rule {
	enum mnl_attr_data_type type;	/* for mnl_attr_validate; MNL_TYPE_UNSPEC: any */
	uint16_t len;			/* with MNL_TYPE_UNSPEC: the exact payload length */
	uint16_t max_len;		/* the longest payload, when not 0 */
	const struct nest *nest;	/* the attributes inside, walked as 1.0.9 walks them */
};

struct nest {
	uint16_t known;			/* the types 1.0.9 has room for */
	uint16_t bound;			/* it skips types above it, and overruns its array
					 * with those above known: they are refused */
	const struct rule *rules;	/* known + 1 of them, by type */
};

#define U8      { .type = MNL_TYPE_U8 }
#define U16     { .type = MNL_TYPE_U16 }
#define U32     { .type = MNL_TYPE_U32 }
#define U64     { .type = MNL_TYPE_U64 }
#define BYTES(n) { .len = (n) }
#define NESTED(n) { .type = MNL_TYPE_NESTED, .nest = &(n) }
/* 1.0.9 checks MNL_TYPE_STRING (not empty), then reads the payload with
 * str* functions: a NUL at its end keeps those reads in the attribute. */
#define STRING  { .type = MNL_TYPE_NUL_STRING }
#define NEST_BOUND(name, known, bound, ...) \
	static const struct rule name##_rules[(known) + 1] = { __VA_ARGS__ }; \
	static const struct nest name = { (known), (bound), name##_rules }
#define NEST(name, known, ...) NEST_BOUND(name, known, known, __VA_ARGS__)

NEST(ip, CTA_IP_MAX,
	[CTA_IP_V4_SRC] = U32, [CTA_IP_V4_DST] = U32,
	[CTA_IP_V6_SRC] = BYTES(16), [CTA_IP_V6_DST] = BYTES(16));

NEST(l4, CTA_PROTO_MAX,
	[CTA_PROTO_NUM] = U8, [CTA_PROTO_SRC_PORT] = U16, [CTA_PROTO_DST_PORT] = U16,
	[CTA_PROTO_ICMP_ID] = U16, [CTA_PROTO_ICMP_TYPE] = U8, [CTA_PROTO_ICMP_CODE] = U8,
	[CTA_PROTO_ICMPV6_ID] = U16, [CTA_PROTO_ICMPV6_TYPE] = U8,
	[CTA_PROTO_ICMPV6_CODE] = U8);

NEST(tuple, CTA_TUPLE_MAX,
	[CTA_TUPLE_IP] = NESTED(ip), [CTA_TUPLE_PROTO] = NESTED(l4), [CTA_TUPLE_ZONE] = U16);

NEST(tcp, CTA_PROTOINFO_TCP_MAX,
	[CTA_PROTOINFO_TCP_STATE] = U8, [CTA_PROTOINFO_TCP_WSCALE_ORIGINAL] = U8,
	[CTA_PROTOINFO_TCP_WSCALE_REPLY] = U8,
	[CTA_PROTOINFO_TCP_FLAGS_ORIGINAL] = BYTES(sizeof(struct nf_ct_tcp_flags)),
	[CTA_PROTOINFO_TCP_FLAGS_REPLY] = BYTES(sizeof(struct nf_ct_tcp_flags)));

NEST(dccp, CTA_PROTOINFO_DCCP_MAX,
	[CTA_PROTOINFO_DCCP_STATE] = U8, [CTA_PROTOINFO_DCCP_ROLE] = U8,
	[CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ] = U64);

NEST(sctp, CTA_PROTOINFO_SCTP_MAX,
	[CTA_PROTOINFO_SCTP_STATE] = U8, [CTA_PROTOINFO_SCTP_VTAG_ORIGINAL] = U32,
	[CTA_PROTOINFO_SCTP_VTAG_REPLY] = U32);

/* 1.0.9 bounds this nest by CTA_PROTOINFO_TCP_MAX (5), but its array holds
 * CTA_PROTOINFO_MAX + 1 (4) pointers: types 4 and 5 would overrun it. */
NEST_BOUND(protoinfo, CTA_PROTOINFO_MAX, CTA_PROTOINFO_TCP_MAX,
	[CTA_PROTOINFO_TCP] = NESTED(tcp), [CTA_PROTOINFO_DCCP] = NESTED(dccp),
	[CTA_PROTOINFO_SCTP] = NESTED(sctp));

NEST(counters, CTA_COUNTERS_MAX,
	[CTA_COUNTERS_PACKETS] = U64, [CTA_COUNTERS_BYTES] = U64,
	[CTA_COUNTERS32_PACKETS] = U32, [CTA_COUNTERS32_BYTES] = U32);

NEST(natseq, CTA_NAT_SEQ_MAX,
	[CTA_NAT_SEQ_CORRECTION_POS] = U32, [CTA_NAT_SEQ_OFFSET_BEFORE] = U32,
	[CTA_NAT_SEQ_OFFSET_AFTER] = U32);

NEST(help, CTA_HELP_MAX, [CTA_HELP_NAME] = STRING);

NEST(secctx, CTA_SECCTX_MAX, [CTA_SECCTX_NAME] = STRING);

NEST(timestamp, CTA_TIMESTAMP_MAX, [CTA_TIMESTAMP_START] = U64, [CTA_TIMESTAMP_STOP] = U64);

NEST(synproxy, CTA_SYNPROXY_MAX,
	[CTA_SYNPROXY_ISN] = U32, [CTA_SYNPROXY_ITS] = U32, [CTA_SYNPROXY_TSOFF] = U32);

/* 1.0.9's CTA_MAX is CTA_STATUS_MASK. It walks CTA_SYNPROXY without
 * checking that it is a nest, and the later types without any check. */
NEST(flow, CTA_STATUS_MASK,
	[CTA_TUPLE_ORIG] = NESTED(tuple), [CTA_TUPLE_REPLY] = NESTED(tuple),
	[CTA_TUPLE_MASTER] = NESTED(tuple),
	[CTA_NAT_SEQ_ADJ_ORIG] = NESTED(natseq), [CTA_NAT_SEQ_ADJ_REPLY] = NESTED(natseq),
	[CTA_PROTOINFO] = NESTED(protoinfo),
	[CTA_COUNTERS_ORIG] = NESTED(counters), [CTA_COUNTERS_REPLY] = NESTED(counters),
	[CTA_HELP] = NESTED(help), [CTA_SECCTX] = NESTED(secctx),
	[CTA_TIMESTAMP] = NESTED(timestamp),
	[CTA_STATUS] = U32, [CTA_TIMEOUT] = U32, [CTA_MARK] = U32, [CTA_SECMARK] = U32,
	[CTA_USE] = U32, [CTA_ID] = U32, [CTA_ZONE] = U16,
	/* 1.0.9's label bitmask holds at most 65536 bits: a longer attribute
	 * fails the whole parse */
	[CTA_LABELS] = { .max_len = 8192 },
	[CTA_SYNPROXY] = { .nest = &synproxy });

/* 1.0.9 bounds this nest by CTA_MAX (26), but its array holds
 * CTA_EXPECT_NAT_MAX + 1 (3) pointers: types 3 to 26 would overrun it. */
NEST_BOUND(expect_nat, CTA_EXPECT_NAT_MAX, CTA_STATUS_MASK,
	[CTA_EXPECT_NAT_DIR] = U32, [CTA_EXPECT_NAT_TUPLE] = NESTED(tuple));

/* 1.0.9 reads CTA_EXPECT_CLASS as a u32 without checking it (a shorter one
 * would be read past), walks CTA_EXPECT_NAT unchecked, and assert()s that
 * CTA_EXPECT_FN fits its 24-byte buffer. */
NEST(expect, CTA_EXPECT_MAX,
	[CTA_EXPECT_MASTER] = NESTED(tuple), [CTA_EXPECT_TUPLE] = NESTED(tuple),
	[CTA_EXPECT_MASK] = NESTED(tuple),
	[CTA_EXPECT_TIMEOUT] = U32, [CTA_EXPECT_ID] = U32, [CTA_EXPECT_HELP_NAME] = STRING,
	[CTA_EXPECT_ZONE] = U16, [CTA_EXPECT_FLAGS] = U32, [CTA_EXPECT_CLASS] = U32,
	[CTA_EXPECT_NAT] = { .nest = &expect_nat },
	[CTA_EXPECT_FN] = { .type = MNL_TYPE_NUL_STRING, .max_len = 24 });

static bool check_attrs(const char *p, const char *end, const struct nest *n);

/* mnl_attr_validate's length rule: the fixed-size types take exactly their size. */
static bool payload_ok(const struct rule *r, const char *data, size_t len)
{
	static const size_t fixed[MNL_TYPE_MAX] = {
		[MNL_TYPE_U8] = 1, [MNL_TYPE_U16] = 2, [MNL_TYPE_U32] = 4, [MNL_TYPE_U64] = 8,
	};
	size_t want = r->len ? r->len : fixed[r->type];

	if (want && len != want)
		return false;
	if (r->type == MNL_TYPE_NUL_STRING && (len == 0 || data[len - 1] != '\0'))
		return false;
	if (r->type == MNL_TYPE_NESTED && len != 0 && len < MNL_ATTR_HDRLEN)
		return false;
	return !r->max_len || len <= r->max_len;
}

/* One attribute against the nest it is in, and the attributes inside it. */
static bool check_attr(const struct nlattr *attr, const struct nest *n)
{
	unsigned int type = ct_attr_type(attr);
	const char *data = ct_attr_data(attr);
	size_t len = ct_attr_len(attr);
	const struct rule *r;

	if (type > n->bound)
		return true;
	if (type > n->known)
		return false;
	r = &n->rules[type];
	return payload_ok(r, data, len) && (!r->nest || check_attrs(data, data + len, r->nest));
}

/*
 * The attributes from p to end, walked as libmnl walks them (an attribute
 * that does not fit ends the walk, as in mnl_attr_parse), here rather than
 * through libmnl: its calls per attribute doubled the cost of a message.
 */
static bool check_attrs(const char *p, const char *end, const struct nest *n)
{
	const struct nlattr *attr;

	while ((attr = ct_attr_next(&p, end)) != NULL)
		if (!check_attr(attr, n))
			return false;
	return true;
}

/* 1.0.9 subtracts the nfgenmsg header from the payload's length unchecked. */
static bool check_message(const struct nlmsghdr *nlh, const struct nest *top)
{
	const char *payload = mnl_nlmsg_get_payload(nlh);

	return mnl_nlmsg_get_payload_len(nlh) >= sizeof(struct nfgenmsg) &&
	       check_attrs(payload + MNL_ALIGN(sizeof(struct nfgenmsg)),
			   (const char *)mnl_nlmsg_get_payload_tail(nlh), top);
}

bool ct_flow_msg_valid(const struct nlmsghdr *nlh)
{
	return check_message(nlh, &flow);
}

bool ct_expect_msg_valid(const struct nlmsghdr *nlh)
{
	return check_message(nlh, &expect);
}
