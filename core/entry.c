/*
 * An entry as the printers, the fields and the filters read it: a parsed
 * nf_conntrack, or the netlink message it came in, its attributes indexed
 * by libnetfilter_conntrack's attribute numbers in one walk. Listing a
 * table, or reading a dump's flows, then costs no libnfct parse (about
 * half of -L's user time, and of a dump loop's, went to it).
 *
 * The index answers, for every attribute a field or a printer reads,
 * exactly what libnfct 1.0.9's parse of the same message would: the same
 * attributes set, the same values. Where libnfct's storage would make two
 * attributes share bytes (IPv4 and IPv6 addresses, ports and ICMP fields,
 * the protocols' fields), or a repeated nest would leave attributes of its
 * first copy here, the entry is marked odd, and is read from libnfct's
 * parse. fuzz_entry checks that both kinds of entry print and read alike.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>

/* Where a is in e's message (ct_entry_index keeps offsets in range). */
static uint16_t offset_of(const struct ct_entry *e, const struct nlattr *a)
{
	return (uint16_t)((const char *)a - (const char *)e->nlh);
}

/* Records a as attribute attr of e. */
static void put(struct ct_entry *e, enum nf_conntrack_attr attr, const struct nlattr *a)
{
	e->at[attr] = offset_of(e, a);
}

#define EACH_ATTR(a, nest)								\
	for (const char *p_ = ct_attr_data(nest), *end_ = p_ + ct_attr_len(nest);		\
	     ((a) = ct_attr_next(&p_, end_)) != NULL;)

/*
 * Whether nest type t was seen in this walk before (its bit in *seen):
 * libnfct reads the last copy of a nest only, this walk all of them.
 */
static bool repeated(uint32_t *seen, unsigned int t)
{
	bool again = *seen & (1u << t);

	*seen |= 1u << t;
	return again;
}

static void index_ip(struct ct_entry *e, const struct nlattr *nest, bool reply)
{
	bool v4 = false, v6 = false;
	const struct nlattr *a;

	EACH_ATTR(a, nest) {
		switch (ct_attr_type(a)) {
		case CTA_IP_V4_SRC:
			put(e, reply ? ATTR_REPL_IPV4_SRC : ATTR_ORIG_IPV4_SRC, a);
			v4 = true;
			break;
		case CTA_IP_V4_DST:
			put(e, reply ? ATTR_REPL_IPV4_DST : ATTR_ORIG_IPV4_DST, a);
			v4 = true;
			break;
		case CTA_IP_V6_SRC:
			put(e, reply ? ATTR_REPL_IPV6_SRC : ATTR_ORIG_IPV6_SRC, a);
			v6 = true;
			break;
		case CTA_IP_V6_DST:
			put(e, reply ? ATTR_REPL_IPV6_DST : ATTR_ORIG_IPV6_DST, a);
			v6 = true;
			break;
		}
	}
	e->odd |= v4 && v6;	/* one storage in libnfct */
}

/* Where a tuple is: its attributes are the original's, the reply's, or
 * (the master's) none that a field reads. */
enum direction { DIR_ORIG, DIR_REPLY, DIR_MASTER };

/* The ICMP fields, as bits of the walk's note of those outside the
 * original tuple. */
static const enum nf_conntrack_attr icmp_fields[] = { ATTR_ICMP_TYPE, ATTR_ICMP_CODE, ATTR_ICMP_ID };

/* The ICMP field (its index in icmp_fields) of an ICMP or ICMPv6 attribute, or -1. */
static int icmp_field(unsigned int type)
{
	switch (type) {
	case CTA_PROTO_ICMP_TYPE: case CTA_PROTO_ICMPV6_TYPE: return 0;
	case CTA_PROTO_ICMP_CODE: case CTA_PROTO_ICMPV6_CODE: return 1;
	case CTA_PROTO_ICMP_ID: case CTA_PROTO_ICMPV6_ID: return 2;
	default: return -1;
	}
}

/*
 * A tuple's layer-4 nest. libnfct keeps ports and ICMP fields in one
 * storage per tuple, and reads ICMP and ICMPv6 attributes in an order of
 * its own: a tuple with ports and ICMP fields, or with both ICMPs, is odd.
 * It counts the ICMP fields of any tuple as set, but reads them from the
 * original tuple: *elsewhere notes those of the other tuples (ct_entry_index
 * checks that the original has them too). Its printer reads the reply's
 * from the reply's storage, which reply_icmp stands for.
 */
static void index_l4(struct ct_entry *e, const struct nlattr *nest, enum direction dir,
		     unsigned int *elsewhere)
{
	static const enum nf_conntrack_attr orig[] = {
		[CTA_PROTO_NUM] = ATTR_ORIG_L4PROTO, [CTA_PROTO_SRC_PORT] = ATTR_ORIG_PORT_SRC,
		[CTA_PROTO_DST_PORT] = ATTR_ORIG_PORT_DST,
	};
	static const enum nf_conntrack_attr reply[] = {
		[CTA_PROTO_NUM] = ATTR_REPL_L4PROTO, [CTA_PROTO_SRC_PORT] = ATTR_REPL_PORT_SRC,
		[CTA_PROTO_DST_PORT] = ATTR_REPL_PORT_DST,
	};
	bool ports = false, icmp = false, icmpv6 = false;
	const struct nlattr *a;

	EACH_ATTR(a, nest) {
		unsigned int t = ct_attr_type(a);
		int field = icmp_field(t);

		if (field >= 0) {
			*(t >= CTA_PROTO_ICMPV6_ID ? &icmpv6 : &icmp) = true;
			if (dir == DIR_ORIG)
				put(e, icmp_fields[field], a);
			else
				*elsewhere |= 1u << field;
			if (dir == DIR_REPLY)
				e->reply_icmp[field] = offset_of(e, a);
		} else if (t >= CTA_PROTO_NUM && t <= CTA_PROTO_DST_PORT && dir != DIR_MASTER) {
			put(e, (dir == DIR_ORIG ? orig : reply)[t], a);
			ports |= t != CTA_PROTO_NUM;
		}
	}
	if (dir != DIR_MASTER)
		e->odd |= (ports && (icmp || icmpv6)) || (icmp && icmpv6);
}

static void index_tuple(struct ct_entry *e, const struct nlattr *nest, enum direction dir,
			unsigned int *icmp_elsewhere)
{
	const struct nlattr *a;
	uint32_t seen = 0;

	EACH_ATTR(a, nest) {
		unsigned int t = ct_attr_type(a);

		if (t == CTA_TUPLE_ZONE && dir != DIR_MASTER) {
			put(e, dir == DIR_REPLY ? ATTR_REPL_ZONE : ATTR_ORIG_ZONE, a);
		} else if (t == CTA_TUPLE_IP || t == CTA_TUPLE_PROTO) {
			e->odd |= repeated(&seen, t);
			if (t == CTA_TUPLE_PROTO)
				index_l4(e, a, dir, icmp_elsewhere);
			else if (dir != DIR_MASTER)
				index_ip(e, a, dir == DIR_REPLY);
		}
	}
}

static void index_counters(struct ct_entry *e, const struct nlattr *nest, bool reply)
{
	const struct nlattr *a;

	EACH_ATTR(a, nest) {
		switch (ct_attr_type(a)) {
		case CTA_COUNTERS_PACKETS:
			put(e, reply ? ATTR_REPL_COUNTER_PACKETS : ATTR_ORIG_COUNTER_PACKETS, a);
			break;
		case CTA_COUNTERS_BYTES:
			put(e, reply ? ATTR_REPL_COUNTER_BYTES : ATTR_ORIG_COUNTER_BYTES, a);
			break;
		case CTA_COUNTERS32_PACKETS: case CTA_COUNTERS32_BYTES:
			e->odd = true;	/* a kernel older than 2.6.27's */
			break;
		}
	}
}

/* An attribute inside a nest, and the attribute it is. */
struct nested {
	unsigned int type;
	enum nf_conntrack_attr attr;
};

static void index_nest(struct ct_entry *e, const struct nlattr *nest, const struct nested *map,
		       size_t n)
{
	const struct nlattr *a;

	EACH_ATTR(a, nest)
		for (size_t i = 0; i < n; i++)
			if (ct_attr_type(a) == map[i].type)
				put(e, map[i].attr, a);
}

#define INDEX_NEST(e, nest, map) index_nest(e, nest, map, sizeof(map) / sizeof(map[0]))

static void index_protoinfo(struct ct_entry *e, const struct nlattr *nest)
{
	static const struct nested tcp[] = {
		{ CTA_PROTOINFO_TCP_STATE, ATTR_TCP_STATE },
		{ CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, ATTR_TCP_FLAGS_ORIG },
		{ CTA_PROTOINFO_TCP_FLAGS_REPLY, ATTR_TCP_FLAGS_REPL },
	};
	static const struct nested sctp[] = {
		{ CTA_PROTOINFO_SCTP_STATE, ATTR_SCTP_STATE },
		{ CTA_PROTOINFO_SCTP_VTAG_ORIGINAL, ATTR_SCTP_VTAG_ORIG },
		{ CTA_PROTOINFO_SCTP_VTAG_REPLY, ATTR_SCTP_VTAG_REPL },
	};
	static const struct nested dccp[] = { { CTA_PROTOINFO_DCCP_STATE, ATTR_DCCP_STATE } };
	const struct nlattr *a;
	unsigned int nests = 0;

	EACH_ATTR(a, nest) {
		unsigned int t = ct_attr_type(a);

		if (t == CTA_PROTOINFO_TCP)
			INDEX_NEST(e, a, tcp);
		else if (t == CTA_PROTOINFO_SCTP)
			INDEX_NEST(e, a, sctp);
		else if (t == CTA_PROTOINFO_DCCP)
			INDEX_NEST(e, a, dccp);
		else
			continue;
		/* the three protocols' fields share libnfct's storage: one nest, once */
		e->odd |= nests++ > 0;
	}
}

/* libnfct keeps a helper's name in 16 bytes: a longer one (or one without
 * its NUL) it would cut, so the entry is odd. */
static void index_helper(struct ct_entry *e, const struct nlattr *nest)
{
	const struct nlattr *a;

	EACH_ATTR(a, nest) {
		if (ct_attr_type(a) != CTA_HELP_NAME)
			continue;
		put(e, ATTR_HELPER_NAME, a);
		e->odd |= !memchr(ct_attr_data(a), '\0', ct_attr_len(a) < 16 ? ct_attr_len(a) : 16);
	}
}

/* The top-level attributes that are one value each, and their attribute. */
static enum nf_conntrack_attr top_value(unsigned int type)
{
	switch (type) {
	case CTA_STATUS: return ATTR_STATUS;
	case CTA_TIMEOUT: return ATTR_TIMEOUT;
	case CTA_MARK: return ATTR_MARK;
	case CTA_SECMARK: return ATTR_SECMARK;
	case CTA_USE: return ATTR_USE;
	case CTA_ID: return ATTR_ID;
	case CTA_ZONE: return ATTR_ZONE;
	default: return ATTR_MAX;
	}
}

/*
 * Index nlh, a conntrack message nlvalidate.c passed, into e (whose earlier
 * parse, if any, was released): e then reads the message, and e->ct is
 * NULL until ct_entry_parse.
 */
void ct_entry_index(struct ct_entry *e, const struct nlmsghdr *nlh)
{
	const struct nfgenmsg *nfg = mnl_nlmsg_get_payload(nlh);
	const char *p = (const char *)nfg + MNL_ALIGN(sizeof(*nfg));
	/* where libnfct's parse ends: nlmsg_len, not libmnl's aligned tail */
	const char *end = (const char *)nlh + nlh->nlmsg_len;
	static const struct nested timestamp[] = {
		{ CTA_TIMESTAMP_START, ATTR_TIMESTAMP_START },
		{ CTA_TIMESTAMP_STOP, ATTR_TIMESTAMP_STOP },
	};
	static const struct nested secctx[] = { { CTA_SECCTX_NAME, ATTR_SECCTX } };
	const struct nlattr *a;
	uint32_t seen = 0;
	unsigned int icmp_elsewhere = 0;

	memset(e, 0, sizeof(*e));
	e->nlh = nlh;
	e->family = nfg->nfgen_family;
	/* beyond any conntrack message the kernel makes, and the offsets' range */
	if (nlh->nlmsg_len > UINT16_MAX) {
		e->odd = true;
		return;
	}
	while ((a = ct_attr_next(&p, end)) != NULL) {
		unsigned int t = ct_attr_type(a);
		enum nf_conntrack_attr value = top_value(t);

		if (value != ATTR_MAX) {
			put(e, value, a);
			continue;
		}
		switch (t) {
		case CTA_TUPLE_ORIG:
		case CTA_TUPLE_REPLY:
			/* libnfct gives a tuple the message's family */
			put(e, t == CTA_TUPLE_REPLY ? ATTR_REPL_L3PROTO : ATTR_ORIG_L3PROTO, a);
			index_tuple(e, a, t == CTA_TUPLE_REPLY ? DIR_REPLY : DIR_ORIG, &icmp_elsewhere);
			break;
		case CTA_TUPLE_MASTER:
			index_tuple(e, a, DIR_MASTER, &icmp_elsewhere);
			break;
		case CTA_COUNTERS_ORIG:
		case CTA_COUNTERS_REPLY:
			index_counters(e, a, t == CTA_COUNTERS_REPLY);
			break;
		case CTA_PROTOINFO:
			index_protoinfo(e, a);
			break;
		case CTA_HELP:
			index_helper(e, a);
			break;
		case CTA_TIMESTAMP:
			INDEX_NEST(e, a, timestamp);
			break;
		case CTA_SECCTX:
			INDEX_NEST(e, a, secctx);
			break;
		case CTA_LABELS:
			/* libnfct takes no labels for an empty attribute */
			if (ct_attr_len(a) > 0)
				put(e, ATTR_CONNLABELS, a);
			break;
		default:
			continue;	/* not read by the printers or fields */
		}
		e->odd |= repeated(&seen, t);
	}
	for (size_t i = 0; i < sizeof(icmp_fields) / sizeof(icmp_fields[0]); i++)
		e->odd |= (icmp_elsewhere & (1u << i)) && !e->at[icmp_fields[i]];
}

/* The attribute at offset in e's message, or NULL for offset 0 (none). */
static const struct nlattr *attr_at(const struct ct_entry *e, uint16_t offset)
{
	return offset ? (const struct nlattr *)((const char *)e->nlh + offset) : NULL;
}

/* Attribute attr of e, an indexed entry, or NULL when the message has none. */
static const struct nlattr *attr_of(const struct ct_entry *e, enum nf_conntrack_attr attr)
{
	return attr_at(e, e->at[attr]);
}

/* Appends attribute a, as it is, to request nlh of at most CT_REQUEST_MAX bytes. */
static bool put_copy(struct nlmsghdr *nlh, const struct nlattr *a)
{
	if (nlh->nlmsg_len + MNL_ALIGN(a->nla_len) > CT_REQUEST_MAX)
		return false;
	memcpy(mnl_nlmsg_get_payload_tail(nlh), a, a->nla_len);
	nlh->nlmsg_len += MNL_ALIGN(a->nla_len);
	return true;
}

/*
 * Appends to request nlh (zeroed, of CT_REQUEST_MAX bytes) what names the
 * entry of e, an indexed entry that is not odd, to the kernel (a delete
 * of that entry and no other): its original tuple, zone and id, as the
 * kernel sent them (what libnfct would build from their parse). False when
 * they do not fit.
 */
bool ct_entry_put_identity(const struct ct_entry *e, struct nlmsghdr *nlh)
{
	/* the original tuple's nest is indexed as its family */
	static const enum nf_conntrack_attr identity[] = {
		ATTR_ORIG_L3PROTO, ATTR_ZONE, ATTR_ID
	};

	/* without a tuple, the kernel takes a delete for a flush */
	if (!e->at[ATTR_ORIG_L3PROTO])
		return false;
	for (size_t i = 0; i < sizeof(identity) / sizeof(identity[0]); i++) {
		const struct nlattr *a = attr_of(e, identity[i]);

		if (a && !put_copy(nlh, a))
			return false;
	}
	return true;
}

/*
 * The parsed entry: e's own, or its message parsed now by libnfct (for its
 * printer, or for what reads only parsed entries). NULL with errno ENOMEM.
 */
const struct nf_conntrack *ct_entry_parse(struct ct_entry *e)
{
	if (e->ct)
		return e->ct;
	e->parsed = nfct_new();
	if (!e->parsed || nfct_nlmsg_parse(e->nlh, e->parsed) < 0) {
		ct_entry_release(e);
		errno = ENOMEM;	/* the message was valid: an allocation failed */
		return NULL;
	}
	e->ct = e->parsed;
	return e->ct;
}

/* Free what ct_entry_parse allocated. */
void ct_entry_release(struct ct_entry *e)
{
	if (e->parsed)
		nfct_destroy(e->parsed);
	e->parsed = NULL;
	e->ct = NULL;
}

static const void *payload(const struct ct_entry *e, enum nf_conntrack_attr attr)
{
	const struct nlattr *a = attr_of(e, attr);

	return a ? ct_attr_data(a) : NULL;
}

uint8_t ct_entry_u8(const struct ct_entry *e, enum nf_conntrack_attr attr)
{
	const uint8_t *v;

	if (e->ct)
		return nfct_get_attr_u8(e->ct, attr);
	if (attr == ATTR_ORIG_L3PROTO || attr == ATTR_REPL_L3PROTO)
		return e->at[attr] ? e->family : 0;
	v = payload(e, attr);
	return v ? *v : 0;
}

/* As nfct_get_attr_u16: ports in network order, zones in the host's. */
uint16_t ct_entry_u16(const struct ct_entry *e, enum nf_conntrack_attr attr)
{
	uint16_t v;

	if (e->ct)
		return nfct_get_attr_u16(e->ct, attr);
	if (!e->at[attr])
		return 0;
	memcpy(&v, payload(e, attr), sizeof(v));
	return attr == ATTR_ZONE || attr == ATTR_ORIG_ZONE || attr == ATTR_REPL_ZONE ? ntohs(v) : v;
}

uint32_t ct_entry_u32(const struct ct_entry *e, enum nf_conntrack_attr attr)
{
	uint32_t v;

	if (e->ct)
		return nfct_get_attr_u32(e->ct, attr);
	if (!e->at[attr])
		return 0;
	memcpy(&v, payload(e, attr), sizeof(v));
	return ntohl(v);
}

uint64_t ct_entry_u64(const struct ct_entry *e, enum nf_conntrack_attr attr)
{
	uint64_t v;

	if (e->ct)
		return nfct_get_attr_u64(e->ct, attr);
	if (!e->at[attr])
		return 0;
	memcpy(&v, payload(e, attr), sizeof(v));
	return be64toh(v);
}

/* The payload length of attribute attr of e, an indexed entry (0: absent). */
size_t ct_entry_len(const struct ct_entry *e, enum nf_conntrack_attr attr)
{
	const struct nlattr *a = attr_of(e, attr);

	return a ? ct_attr_len(a) : 0;
}

/* An address's bytes or a helper's name, as nfct_get_attr. */
const void *ct_entry_ptr(const struct ct_entry *e, enum nf_conntrack_attr attr)
{
	return e->ct ? nfct_get_attr(e->ct, attr) : payload(e, attr);
}

static uint8_t u8_or_zero(const struct ct_entry *e, enum nf_conntrack_attr attr)
{
	return ct_entry_has(e, attr) ? ct_entry_u8(e, attr) : 0;
}

static uint16_t u16_or_zero(const struct ct_entry *e, enum nf_conntrack_attr attr)
{
	return ct_entry_has(e, attr) ? ct_entry_u16(e, attr) : 0;
}

/* An address of e into to, which stays as it is when e has none. */
static void copy_addr(uint8_t *to, const struct ct_entry *e, enum nf_conntrack_attr attr,
		      size_t len)
{
	if (ct_entry_has(e, attr))
		memcpy(to, ct_entry_ptr(e, attr), len);
}

void ct_entry_identity(const struct ct_entry *e, struct ct_identity *out)
{
	bool v6;

	memset(out, 0, sizeof(*out));
	out->id = ct_entry_has(e, ATTR_ID) ? ct_entry_u32(e, ATTR_ID) : 0;
	out->zone = u16_or_zero(e, ATTR_ZONE);
	out->orig_zone = u16_or_zero(e, ATTR_ORIG_ZONE);
	out->family = u8_or_zero(e, ATTR_ORIG_L3PROTO);
	out->proto = u8_or_zero(e, ATTR_ORIG_L4PROTO);
	v6 = out->family == AF_INET6;
	copy_addr(out->src, e, v6 ? ATTR_ORIG_IPV6_SRC : ATTR_ORIG_IPV4_SRC, v6 ? 16 : 4);
	copy_addr(out->dst, e, v6 ? ATTR_ORIG_IPV6_DST : ATTR_ORIG_IPV4_DST, v6 ? 16 : 4);
	if (out->proto == IPPROTO_ICMP || out->proto == IPPROTO_ICMPV6) {
		out->icmp_type = u8_or_zero(e, ATTR_ICMP_TYPE);
		out->icmp_code = u8_or_zero(e, ATTR_ICMP_CODE);
		out->sport = u16_or_zero(e, ATTR_ICMP_ID);
	} else {
		out->sport = u16_or_zero(e, ATTR_ORIG_PORT_SRC);
		out->dport = u16_or_zero(e, ATTR_ORIG_PORT_DST);
	}
}

/*
 * The ICMP fields of e's original or reply tuple, zero where the message
 * has none (as libnfct's storage). The reply's only of an indexed entry: a
 * parse keeps them in no attribute.
 */
struct ct_icmp ct_entry_icmp(const struct ct_entry *e, bool reply)
{
	const struct nlattr *type, *code, *id_attr;
	struct ct_icmp icmp;
	uint16_t id;

	if (!reply) {
		icmp.type = ct_entry_u8(e, ATTR_ICMP_TYPE);
		icmp.code = ct_entry_u8(e, ATTR_ICMP_CODE);
		icmp.id = ntohs(ct_entry_u16(e, ATTR_ICMP_ID));
		return icmp;
	}
	type = attr_at(e, e->reply_icmp[0]);
	code = attr_at(e, e->reply_icmp[1]);
	id_attr = attr_at(e, e->reply_icmp[2]);
	icmp.type = type ? *(const uint8_t *)ct_attr_data(type) : 0;
	icmp.code = code ? *(const uint8_t *)ct_attr_data(code) : 0;
	id = 0;
	if (id_attr)
		memcpy(&id, ct_attr_data(id_attr), sizeof(id));
	icmp.id = ntohs(id);
	return icmp;
}
