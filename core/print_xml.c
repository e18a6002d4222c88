/*
 * conntrack -L -o xml's <flow> element, written without printf, as
 * print.c writes the default line: the same bytes as libnetfilter_conntrack
 * 1.0.9's XML printer for the entries a table holds (IPv4/IPv6; TCP, UDP,
 * UDPlite, SCTP, DCCP without state, GRE, ICMP and other protocols; counters, marks, zones,
 * ids, status, delta-time). It declines, to libnfct, what its XML differs
 * on or was never checked against: DCCP states, SCTP states past
 * SHUTDOWN_ACK_SENT (libnfct names SCTP states from the TCP table, by a
 * bound of its own), directional zones, helpers, labels, security
 * contexts, entries that ended (a stop time: libnfct rounds their age
 * another way), and the timestamp and time flags.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <arpa/inet.h>

static void put_tag(struct ct_line *l, const char *open, const char *name)
{
	ct_put_str(l, open);
	ct_put_str(l, name);
	ct_put(l, ">", 1);
}

/* <name>number</name> */
static void put_element(struct ct_line *l, const char *name, uint64_t v)
{
	put_tag(l, "<", name);
	ct_put_u64(l, v);
	put_tag(l, "</", name);
}

/* <name>0xhex</name>, for GRE keys */
static void put_hex_element(struct ct_line *l, const char *name, unsigned int v)
{
	put_tag(l, "<", name);
	ct_put(l, "0x", 2);
	ct_put_hex(l, v);
	put_tag(l, "</", name);
}

/* protonum="N" protoname="NAME"> */
static void put_protocol(struct ct_line *l, unsigned int num, const char *name)
{
	ct_put_str(l, " protonum=\"");
	ct_put_u64(l, num);
	ct_put_str(l, "\" protoname=\"");
	ct_put_str(l, name);
	ct_put(l, "\">", 2);
}

/* One direction's <meta>: addresses, ports or keys, counters. */
static void put_tuple(struct ct_line *l, const struct ct_entry *e, bool reply)
{
	uint8_t family = ct_entry_u8(e, reply ? ATTR_REPL_L3PROTO : ATTR_ORIG_L3PROTO);
	uint8_t proto = ct_entry_u8(e, reply ? ATTR_REPL_L4PROTO : ATTR_ORIG_L4PROTO);
	bool v6 = family == AF_INET6;
	const char *name = ct_proto_name(proto);
	uint16_t sport = ntohs(ct_entry_u16(e, reply ? ATTR_REPL_PORT_SRC : ATTR_ORIG_PORT_SRC));
	uint16_t dport = ntohs(ct_entry_u16(e, reply ? ATTR_REPL_PORT_DST : ATTR_ORIG_PORT_DST));

	ct_put_str(l, reply ? "<meta direction=\"reply\"><layer3" : "<meta direction=\"original\"><layer3");
	put_protocol(l, family, v6 ? "ipv6" : "ipv4");
	ct_put_str(l, "<src>");
	ct_put_addr(l, v6, ct_entry_ptr(e, ct_addr_attr(v6, reply, false)));
	ct_put_str(l, "</src><dst>");
	ct_put_addr(l, v6, ct_entry_ptr(e, ct_addr_attr(v6, reply, true)));
	ct_put_str(l, "</dst></layer3><layer4");
	put_protocol(l, proto, name ? name : "unknown");
	if (ct_l4_of(proto) == CT_L4_PORTS) {
		put_element(l, "sport", sport);
		put_element(l, "dport", dport);
	} else if (ct_l4_of(proto) == CT_L4_KEYS) {
		put_hex_element(l, "srckey", sport);
		put_hex_element(l, "dstkey", dport);
	}
	ct_put_str(l, "</layer4>");
	/* libnfct asks for the original counters, for both directions */
	if (ct_entry_has(e, ATTR_ORIG_COUNTER_PACKETS) && ct_entry_has(e, ATTR_ORIG_COUNTER_BYTES)) {
		ct_put_str(l, "<counters>");
		put_element(l, "packets",
			    ct_entry_u64(e, reply ? ATTR_REPL_COUNTER_PACKETS : ATTR_ORIG_COUNTER_PACKETS));
		put_element(l, "bytes",
			    ct_entry_u64(e, reply ? ATTR_REPL_COUNTER_BYTES : ATTR_ORIG_COUNTER_BYTES));
		ct_put_str(l, "</counters>");
	}
	ct_put_str(l, "</meta>");
}

#define SCTP_XML_STATES 8	/* NONE to SHUTDOWN_ACK_SENT: past them, libnfct is declined */

/* The independent <meta>: state, timeout, mark, zone, use, id, status, age. */
static void put_independent(struct ct_line *l, const struct ct_entry *e)
{
	static const enum nf_conntrack_attr any[] = {
		ATTR_TCP_STATE, ATTR_SCTP_STATE, ATTR_TIMEOUT, ATTR_MARK, ATTR_SECMARK, ATTR_ZONE,
		ATTR_USE, ATTR_STATUS, ATTR_ID, ATTR_TIMESTAMP_START,
	};
	static const struct { enum nf_conntrack_attr attr; const char *name; bool u16; } numbers[] = {
		{ ATTR_TIMEOUT, "timeout", false }, { ATTR_MARK, "mark", false },
		{ ATTR_SECMARK, "secmark", false }, { ATTR_ZONE, "zone", true },
		{ ATTR_USE, "use", false }, { ATTR_ID, "id", false },
	};
	bool present = false;

	for (size_t i = 0; i < sizeof(any) / sizeof(any[0]); i++)
		present = present || ct_entry_has(e, any[i]);
	if (!present)
		return;
	ct_put_str(l, "<meta direction=\"independent\">");
	if (ct_entry_has(e, ATTR_TCP_STATE) || ct_entry_has(e, ATTR_SCTP_STATE)) {
		/* libnfct's XML names SCTP states from the TCP table too */
		const char *name = ct_state_text(ATTR_TCP_STATE,
			ct_entry_u8(e, ct_entry_has(e, ATTR_TCP_STATE) ? ATTR_TCP_STATE : ATTR_SCTP_STATE));

		ct_put_str(l, "<state>");
		ct_put_str(l, name ? name : "NONE");
		ct_put_str(l, "</state>");
	}
	for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++)
		if (ct_entry_has(e, numbers[i].attr))
			put_element(l, numbers[i].name,
				    numbers[i].u16 ? ct_entry_u16(e, numbers[i].attr) :
						     ct_entry_u32(e, numbers[i].attr));
	if (ct_entry_has(e, ATTR_STATUS)) {
		uint32_t status = ct_entry_u32(e, ATTR_STATUS);

		if (status & IPS_ASSURED)
			ct_put_str(l, "<assured/>");
		if (!(status & IPS_SEEN_REPLY))
			ct_put_str(l, "<unreplied/>");
	}
	if (ct_entry_has(e, ATTR_TIMESTAMP_START))
		put_element(l, "deltatime", ct_delta_time(e));
	ct_put_str(l, "</meta>");
}

/* What only libnetfilter_conntrack prints (see the top of the file). */
static bool declined(const struct ct_entry *e, unsigned int flags)
{
	static const enum nf_conntrack_attr unchecked[] = {
		ATTR_DCCP_STATE, ATTR_ORIG_ZONE, ATTR_REPL_ZONE, ATTR_HELPER_NAME, ATTR_CONNLABELS,
		ATTR_SECCTX, ATTR_TIMESTAMP_STOP,
	};
	if (!ct_print_known(e) || (flags & (NFCT_OF_TIMESTAMP | NFCT_OF_TIME)))
		return true;
	if (ct_entry_has(e, ATTR_SCTP_STATE) && ct_entry_u8(e, ATTR_SCTP_STATE) >= SCTP_XML_STATES)
		return true;
	for (size_t i = 0; i < sizeof(unchecked) / sizeof(unchecked[0]); i++)
		if (ct_entry_has(e, unchecked[i]))
			return true;
	return false;
}

/*
 * The <flow> of entry e (an event's type in its attribute) into buf,
 * NUL-terminated. Returns its length, or -1 when the entry is one this
 * printer declines or the element does not fit.
 */
int ct_print_xml(char *buf, size_t size, const struct ct_entry *e, unsigned int type,
		 unsigned int flags)
{
	static const char *const starts[] = {
		[NFCT_T_NEW] = "<flow type=\"new\">", [NFCT_T_UPDATE] = "<flow type=\"update\">",
		[NFCT_T_DESTROY] = "<flow type=\"destroy\">",
	};
	struct ct_line l = { buf, buf + size - 1, false };

	if (size == 0 || declined(e, flags))
		return -1;
	ct_put_str(&l, type < sizeof(starts) / sizeof(starts[0]) && starts[type] ? starts[type] :
										  "<flow>");
	put_tuple(&l, e, false);
	put_tuple(&l, e, true);
	put_independent(&l, e);
	ct_put_str(&l, "</flow>");
	if (l.full)
		return -1;
	*l.p = '\0';
	return (int)(l.p - buf);
}
