/*
 * conntrack -L's line, written without printf. libnetfilter_conntrack's
 * printer formats every field through snprintf, which is most of what a
 * long listing costs once the kernel has sent it; this writes the same
 * bytes directly. It covers the entries a table holds (IPv4/IPv6, the
 * protocols of conntrack, states, zones, counters, status, marks, ids,
 * delta-time, helpers) and declines the rest, which the caller prints with
 * libnetfilter_conntrack: ICMP of a parsed entry (the reply's type, code
 * and id are in no attribute libnfct exports; an indexed entry has them
 * from its message), DCCP (whose state names libnfct takes from the SCTP
 * table), security contexts, labels and the ktimestamp dates.
 * It reads an entry through entry.c's accessors: a parsed nf_conntrack, or
 * the attributes of the message it came in (h:write, ev:writer). Its
 * writers of text, numbers and addresses serve json_print.c too.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/*
 * A number in decimal, written in place two digits at a time: the printers
 * write several per line, and this was their largest cost once libnfct's
 * parse was gone.
 */
void ct_put_u64(struct ct_line *l, uint64_t v)
{
	static const char pairs[] =
		"0001020304050607080910111213141516171819"
		"2021222324252627282930313233343536373839"
		"4041424344454647484950515253545556575859"
		"6061626364656667686970717273747576777879"
		"8081828384858687888990919293949596979899";
	unsigned int n = 1;
	char *d;

	for (uint64_t ten = 10; n < 20 && v >= ten; ten *= 10)
		n++;
	if (l->full || (size_t)(l->end - l->p) < n) {
		l->full = true;
		return;
	}
	l->p += n;
	d = l->p;
	for (; v >= 100; v /= 100) {
		d -= 2;
		memcpy(d, pairs + 2 * (v % 100), 2);
	}
	if (v >= 10)
		memcpy(d - 2, pairs + 2 * v, 2);
	else
		d[-1] = (char)('0' + v);
}

/* "name=" then the number, then a blank */
static void put_field(struct ct_line *l, const char *name, uint64_t v)
{
	ct_put_str(l, name);
	ct_put_u64(l, v);
	ct_put(l, " ", 1);
}

/* printf's "%-8s %u ": the name padded to 8, its number */
static void put_name_num(struct ct_line *l, const char *name, unsigned int num)
{
	size_t n = strlen(name);

	ct_put(l, name, n);
	ct_put(l, "        ", n < 8 ? 8 - n : 0);
	ct_put(l, " ", 1);
	ct_put_u64(l, num);
	ct_put(l, " ", 1);
}

/* printf's "%x" */
void ct_put_hex(struct ct_line *l, unsigned int v)
{
	static const char hex[] = "0123456789abcdef";
	char digits[8], *d = digits + sizeof(digits);

	do {
		*--d = hex[v & 15];
		v >>= 4;
	} while (v);
	ct_put(l, d, (size_t)(digits + sizeof(digits) - d));
}

static void put_hex_field(struct ct_line *l, const char *name, unsigned int v)
{
	ct_put_str(l, name);
	ct_put_hex(l, v);
	ct_put(l, " ", 1);
}

static void put_ipv4(struct ct_line *l, const uint8_t *a)
{
	for (int i = 0; i < 4; i++) {
		if (i)
			ct_put(l, ".", 1);
		ct_put_u64(l, a[i]);
	}
}

/*
 * An IPv6 address as glibc's inet_ntop writes it: the longest run of two or
 * more zero words (the first of equal ones) as "::", lower-case hex, and
 * the last 32 bits as IPv4 for ::a.b.c.d and ::ffff:a.b.c.d.
 */
static void put_ipv6(struct ct_line *l, const uint8_t *a)
{
	unsigned int words[8];
	int best = -1, best_len = 0;

	for (int i = 0; i < 8; i++)
		words[i] = (unsigned int)(a[2 * i] << 8 | a[2 * i + 1]);
	for (int i = 0; i < 8;) {
		int run = 0;

		while (i + run < 8 && words[i + run] == 0)
			run++;
		if (run >= 2 && run > best_len) {
			best = i;
			best_len = run;
		}
		i += run ? run : 1;
	}
	for (int i = 0; i < 8; i++) {
		if (i == best) {
			ct_put(l, "::", i == 0 ? 2 : 1);
			i += best_len - 1;
			continue;
		}
		if (i == 6 && best == 0 && (best_len == 6 || (best_len == 5 && words[5] == 0xffff))) {
			put_ipv4(l, a + 12);
			return;
		}
		ct_put_hex(l, words[i]);
		if (i < 7)
			ct_put(l, ":", 1);
	}
}

/* An address, 16 bytes when ipv6 else 4, as inet_ntop writes it. */
void ct_put_addr(struct ct_line *l, bool ipv6, const uint8_t *a)
{
	if (ipv6)
		put_ipv6(l, a);
	else
		put_ipv4(l, a);
}

/*
 * inet_ntop's text of an address without printf, which glibc's inet_ntop
 * uses for IPv4: flow fields read addresses by the million. buf must hold
 * INET6_ADDRSTRLEN bytes.
 */
void ct_print_addr(char *buf, bool ipv6, const void *addr)
{
	struct ct_line l = { buf, buf + INET6_ADDRSTRLEN - 1, false };

	ct_put_addr(&l, ipv6, addr);
	*l.p = '\0';
}

/* The attribute of a tuple's address: of the reply or original direction, its destination or source. */
enum nf_conntrack_attr ct_addr_attr(bool ipv6, bool reply, bool dst)
{
	static const enum nf_conntrack_attr attrs[2][2][2] = {
		{ { ATTR_ORIG_IPV4_SRC, ATTR_ORIG_IPV4_DST }, { ATTR_REPL_IPV4_SRC, ATTR_REPL_IPV4_DST } },
		{ { ATTR_ORIG_IPV6_SRC, ATTR_ORIG_IPV6_DST }, { ATTR_REPL_IPV6_SRC, ATTR_REPL_IPV6_DST } },
	};

	return attrs[ipv6][reply][dst];
}

static void put_addresses(struct ct_line *l, const struct ct_entry *e, bool reply)
{
	bool v6 = ct_entry_u8(e, ATTR_ORIG_L3PROTO) == AF_INET6;

	ct_put_str(l, "src=");
	ct_put_addr(l, v6, ct_entry_ptr(e, ct_addr_attr(v6, reply, false)));
	ct_put_str(l, " dst=");
	ct_put_addr(l, v6, ct_entry_ptr(e, ct_addr_attr(v6, reply, true)));
	ct_put(l, " ", 1);
}

/* What the printers show of a protocol's layer-4 tuple: ports, GRE keys or nothing. */
enum ct_l4 ct_l4_of(uint8_t proto)
{
	switch (proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE:
	case IPPROTO_SCTP:
	case IPPROTO_DCCP:	/* 0 when the kernel tracked it as generic (no ports sent) */
		return CT_L4_PORTS;
	case IPPROTO_GRE:
		return CT_L4_KEYS;
	default:
		return CT_L4_NONE;
	}
}

/* Whether a tuple has the ports (or keys) its protocol prints. */
static bool ports_known(const struct ct_entry *e, bool reply)
{
	return ct_l4_of(ct_entry_u8(e, reply ? ATTR_REPL_L4PROTO : ATTR_ORIG_L4PROTO)) == CT_L4_NONE ||
	       (ct_entry_has(e, reply ? ATTR_REPL_PORT_SRC : ATTR_ORIG_PORT_SRC) &&
		ct_entry_has(e, reply ? ATTR_REPL_PORT_DST : ATTR_ORIG_PORT_DST));
}

/* The layer-4 part of a tuple: ports, GRE keys or ICMP fields. */
static void put_l4(struct ct_line *l, const struct ct_entry *e, uint8_t proto, bool reply)
{
	uint16_t sport = ntohs(ct_entry_u16(e, reply ? ATTR_REPL_PORT_SRC : ATTR_ORIG_PORT_SRC));
	uint16_t dport = ntohs(ct_entry_u16(e, reply ? ATTR_REPL_PORT_DST : ATTR_ORIG_PORT_DST));

	if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
		struct ct_icmp icmp = ct_entry_icmp(e, reply);

		put_field(l, "type=", icmp.type);
		put_field(l, "code=", icmp.code);
		put_field(l, "id=", icmp.id);
	} else if (ct_l4_of(proto) == CT_L4_PORTS) {
		put_field(l, "sport=", sport);
		put_field(l, "dport=", dport);
	} else if (ct_l4_of(proto) == CT_L4_KEYS) {
		put_hex_field(l, "srckey=0x", sport);
		put_hex_field(l, "dstkey=0x", dport);
	}
}

static void put_counters(struct ct_line *l, const struct ct_entry *e, bool reply)
{
	enum nf_conntrack_attr packets = reply ? ATTR_REPL_COUNTER_PACKETS : ATTR_ORIG_COUNTER_PACKETS;
	enum nf_conntrack_attr bytes = reply ? ATTR_REPL_COUNTER_BYTES : ATTR_ORIG_COUNTER_BYTES;

	if (ct_entry_has(e, packets) && ct_entry_has(e, bytes)) {
		put_field(l, "packets=", ct_entry_u64(e, packets));
		put_field(l, "bytes=", ct_entry_u64(e, bytes));
	}
}

/* One direction: addresses, layer 4, its zone, its counters. */
static void put_direction(struct ct_line *l, const struct ct_entry *e, uint8_t proto, bool reply)
{
	put_addresses(l, e, reply);
	put_l4(l, e, proto, reply);
	if (ct_entry_has(e, reply ? ATTR_REPL_ZONE : ATTR_ORIG_ZONE))
		put_field(l, reply ? "zone-reply=" : "zone-orig=",
			  ct_entry_u16(e, reply ? ATTR_REPL_ZONE : ATTR_ORIG_ZONE));
	put_counters(l, e, reply);
}

/* The state's name as libnfct's line gives it (the table's first, NONE, when out of it). */
static const char *state_text(const struct ct_entry *e)
{
	int attr = ct_entry_has(e, ATTR_TCP_STATE) ? ATTR_TCP_STATE :
		   ct_entry_has(e, ATTR_SCTP_STATE) ? ATTR_SCTP_STATE : 0;
	const char *name;

	if (!attr)
		return NULL;
	name = ct_state_text(attr, ct_entry_u8(e, (enum nf_conntrack_attr)attr));
	return name ? name : "NONE";
}

/*
 * Whether these printers know entry e: of a family they know, both its
 * tuples with their addresses, and their ports where the protocol has
 * them. A message that left one out parses, and libnfct prints its
 * storage (zeroes, or what an ICMP attribute put there); they decline it
 * rather than read an unset attribute.
 */
bool ct_print_known(const struct ct_entry *e)
{
	uint8_t family = ct_entry_u8(e, ATTR_ORIG_L3PROTO);

	if ((family != AF_INET && family != AF_INET6) ||
	    ct_entry_u8(e, ATTR_REPL_L3PROTO) != family)
		return false;
	for (int i = 0; i < 4; i++)
		if (!ct_entry_has(e, ct_addr_attr(family == AF_INET6, i & 2, i & 1)))
			return false;
	return ports_known(e, false) && ports_known(e, true);
}

/*
 * Whether these printers know an ICMP entry: an indexed one (a parse keeps
 * the reply's ICMP fields in no attribute) whose tuples have no ports
 * (libnfct would print a port's bytes as the type, code and id, which
 * share its storage; only a forged message has them).
 */
static bool icmp_known(const struct ct_entry *e)
{
	return !e->ct &&
	       !ct_entry_has(e, ATTR_ORIG_PORT_SRC) && !ct_entry_has(e, ATTR_ORIG_PORT_DST) &&
	       !ct_entry_has(e, ATTR_REPL_PORT_SRC) && !ct_entry_has(e, ATTR_REPL_PORT_DST);
}

/* What only libnetfilter_conntrack prints (see the top of the file). */
static bool declined(const struct ct_entry *e, unsigned int flags, bool labels)
{
	uint8_t proto = ct_entry_u8(e, ATTR_ORIG_L4PROTO);

	/* libnfct prints each tuple's layer 4 by its own protocol, this line by the
	 * original's: a reply of another protocol only a forged message has */
	return !ct_print_known(e) ||
	       ((proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) && !icmp_known(e)) ||
	       ct_entry_u8(e, ATTR_REPL_L4PROTO) != proto ||
	       ct_entry_has(e, ATTR_DCCP_STATE) || ct_entry_has(e, ATTR_SECCTX) ||
	       (labels && ct_entry_has(e, ATTR_CONNLABELS)) || (flags & NFCT_OF_TIMESTAMP);
}

static void put_status(struct ct_line *l, const struct ct_entry *e)
{
	uint32_t status = ct_entry_u32(e, ATTR_STATUS);

	if (status & IPS_HW_OFFLOAD)
		ct_put_str(l, "[HW_OFFLOAD] ");
	else if (status & IPS_OFFLOAD)
		ct_put_str(l, "[OFFLOAD] ");
	else if (status & IPS_ASSURED)
		ct_put_str(l, "[ASSURED] ");
}

/* The entry's age in seconds, to its end or to now (delta-time). */
uint64_t ct_delta_time(const struct ct_entry *e)
{
	uint64_t start = ct_entry_u64(e, ATTR_TIMESTAMP_START) / 1000000000u;
	uint64_t stop = ct_entry_has(e, ATTR_TIMESTAMP_STOP) ?
			ct_entry_u64(e, ATTR_TIMESTAMP_STOP) / 1000000000u : 0;

	if (stop == 0)
		stop = (uint64_t)time(NULL);
	return stop - start;
}

/*
 * The default (not XML) line of entry e with the event prefix of type and the
 * NFCT_OF_* flags into buf, NUL-terminated; labels says whether the caller
 * wants them named. Returns its length, or -1 when the entry is one this
 * printer declines or the line does not fit.
 */
int ct_print_default(char *buf, size_t size, const struct ct_entry *e, unsigned int type,
		     unsigned int flags, bool labels)
{
	static const char *const prefixes[] = {
		[NFCT_T_NEW] = "    [NEW] ", [NFCT_T_UPDATE] = " [UPDATE] ", [NFCT_T_DESTROY] = "[DESTROY] ",
	};
	struct ct_line l = { buf, buf + size - 1, false };
	uint8_t proto = ct_entry_u8(e, ATTR_ORIG_L4PROTO);
	const char *name = ct_proto_name(proto), *state;

	if (size == 0 || declined(e, flags, labels))
		return -1;
	if (type < sizeof(prefixes) / sizeof(prefixes[0]) && prefixes[type])
		ct_put_str(&l, prefixes[type]);
	if (flags & NFCT_OF_SHOW_LAYER3)
		put_name_num(&l, ct_entry_u8(e, ATTR_ORIG_L3PROTO) == AF_INET ? "ipv4" : "ipv6",
			     ct_entry_u8(e, ATTR_ORIG_L3PROTO));
	put_name_num(&l, name ? name : "unknown", proto);
	if (ct_entry_has(e, ATTR_TIMEOUT))
		put_field(&l, "", ct_entry_u32(e, ATTR_TIMEOUT));
	state = state_text(e);
	if (state) {
		ct_put_str(&l, state);
		ct_put(&l, " ", 1);
	}
	put_direction(&l, e, proto, false);
	if (ct_entry_has(e, ATTR_STATUS) && !(ct_entry_u32(e, ATTR_STATUS) & IPS_SEEN_REPLY))
		ct_put_str(&l, "[UNREPLIED] ");
	put_direction(&l, e, proto, true);
	if (ct_entry_has(e, ATTR_STATUS))
		put_status(&l, e);
	if (ct_entry_has(e, ATTR_MARK))
		put_field(&l, "mark=", ct_entry_u32(e, ATTR_MARK));
	if (ct_entry_has(e, ATTR_SECMARK))
		put_field(&l, "secmark=", ct_entry_u32(e, ATTR_SECMARK));
	if (ct_entry_has(e, ATTR_ZONE))
		put_field(&l, "zone=", ct_entry_u16(e, ATTR_ZONE));
	if (ct_entry_has(e, ATTR_TIMESTAMP_START))
		put_field(&l, "delta-time=", ct_delta_time(e));
	if (ct_entry_has(e, ATTR_HELPER_NAME)) {
		ct_put_str(&l, "helper=");
		ct_put_str(&l, ct_entry_ptr(e, ATTR_HELPER_NAME));
		ct_put(&l, " ", 1);
	}
	if (ct_entry_has(e, ATTR_USE))
		put_field(&l, "use=", ct_entry_u32(e, ATTR_USE));
	if ((flags & NFCT_OF_ID) && ct_entry_has(e, ATTR_ID))
		put_field(&l, "id=", ct_entry_u32(e, ATTR_ID));
	if (l.full)
		return -1;
	if (l.p > buf)
		l.p--;	/* the last blank */
	*l.p = '\0';
	return (int)(l.p - buf);
}
