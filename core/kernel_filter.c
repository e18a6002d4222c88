/*
 * The part of a filter that ctnetlink applies to a conntrack dump itself, so
 * that entries which cannot match are never copied out of the kernel:
 *   - the family, in the nfgenmsg header;
 *   - CTA_MARK/CTA_MARK_MASK, and CTA_STATUS/CTA_STATUS_MASK;
 *   - CTA_ZONE (Linux 6.8): a zone other than 0, compared with the entry's
 *     zone whatever its direction (the C filter then tells zone, orig_zone
 *     and reply_zone apart);
 *   - CTA_FILTER (Linux 5.8): the protocol, exact IPv4 addresses and TCP/UDP
 *     ports of the original and reply tuples, sent as partial tuples in
 *     CTA_TUPLE_ORIG/CTA_TUPLE_REPLY with a flag word per direction that
 *     says which members count.
 * The C filter checks every term again, so this only ever saves work: a
 * kernel older than an attribute skips attribute types it does not know and
 * dumps more; one built without marks or zones refuses them (EOPNOTSUPP):
 * the dump then asks again without attributes (dump.c), and a flush by mark
 * deletes what a dump finds (handle.c). What the kernel cannot do stays in
 * C: negations, masks and prefixes; zone 0 (the kernel's "no zone filter");
 * IPv6 addresses (the kernel's comparison is inverted and drops the equal
 * one); other protocols' ports and GRE keys (not compared); and ICMP type,
 * code and id (a type without an inverse fails the whole dump with EINVAL).
 * CTA_FILTER needs a family (with none it fails with EOPNOTSUPP): a filter
 * with a protocol and no family is dumped twice, IPv4 then IPv6
 * (ct_filter_split_family).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/netfilter/nfnetlink_conntrack.h>

/* CTA_FILTER_ORIG_FLAGS/REPLY_FLAGS bits: the kernel's CTA_FILTER_F_*,
 * which the UAPI header does not export. */
enum {
	FLAG_IP_SRC = 1u << 0,
	FLAG_IP_DST = 1u << 1,
	FLAG_PROTO_NUM = 1u << 3,
	FLAG_PORT_SRC = 1u << 4,
	FLAG_PORT_DST = 1u << 5,
};

/* One direction's partial tuple: the term chosen for each member. */
struct partial_tuple {
	uint32_t flags;
	const struct ct_value *src, *dst, *sport, *dport;
};

static bool exact_ipv4(const struct ct_value *want)
{
	static const uint8_t ones[4] = { 0xff, 0xff, 0xff, 0xff };

	return want->family == AF_INET && memcmp(want->mask.bits, ones, sizeof(ones)) == 0;
}

static bool is_source(const struct ct_field *f)
{
	switch (f->attr) {
	case ATTR_ORIG_IPV4_SRC:
	case ATTR_REPL_IPV4_SRC:
	case ATTR_ORIG_PORT_SRC:
	case ATTR_REPL_PORT_SRC:
		return true;
	default:
		return false;
	}
}

/*
 * Put a tuple term into its direction's partial tuple. Returns false when
 * the kernel cannot compare it.
 */
static bool add_to_tuple(struct partial_tuple *orig, struct partial_tuple *reply,
			 const struct ct_field *f, const struct ct_value *want, int proto)
{
	struct partial_tuple *t = f->flags & F_REPLY ? reply : orig;
	bool src = is_source(f);

	if (f->kind == K_ADDR && exact_ipv4(want)) {
		*(src ? &t->src : &t->dst) = want;
		t->flags |= src ? FLAG_IP_SRC : FLAG_IP_DST;
		return true;
	}
	if (f->kind == K_PORT && f->scope == S_PORTS && !want->has_mask &&
	    (proto == IPPROTO_TCP || proto == IPPROTO_UDP)) {
		*(src ? &t->sport : &t->dport) = want;
		t->flags |= FLAG_PROTO_NUM | (src ? FLAG_PORT_SRC : FLAG_PORT_DST);
		return true;
	}
	return false;
}

static void put_tuple(struct nlmsghdr *nlh, uint16_t type, const struct partial_tuple *t,
		      int proto)
{
	struct nlattr *tuple = mnl_attr_nest_start(nlh, type), *nest;

	if (t->src || t->dst) {
		nest = mnl_attr_nest_start(nlh, CTA_TUPLE_IP);
		if (t->src)
			mnl_attr_put(nlh, CTA_IP_V4_SRC, sizeof(struct in_addr), &t->src->v.addr);
		if (t->dst)
			mnl_attr_put(nlh, CTA_IP_V4_DST, sizeof(struct in_addr), &t->dst->v.addr);
		mnl_attr_nest_end(nlh, nest);
	}
	if (t->flags & FLAG_PROTO_NUM) {
		nest = mnl_attr_nest_start(nlh, CTA_TUPLE_PROTO);
		mnl_attr_put_u8(nlh, CTA_PROTO_NUM, (uint8_t)proto);
		if (t->sport)
			mnl_attr_put_u16(nlh, CTA_PROTO_SRC_PORT, htons((uint16_t)t->sport->v.num));
		if (t->dport)
			mnl_attr_put_u16(nlh, CTA_PROTO_DST_PORT, htons((uint16_t)t->dport->v.num));
		mnl_attr_nest_end(nlh, nest);
	}
	mnl_attr_nest_end(nlh, tuple);
}

static void put_tuples(struct nlmsghdr *nlh, const struct partial_tuple *orig,
		       const struct partial_tuple *reply, int proto)
{
	struct nlattr *nest;

	if (orig->flags)
		put_tuple(nlh, CTA_TUPLE_ORIG, orig, proto);
	if (reply->flags)
		put_tuple(nlh, CTA_TUPLE_REPLY, reply, proto);
	nest = mnl_attr_nest_start(nlh, CTA_FILTER);
	mnl_attr_put_u32(nlh, CTA_FILTER_ORIG_FLAGS, orig->flags);
	mnl_attr_put_u32(nlh, CTA_FILTER_REPLY_FLAGS, reply->flags);
	mnl_attr_nest_end(nlh, nest);
}

/* The mark term, and for a dump the status term, as request attributes. */
static bool put_masked(struct nlmsghdr *nlh, const struct ct_field *f,
		       const struct ct_value *want, bool dump)
{
	if (f->kind == K_U32 && f->attr == ATTR_MARK) {
		mnl_attr_put_u32(nlh, CTA_MARK, htonl((uint32_t)want->v.num));
		mnl_attr_put_u32(nlh, CTA_MARK_MASK,
				 htonl(want->has_mask ? (uint32_t)want->mask.num : UINT32_MAX));
		return true;
	}
	/* a set's mask holds the flags it names; an empty set matches everything,
	 * and the kernel refuses it */
	if (dump && f->kind == K_STATUS && want->mask.num != 0) {
		mnl_attr_put_u32(nlh, CTA_STATUS, htonl((uint32_t)want->v.num));
		mnl_attr_put_u32(nlh, CTA_STATUS_MASK, htonl((uint32_t)want->mask.num));
		return true;
	}
	return false;
}

/* A zone term as the dump's CTA_ZONE, when none was put yet (one value fits). */
static bool put_zone(struct nlmsghdr *nlh, const struct ct_field *f, const struct ct_value *want,
		     bool *put)
{
	if (f->kind != K_U16 || want->has_mask || want->v.num == 0 || *put)
		return false;
	mnl_attr_put_u16(nlh, CTA_ZONE, htons((uint16_t)want->v.num));
	*put = true;
	return true;
}

/*
 * Add what the kernel can filter to a request on the conntrack table (the
 * family travels in its header) and mark those terms in_kernel. A dump
 * takes everything above; a flush only the mark: the kernel refuses
 * CTA_FILTER there, and one too old for status or zone filters would
 * ignore them and flush everything. Returns whether it added attributes.
 */
bool ct_filter_to_request(struct ct_filter *filter, struct nlmsghdr *nlh, bool dump)
{
	uint32_t bare = nlh->nlmsg_len;
	struct partial_tuple orig = { 0 }, reply = { 0 };
	bool tuples = dump && (filter->family == AF_INET || filter->family == AF_INET6);
	bool zone_put = false;
	int proto = ct_filter_proto(filter);

	for (size_t i = 0; i < filter->nterms; i++) {
		const struct ct_field *f = filter->terms[i].field;
		const struct ct_value *want = &filter->terms[i].want;
		bool *in_kernel = &filter->terms[i].in_kernel;

		if (want->negate)
			continue;
		if (f->kind == K_FAMILY)
			*in_kernel = true;
		else if (f->kind == K_PROTO)
			*in_kernel = tuples;
		else if (put_masked(nlh, f, want, dump) || (dump && put_zone(nlh, f, want, &zone_put)))
			*in_kernel = true;
		else
			*in_kernel = tuples && add_to_tuple(&orig, &reply, f, want, proto);
	}
	if (tuples && proto >= 0)
		orig.flags |= FLAG_PROTO_NUM;
	if (orig.flags || reply.flags)
		put_tuples(nlh, &orig, &reply, proto);
	return nlh->nlmsg_len > bare;
}

/*
 * The families a dump of the conntrack table asks for: this sets
 * filter->family to the first and returns the second (AF_UNSPEC when one
 * dump does). A negated family leaves the other one. A filter that names a
 * protocol but no family asks for IPv4, then for IPv6, each with the tuple
 * terms in CTA_FILTER: each dump walks the whole table in the kernel, but
 * copies out only entries that can match, and a walk costs about a seventh
 * of a full dump (100,000 entries: 28 ms against 210), so two walks pay
 * unless nearly every entry matches. The listing is then IPv4 entries,
 * then IPv6, each family in the kernel's order.
 */
uint8_t ct_filter_split_family(struct ct_filter *filter)
{
	if (filter->family != AF_UNSPEC)
		return AF_UNSPEC;
	for (size_t i = 0; i < filter->nterms; i++) {
		const struct ct_value *want = &filter->terms[i].want;

		if (filter->terms[i].field->kind == K_FAMILY && want->negate) {
			filter->family = want->v.num == AF_INET ? AF_INET6 : AF_INET;
			return AF_UNSPEC;
		}
	}
	if (ct_filter_proto(filter) < 0)
		return AF_UNSPEC;
	filter->family = AF_INET;
	return AF_INET6;
}

/* True when the kernel alone can apply the filter to a flush. */
bool ct_filter_kernel_only(const struct ct_filter *filter)
{
	for (size_t i = 0; i < filter->nterms; i++) {
		const struct ct_field *f = filter->terms[i].field;

		if (filter->terms[i].want.negate ||
		    (f->kind != K_FAMILY && !(f->kind == K_U32 && f->attr == ATTR_MARK)))
			return false;
	}
	return !filter->has_predicate;
}
