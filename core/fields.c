/*
 * The one table of flow attributes. Reading a flow, building a request,
 * validating a filter and listing the filter keys all walk ct_fields[], so
 * a field added here is readable, writable and filterable at once.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define R  F_READ
#define FI F_FILTER
#define T  F_TUPLE
#define C  F_CREATE
#define CH F_CHANGE
#define RP F_REPLY

const struct ct_field ct_fields[] = {
	[CT_F_FAMILY] = { "family", K_FAMILY, S_ANY, ATTR_ORIG_L3PROTO, 0, R | FI | T | C,
	  "address family: \"ipv4\" or \"ipv6\"" },
	[CT_F_PROTO] = { "proto", K_PROTO, S_ANY, ATTR_ORIG_L4PROTO, 0, R | FI | T | C,
	  "layer-4 protocol: tcp, udp, udplite, sctp, dccp, gre, icmp, icmpv6, or a number" },
	[CT_F_SRC] = { "src", K_ADDR, S_ANY, ATTR_ORIG_IPV4_SRC, ATTR_ORIG_IPV6_SRC, R | FI | T | C,
	  "original source address (a CIDR prefix when filtering)" },
	[CT_F_DST] = { "dst", K_ADDR, S_ANY, ATTR_ORIG_IPV4_DST, ATTR_ORIG_IPV6_DST, R | FI | T | C,
	  "original destination address" },
	[CT_F_SPORT] = { "sport", K_PORT, S_PORTS, ATTR_ORIG_PORT_SRC, 0, R | FI | T | C,
	  "original source port (tcp, udp, udplite, sctp, dccp)" },
	[CT_F_DPORT] = { "dport", K_PORT, S_PORTS, ATTR_ORIG_PORT_DST, 0, R | FI | T | C,
	  "original destination port" },
	[CT_F_SRCKEY] = { "srckey", K_PORT, S_GRE, ATTR_ORIG_PORT_SRC, 0, R | FI | T | C,
	  "original GRE source key" },
	[CT_F_DSTKEY] = { "dstkey", K_PORT, S_GRE, ATTR_ORIG_PORT_DST, 0, R | FI | T | C,
	  "original GRE destination key" },
	[CT_F_ICMP_TYPE] = { "icmp_type", K_U8, S_ICMP, ATTR_ICMP_TYPE, 0, R | FI | T | C,
	  "ICMP or ICMPv6 type of the original direction" },
	[CT_F_ICMP_CODE] = { "icmp_code", K_U8, S_ICMP, ATTR_ICMP_CODE, 0, R | FI | T | C,
	  "ICMP or ICMPv6 code" },
	[CT_F_ICMP_ID] = { "icmp_id", K_PORT, S_ICMP, ATTR_ICMP_ID, 0, R | FI | T | C,
	  "ICMP or ICMPv6 query id" },
	[CT_F_REPLY_SRC] = { "reply_src", K_ADDR, S_ANY, ATTR_REPL_IPV4_SRC, ATTR_REPL_IPV6_SRC,
	  R | FI | T | C | RP,
	  "reply source address (differs from dst when destination-NATed)" },
	[CT_F_REPLY_DST] = { "reply_dst", K_ADDR, S_ANY, ATTR_REPL_IPV4_DST, ATTR_REPL_IPV6_DST,
	  R | FI | T | C | RP,
	  "reply destination address (differs from src when source-NATed)" },
	[CT_F_REPLY_SPORT] = { "reply_sport", K_PORT, S_PORTS, ATTR_REPL_PORT_SRC, 0, R | FI | T | C | RP,
	  "reply source port" },
	[CT_F_REPLY_DPORT] = { "reply_dport", K_PORT, S_PORTS, ATTR_REPL_PORT_DST, 0, R | FI | T | C | RP,
	  "reply destination port" },
	[CT_F_REPLY_SRCKEY] = { "reply_srckey", K_PORT, S_GRE, ATTR_REPL_PORT_SRC, 0, R | FI | T | C | RP,
	  "reply GRE source key" },
	[CT_F_REPLY_DSTKEY] = { "reply_dstkey", K_PORT, S_GRE, ATTR_REPL_PORT_DST, 0, R | FI | T | C | RP,
	  "reply GRE destination key" },
	[CT_F_REPLY_ICMP_TYPE] = { "reply_icmp_type", K_ICMP_REPLY_TYPE, S_ICMP, ATTR_ICMP_TYPE, 0, R,
	  "ICMP type of the reply direction (the kernel's inverse of icmp_type)" },
	[CT_F_REPLY_ICMP_CODE] = { "reply_icmp_code", K_U8, S_ICMP, ATTR_ICMP_CODE, 0, R,
	  "ICMP code of the reply direction (always icmp_code)" },
	[CT_F_REPLY_ICMP_ID] = { "reply_icmp_id", K_PORT, S_ICMP, ATTR_ICMP_ID, 0, R,
	  "ICMP id of the reply direction (always icmp_id)" },
	[CT_F_STATE] = { "state", K_STATE, S_ANY, ATTR_TCP_STATE, 0, R | FI | C | CH,
	  "protocol state name (tcp, sctp, dccp), e.g. \"ESTABLISHED\"" },
	[CT_F_TIMEOUT] = { "timeout", K_U32, S_ANY, ATTR_TIMEOUT, 0, R | FI | C | CH,
	  "seconds until the entry expires" },
	[CT_F_MARK] = { "mark", K_U32, S_ANY, ATTR_MARK, 0, R | FI | C | CH | F_ZERO,
	  "connection mark; \"V/M\" matches or changes only the bits of M" },
	[CT_F_SECMARK] = { "secmark", K_U32, S_ANY, ATTR_SECMARK, 0, R | FI,
	  "security mark" },
	[CT_F_ZONE] = { "zone", K_U16, S_ANY, ATTR_ZONE, 0, R | FI | T | C | F_ZERO,
	  "conntrack zone of both directions (0 when none)" },
	[CT_F_ORIG_ZONE] = { "orig_zone", K_U16, S_ANY, ATTR_ORIG_ZONE, 0, R | FI | T | C | F_ZERO,
	  "zone of the original direction only" },
	[CT_F_REPLY_ZONE] = { "reply_zone", K_U16, S_ANY, ATTR_REPL_ZONE, 0, R | FI | T | C | RP | F_ZERO,
	  "zone of the reply direction only" },
	[CT_F_STATUS] = { "status", K_STATUS, S_ANY, ATTR_STATUS, 0, R | FI | C | CH,
	  "status flags as a set, e.g. { ASSURED = true, SEEN_REPLY = true }" },
	[CT_F_LABELS] = { "labels", K_LABELS, S_ANY, ATTR_CONNLABELS, 0, R | FI | C | CH,
	  "connection labels as a set of names (connlabel.conf) or bit numbers" },
	[CT_F_LABELS_ADD] = { "labels_add", K_LABELS_ADD, S_ANY, ATTR_CONNLABELS, 0, CH,
	  "update: labels to set, keeping the others" },
	[CT_F_LABELS_DEL] = { "labels_del", K_LABELS_DEL, S_ANY, ATTR_CONNLABELS, 0, CH,
	  "update: labels to clear, keeping the others" },
	[CT_F_PACKETS] = { "packets", K_U64, S_ANY, ATTR_ORIG_COUNTER_PACKETS, 0, R | FI,
	  "packets seen in the original direction (nf_conntrack_acct)" },
	[CT_F_BYTES] = { "bytes", K_U64, S_ANY, ATTR_ORIG_COUNTER_BYTES, 0, R | FI,
	  "bytes seen in the original direction" },
	[CT_F_REPLY_PACKETS] = { "reply_packets", K_U64, S_ANY, ATTR_REPL_COUNTER_PACKETS, 0, R | FI,
	  "packets seen in the reply direction" },
	[CT_F_REPLY_BYTES] = { "reply_bytes", K_U64, S_ANY, ATTR_REPL_COUNTER_BYTES, 0, R | FI,
	  "bytes seen in the reply direction" },
	[CT_F_START] = { "start", K_U64, S_ANY, ATTR_TIMESTAMP_START, 0, R,
	  "creation time, nanoseconds since the epoch (nf_conntrack_timestamp)" },
	[CT_F_STOP] = { "stop", K_U64, S_ANY, ATTR_TIMESTAMP_STOP, 0, R,
	  "destruction time, nanoseconds since the epoch (destroy events only)" },
	[CT_F_ID] = { "id", K_U32, S_ANY, ATTR_ID, 0, R | FI,
	  "the kernel's id of the entry" },
	[CT_F_USE] = { "use", K_U32, S_ANY, ATTR_USE, 0, R,
	  "reference count" },
	[CT_F_HELPER] = { "helper", K_STRING, S_ANY, ATTR_HELPER_NAME, 0, R | FI | C | CH,
	  "name of the attached helper, e.g. \"ftp\"" },
	[CT_F_SECCTX] = { "secctx", K_STRING, S_ANY, ATTR_SECCTX, 0, R | FI,
	  "security context" },
	[CT_F_SNAT] = { "snat", K_NAT, S_ANY, NFCT_GOPT_IS_SNAT, 0, R | FI | C,
	  "true when the entry is source-NATed; create: the NAT target \"ADDR[:PORT]\"" },
	[CT_F_DNAT] = { "dnat", K_NAT, S_ANY, NFCT_GOPT_IS_DNAT, 0, R | FI | C,
	  "true when the entry is destination-NATed; create: \"ADDR[:PORT]\"" },
	[CT_F_TCP_FLAGS] = { "tcp_flags", K_TCP_FLAGS, S_TCP, ATTR_TCP_FLAGS_ORIG, 0, R | FI | C | CH,
	  "TCP window tracking of the original direction, a set such as { BE_LIBERAL = true }" },
	[CT_F_REPLY_TCP_FLAGS] = { "reply_tcp_flags", K_TCP_FLAGS, S_TCP, ATTR_TCP_FLAGS_REPL, 0,
	  R | FI | C | CH | RP,
	  "TCP window tracking of the reply direction" },
	[CT_F_VTAG] = { "vtag", K_U32, S_SCTP, ATTR_SCTP_VTAG_ORIG, 0, R | FI | C | CH,
	  "SCTP verification tag of the original direction" },
	[CT_F_REPLY_VTAG] = { "reply_vtag", K_U32, S_SCTP, ATTR_SCTP_VTAG_REPL, 0, R | FI | C | CH | RP,
	  "SCTP verification tag of the reply direction" },
};
const size_t ct_nfields = sizeof(ct_fields) / sizeof(ct_fields[0]);
_Static_assert(sizeof(ct_fields) / sizeof(ct_fields[0]) == CT_NFIELDS,
	       "every field has its name in enum ct_field_id, in order");
_Static_assert(CT_NFIELDS <= 64, "a spec's bit set (struct ct_spec) holds every field");

#undef R
#undef FI
#undef T
#undef C
#undef CH
#undef RP

/* ---- names ------------------------------------------------------------- */

static const struct {
	const char *name;
	uint8_t num;
} protocols[] = {
	{ "tcp", IPPROTO_TCP }, { "udp", IPPROTO_UDP }, { "udplite", IPPROTO_UDPLITE },
	{ "sctp", IPPROTO_SCTP }, { "dccp", IPPROTO_DCCP }, { "gre", IPPROTO_GRE },
	{ "icmp", IPPROTO_ICMP }, { "icmpv6", IPPROTO_ICMPV6 },
};

static const char *const tcp_states[] = {
	"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
	"LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2", NULL
};
static const char *const sctp_states[] = {
	"NONE", "CLOSED", "COOKIE_WAIT", "COOKIE_ECHOED", "ESTABLISHED", "SHUTDOWN_SENT",
	"SHUTDOWN_RECD", "SHUTDOWN_ACK_SENT", "HEARTBEAT_SENT", "HEARTBEAT_ACKED", NULL
};
static const char *const dccp_states[] = {
	"NONE", "REQUEST", "RESPOND", "PARTOPEN", "OPEN", "CLOSEREQ", "CLOSING",
	"TIMEWAIT", "IGNORE", "INVALID", NULL
};

/* Bit n of the status word is named status_names[n] (linux/netfilter/nf_conntrack_common.h). */
static const char *const status_names[] = {
	"EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED", "SRC_NAT", "DST_NAT",
	"SEQ_ADJUST", "SRC_NAT_DONE", "DST_NAT_DONE", "DYING", "FIXED_TIMEOUT",
	"TEMPLATE", "UNTRACKED", "HELPER", "OFFLOAD", "HW_OFFLOAD", NULL
};

/* Bit n of a TCP direction's flags (IP_CT_TCP_FLAG_*, linux/netfilter/nf_conntrack_tcp.h). */
static const char *const tcp_flag_names[] = {
	"WINDOW_SCALE", "SACK_PERM", "CLOSE_INIT", "BE_LIBERAL", "DATA_UNACKNOWLEDGED",
	"MAXACK_SET", "CHALLENGE_ACK", "SIMULTANEOUS_OPEN", NULL
};

/* The names of the bits of a flag set (status or TCP flags). */
static const char *const *flag_names(const struct ct_field *f)
{
	return f->kind == K_STATUS ? status_names : tcp_flag_names;
}

/* The flag set of field f in entry e, as bits. */
static uint32_t flag_bits(const struct ct_field *f, const struct ct_entry *e)
{
	if (f->kind == K_STATUS)
		return ct_entry_u32(e, ATTR_STATUS);
	return ct_entry_u8(e, (enum nf_conntrack_attr)f->attr);
}

#define LABEL_BITS 128	/* the kernel's label storage: 16 bytes */

int ct_proto_number(const char *name)
{
	for (size_t i = 0; i < sizeof(protocols) / sizeof(protocols[0]); i++)
		if (strcmp(protocols[i].name, name) == 0)
			return protocols[i].num;
	return -1;
}

const char *ct_proto_name(uint8_t num)
{
	for (size_t i = 0; i < sizeof(protocols) / sizeof(protocols[0]); i++)
		if (protocols[i].num == num)
			return protocols[i].name;
	return NULL;
}

static const char *const *state_table(uint8_t proto, int *attr)
{
	switch (proto) {
	case IPPROTO_TCP:  *attr = ATTR_TCP_STATE;  return tcp_states;
	case IPPROTO_SCTP: *attr = ATTR_SCTP_STATE; return sctp_states;
	case IPPROTO_DCCP: *attr = ATTR_DCCP_STATE; return dccp_states;
	default: return NULL;
	}
}

/*
 * The name of state s in the table of state attribute attr (ATTR_TCP_STATE,
 * ATTR_SCTP_STATE or ATTR_DCCP_STATE), as libnetfilter_conntrack names it,
 * or NULL when the table has no such state.
 */
const char *ct_state_text(int attr, uint8_t s)
{
	const char *const *names = attr == ATTR_TCP_STATE  ? tcp_states :
				   attr == ATTR_SCTP_STATE ? sctp_states :
				   attr == ATTR_DCCP_STATE ? dccp_states : NULL;

	for (int i = 0; names && names[i]; i++)
		if (i == s)
			return names[i];
	return NULL;
}

static int name_index(const char *const *names, const char *name)
{
	for (int i = 0; names[i]; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	return -1;
}

/* The number of state name for protocol proto, or -1. */
int ct_state_number(uint8_t proto, const char *name)
{
	int attr;
	const char *const *names = state_table(proto, &attr);

	return names ? name_index(names, name) : -1;
}

/* The kernel's ICMP/ICMPv6 query pairs (nf_conntrack_proto_icmp*.c invert maps). */
static int icmp_reply_type(uint8_t family, uint8_t type)
{
	static const uint8_t v4[][2] = { { 8, 0 }, { 0, 8 }, { 13, 14 }, { 14, 13 },
					 { 15, 16 }, { 16, 15 }, { 17, 18 }, { 18, 17 } };
	static const uint8_t v6[][2] = { { 128, 129 }, { 129, 128 }, { 139, 140 },
					 { 140, 139 } };
	const uint8_t (*map)[2] = family == AF_INET6 ? v6 : v4;
	size_t n = family == AF_INET6 ? sizeof(v6) / sizeof(v6[0]) : sizeof(v4) / sizeof(v4[0]);

	for (size_t i = 0; i < n; i++)
		if (map[i][0] == type)
			return map[i][1];
	return type;
}

/* ---- field lookup ------------------------------------------------------- */

/* The registry key of the name -> field index table, by address: a field
 * is looked up on every read, and a key by name costs a string lookup. */
static const char field_index_key = 0;

void ct_fields_open(lua_State *L)
{
	lua_createtable(L, 0, (int)ct_nfields);
	for (size_t i = 0; i < ct_nfields; i++) {
		lua_pushinteger(L, (lua_Integer)i);
		lua_setfield(L, -2, ct_fields[i].name);
	}
	lua_rawsetp(L, LUA_REGISTRYINDEX, &field_index_key);
}

const struct ct_field *ct_field_lookup(lua_State *L, int name_idx)
{
	const struct ct_field *f = NULL;

	if (lua_type(L, name_idx) != LUA_TSTRING)
		return NULL;
	name_idx = lua_absindex(L, name_idx);
	lua_rawgetp(L, LUA_REGISTRYINDEX, &field_index_key);
	lua_pushvalue(L, name_idx);
	if (lua_rawget(L, -2) == LUA_TNUMBER)
		f = &ct_fields[lua_tointeger(L, -1)];
	lua_pop(L, 2);
	return f;
}

/* The field called name (it must exist: for C callers naming fields they know). */
const struct ct_field *ct_field_named(const char *name)
{
	for (size_t i = 0; i < ct_nfields; i++)
		if (strcmp(ct_fields[i].name, name) == 0)
			return &ct_fields[i];
	return NULL;
}

static int arg_error(const struct ct_arg *a, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	lua_pushvfstring(a->L, fmt, ap);
	va_end(ap);
	return luaL_argerror(a->L, a->arg, lua_tostring(a->L, -1));
}

const struct ct_field *ct_field_check(const struct ct_arg *a, int name_idx, unsigned need)
{
	const struct ct_field *f = ct_field_lookup(a->L, name_idx);

	if (!f) {
		if (lua_type(a->L, name_idx) != LUA_TSTRING)
			arg_error(a, "field names must be strings, got %s", luaL_typename(a->L, name_idx));
		arg_error(a, "unknown field '%s'", lua_tostring(a->L, name_idx));
	}
	if (!(f->flags & need))
		arg_error(a, "field '%s' cannot be used here", f->name);
	return f;
}

/* ---- parsing Lua values ------------------------------------------------- */

static uint64_t parse_number(const struct ct_arg *a, const struct ct_field *f, int idx,
			     const char *text, uint64_t max)
{
	lua_State *L = a->L;
	int isnum = 0;
	lua_Integer n;

	if (text) {
		/* lua_stringtonumber accepts decimal and 0x hex, as users write marks */
		if (lua_stringtonumber(L, text) == 0)
			arg_error(a, "field '%s' expects a number, got '%s'", f->name, text);
		n = lua_tointegerx(L, -1, &isnum);
		lua_pop(L, 1);
	} else {
		n = lua_tointegerx(L, idx, &isnum);
	}
	if (!isnum)
		arg_error(a, "field '%s' expects an integer, got %s", f->name,
			  text ? text : luaL_typename(L, idx));
	if (n < 0 || (uint64_t)n > max)
		arg_error(a, "field '%s' is out of range (0..%I)", f->name, (lua_Integer)max);
	return (uint64_t)n;
}

/*
 * The NAT target of a new entry, as conntrack's -n/-g write it: "ADDR",
 * "ADDR:PORT", "[ADDR6]" or "[ADDR6]:PORT" (a bare IPv6 address has no port).
 */
static void parse_nat(const struct ct_arg *a, const struct ct_field *f, int idx,
		      struct ct_value *out)
{
	const char *s = lua_tostring(a->L, idx), *start, *port = NULL, *colon;
	size_t len;

	if (lua_type(a->L, idx) != LUA_TSTRING)
		arg_error(a, "field '%s' expects \"ADDR\" or \"ADDR:PORT\", got %s", f->name,
			  luaL_typename(a->L, idx));
	start = s;
	len = strlen(s);
	colon = strchr(s, ':');
	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (close && (close[1] == '\0' || close[1] == ':')) {
			start = s + 1;
			len = (size_t)(close - start);
			port = close[1] == ':' ? close + 2 : NULL;
		} else {
			arg_error(a, "field '%s': invalid NAT target '%s'", f->name, s);
		}
	} else if (colon && !strchr(colon + 1, ':')) {
		len = (size_t)(colon - s);
		port = colon + 1;
	}
	if (!ct_address_parse(start, len, out))
		arg_error(a, "field '%s': invalid NAT target '%s'", f->name, s);
	if (port) {
		out->port = (uint16_t)parse_number(a, f, idx, port, UINT16_MAX);
		out->has_port = true;
	}
}

/* "V" or "V/M" for a masked u32 (marks), or a plain integer. */
static void parse_masked(const struct ct_arg *a, const struct ct_field *f, int idx,
			 uint64_t max, struct ct_value *out)
{
	const char *s, *slash;
	char head[64];

	if (lua_type(a->L, idx) != LUA_TSTRING) {
		out->v.num = parse_number(a, f, idx, NULL, max);
		return;
	}
	s = lua_tostring(a->L, idx);
	slash = strchr(s, '/');
	if (!slash) {
		out->v.num = parse_number(a, f, idx, s, max);
		return;
	}
	if ((size_t)(slash - s) >= sizeof(head))
		arg_error(a, "field '%s': value too long", f->name);
	memcpy(head, s, (size_t)(slash - s));
	head[slash - s] = '\0';
	out->v.num = parse_number(a, f, idx, head, max);
	out->mask.num = parse_number(a, f, idx, slash + 1, max);
	out->has_mask = true;
}

static void set_prefix(struct ct_value *out, unsigned bits)
{
	memset(&out->mask, 0, sizeof(out->mask));
	for (unsigned i = 0; i < bits; i++)
		out->mask.bits[i / 8] |= (uint8_t)(0x80u >> (i % 8));
	out->has_mask = true;
}

bool ct_address_parse(const char *s, size_t len, struct ct_value *val)
{
	char text[INET6_ADDRSTRLEN];

	if (len >= sizeof(text))
		return false;
	memcpy(text, s, len);
	text[len] = '\0';
	if (inet_pton(AF_INET, text, &val->v.addr) == 1)
		val->family = AF_INET;
	else if (inet_pton(AF_INET6, text, &val->v.addr) == 1)
		val->family = AF_INET6;
	else
		return false;
	return true;
}

static void parse_addr(const struct ct_arg *a, const struct ct_field *f, int idx, bool cidr,
		       struct ct_value *out)
{
	const char *s = lua_tostring(a->L, idx);
	const char *slash;
	unsigned maxbits;

	if (lua_type(a->L, idx) != LUA_TSTRING)
		arg_error(a, "field '%s' expects an address string, got %s", f->name,
			  luaL_typename(a->L, idx));
	slash = strchr(s, '/');
	if (!ct_address_parse(s, slash ? (size_t)(slash - s) : strlen(s), out))
		arg_error(a, "field '%s': invalid address '%s'", f->name, s);
	maxbits = out->family == AF_INET ? 32 : 128;
	if (!slash) {
		set_prefix(out, maxbits);
		return;
	}
	if (!cidr)
		arg_error(a, "field '%s': a prefix length is only allowed in filters", f->name);
	{
		char *end;
		unsigned long bits = strtoul(slash + 1, &end, 10);

		if (slash[1] == '\0' || *end != '\0' || bits > maxbits)
			arg_error(a, "field '%s': invalid prefix length in '%s'", f->name, s);
		set_prefix(out, (unsigned)bits);
	}
}

/* One word of a flag list: "ASSURED" sets the bit, "!ASSURED" requires it clear. */
static void flag_word(const struct ct_arg *a, const struct ct_field *f, const char *word,
		      size_t len, struct ct_value *out)
{
	const char *const *names = flag_names(f);
	bool negate = len > 0 && word[0] == '!';

	if (negate) {
		word++;
		len--;
	}
	for (int bit = 0; names[bit]; bit++) {
		if (strlen(names[bit]) == len && strncmp(names[bit], word, len) == 0) {
			out->mask.num |= 1u << bit;
			if (!negate)
				out->v.num |= 1u << bit;
			return;
		}
	}
	arg_error(a, "field '%s': unknown %s flag '%s'", f->name,
		  f->kind == K_STATUS ? "status" : "TCP", lua_pushlstring(a->L, word, len));
}

/* One label: its bit joins the mask, and the value too when it is wanted. */
static void label_word(const struct ct_arg *a, const struct ct_field *f, int idx,
		       bool wanted, struct ct_value *out)
{
	int bit;

	if (lua_type(a->L, idx) == LUA_TNUMBER) {
		bit = (int)parse_number(a, f, idx, NULL, LABEL_BITS - 1);
	} else {
		const char *name = luaL_tolstring(a->L, idx, NULL);

		struct nfct_labelmap *map = a->labelmap ? ct_labelmap_get(a->L, a->labelmap) : NULL;

		bit = map ? nfct_labelmap_get_bit(map, name) : -1;
		if (bit < 0 || bit >= LABEL_BITS) {
			arg_error(a, "field '%s': unknown label '%s'%s", f->name, name,
				  map ? "" : " (no connlabel.conf loaded)");
			return;
		}
		lua_pop(a->L, 1);
	}
	out->mask.bits[bit / 8] |= (uint8_t)(1u << (bit % 8));
	if (wanted)
		out->v.bits[bit / 8] |= (uint8_t)(1u << (bit % 8));
}

/*
 * Flags (status, TCP flags) and labels are sets. Accepted: "A,B,!C";
 * { "A", "!C" }; { A = true, C = false }; and for flags a raw integer.
 */
static void parse_set(const struct ct_arg *a, const struct ct_field *f, int idx,
		      struct ct_value *out)
{
	lua_State *L = a->L;
	bool flags = f->kind == K_STATUS || f->kind == K_TCP_FLAGS;

	idx = lua_absindex(L, idx);
	if (flags && lua_type(L, idx) == LUA_TNUMBER) {
		out->v.num = out->mask.num = parse_number(a, f, idx, NULL,
							  f->kind == K_STATUS ? UINT32_MAX : UINT8_MAX);
		return;
	}
	if (lua_type(L, idx) == LUA_TSTRING) {
		const char *s = lua_tostring(L, idx);

		while (*s) {
			size_t len = strcspn(s, ",");

			if (len == 0)
				arg_error(a, "field '%s': empty name in '%s'", f->name, lua_tostring(L, idx));
			if (flags) {
				flag_word(a, f, s, len, out);
			} else {
				lua_pushlstring(L, s, len);
				label_word(a, f, -1, true, out);
				lua_pop(L, 1);
			}
			s += len;
			if (*s == ',' && *++s == '\0')
				arg_error(a, "field '%s': empty name in '%s'", f->name, lua_tostring(L, idx));
		}
		return;
	}
	if (lua_type(L, idx) != LUA_TTABLE)
		arg_error(a, "field '%s' expects a string or a table, got %s", f->name,
			  luaL_typename(L, idx));
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		/* array items name members; keyed items say whether the member is wanted */
		bool keyed = lua_type(L, -1) == LUA_TBOOLEAN;
		int name = keyed ? -2 : -1;
		struct ct_value one = { 0 };

		if (flags) {
			size_t len;
			const char *word;

			if (lua_type(L, name) != LUA_TSTRING)
				arg_error(a, "field '%s': flag names must be strings", f->name);
			word = lua_tolstring(L, name, &len);
			flag_word(a, f, word, len, &one);
			out->mask.num |= one.mask.num;
			if (!keyed || lua_toboolean(L, -1))
				out->v.num |= one.v.num;
			else
				out->v.num &= ~one.mask.num;
		} else {
			bool wanted = !keyed || lua_toboolean(L, -1);

			lua_pushvalue(L, name);
			label_word(a, f, -1, wanted, out);
			lua_pop(L, 1);
		}
		lua_pop(L, 1);
	}
	out->has_mask = true;
}

static void parse_value(const struct ct_arg *a, const struct ct_field *f, int idx,
			struct ct_value *out)
{
	lua_State *L = a->L;

	memset(out, 0, sizeof(*out));
	switch (f->kind) {
	case K_FAMILY: {
		const char *s = luaL_tolstring(L, idx, NULL);

		if (strcmp(s, "ipv4") == 0)
			out->v.num = AF_INET;
		else if (strcmp(s, "ipv6") == 0)
			out->v.num = AF_INET6;
		else
			arg_error(a, "field 'family' expects \"ipv4\" or \"ipv6\", got '%s'", s);
		lua_pop(L, 1);
		break;
	}
	case K_PROTO: {
		const char *s = lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : NULL;
		int num = s ? ct_proto_number(s) : -1;

		if (num >= 0)
			out->v.num = (uint64_t)num;
		else if (s && lua_stringtonumber(L, s) == 0)
			arg_error(a, "field 'proto': unknown protocol '%s'", s);
		else {
			if (s)
				lua_pop(L, 1);	/* the number lua_stringtonumber pushed */
			out->v.num = parse_number(a, f, idx, s, UINT8_MAX);
		}
		break;
	}
	case K_ADDR:
		parse_addr(a, f, idx, a->filtering, out);
		break;
	case K_PORT:
	case K_U16:
		out->v.num = parse_number(a, f, idx, NULL, UINT16_MAX);
		break;
	case K_U8:
		out->v.num = parse_number(a, f, idx, NULL, UINT8_MAX);
		break;
	case K_U32:
		parse_masked(a, f, idx, UINT32_MAX, out);
		break;
	case K_U64:
		out->v.num = parse_number(a, f, idx, NULL, INT64_MAX);
		break;
	case K_STRING: {
		size_t len;
		const char *s;

		if (lua_type(L, idx) != LUA_TSTRING)
			arg_error(a, "field '%s' expects a string, got %s", f->name, luaL_typename(L, idx));
		s = lua_tolstring(L, idx, &len);
		if (len >= sizeof(out->str))
			arg_error(a, "field '%s' is too long", f->name);
		memcpy(out->str, s, len + 1);
		break;
	}
	case K_STATE: {
		const char *s = lua_tostring(L, idx);

		if (lua_type(L, idx) != LUA_TSTRING ||
		    (name_index(tcp_states, s) < 0 && name_index(sctp_states, s) < 0 &&
		     name_index(dccp_states, s) < 0))
			arg_error(a, "field 'state': unknown state '%s'", luaL_tolstring(L, idx, NULL));
		strcpy(out->str, s);	/* every state name is far shorter than str */
		break;
	}
	case K_STATUS:
	case K_TCP_FLAGS:
	case K_LABELS:
	case K_LABELS_ADD:
	case K_LABELS_DEL:
		parse_set(a, f, idx, out);
		break;
	case K_NAT:
		if (!a->filtering) {
			parse_nat(a, f, idx, out);
			break;
		}
		if (lua_type(L, idx) != LUA_TBOOLEAN)
			arg_error(a, "field '%s' expects a boolean, got %s", f->name, luaL_typename(L, idx));
		out->v.num = (uint64_t)lua_toboolean(L, idx);
		break;
	case K_ICMP_REPLY_TYPE:
		arg_error(a, "field '%s' cannot be used here", f->name);
		break;
	}
}

/*
 * Parse the value at idx for field f. In a filter, a string value starting
 * with '!' negates the term ("!10.0.0.0/8", "!udp", "!5/0xff"); sets have
 * their own per-member '!'.
 */
void ct_field_parse(const struct ct_arg *a, const struct ct_field *f, int idx,
		    struct ct_value *out)
{
	lua_State *L = a->L;
	const char *s = lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : NULL;

	/* sets take their own "!" (per member) */
	if (!a->filtering || !s || s[0] != '!' || ct_field_is_set(f)) {
		parse_value(a, f, idx, out);
		return;
	}
	lua_pushstring(L, s + 1);
	parse_value(a, f, lua_gettop(L), out);
	lua_pop(L, 1);
	out->negate = true;
}

/* ---- reading an entry --------------------------------------------------- */

/*
 * An entry is a parsed conntrack object or a message's index (entry.c),
 * which answers every field as the parse would, unless it is odd: then
 * the caller reads the parse (ct_entry_parse).
 */

static uint8_t ct_proto(const struct ct_entry *e)
{
	return ct_entry_u8(e, ATTR_ORIG_L4PROTO);
}

static uint8_t ct_family(const struct ct_entry *e)
{
	return ct_entry_u8(e, ATTR_ORIG_L3PROTO);
}

bool ct_field_applies(const struct ct_field *f, const struct ct_entry *e)
{
	uint8_t p;

	switch (f->scope) {
	case S_ANY:
		return true;	/* most fields: libnfct is not even asked for the protocol */
	case S_GRE:
		return ct_proto(e) == IPPROTO_GRE;
	case S_ICMP:
		p = ct_proto(e);
		return p == IPPROTO_ICMP || p == IPPROTO_ICMPV6;
	case S_SCTP:
		return ct_proto(e) == IPPROTO_SCTP;
	case S_TCP:
		return ct_proto(e) == IPPROTO_TCP;
	case S_PORTS:
		return ct_l4_of(ct_proto(e)) == CT_L4_PORTS;
	}
	return false;
}

/* Whether the values of field f are sets (read as { NAME = true, ... }). */
bool ct_field_is_set(const struct ct_field *f)
{
	switch (f->kind) {
	case K_STATUS:
	case K_TCP_FLAGS:
	case K_LABELS:
	case K_LABELS_ADD:
	case K_LABELS_DEL:
		return true;
	default:
		return false;
	}
}

/* The attribute that holds field f in e (addresses and states depend on e). */
static int attr_of(const struct ct_field *f, const struct ct_entry *e)
{
	int attr = f->attr;

	if (f->kind == K_ADDR && ct_family(e) == AF_INET6)
		return f->attr6;
	if (f->kind == K_STATE && !state_table(ct_proto(e), &attr))
		return -1;
	return attr;
}

bool ct_field_present(const struct ct_field *f, const struct ct_entry *e)
{
	int attr;

	if (!ct_field_applies(f, e))
		return false;
	if (f->flags & F_ZERO)
		return true;
	if (f->kind == K_NAT)
		return ct_entry_has(e, ATTR_REPL_L3PROTO);
	attr = attr_of(f, e);
	return attr >= 0 && ct_entry_has(e, (enum nf_conntrack_attr)attr);
}

static uint64_t get_number(const struct ct_field *f, const struct ct_entry *e)
{
	enum nf_conntrack_attr attr = (enum nf_conntrack_attr)f->attr;

	if (!ct_entry_has(e, attr))
		return 0;
	switch (f->kind) {
	case K_PORT: return ntohs(ct_entry_u16(e, attr));
	case K_U8:   return ct_entry_u8(e, attr);
	case K_U16:  return ct_entry_u16(e, attr);
	case K_U64:  return ct_entry_u64(e, attr);
	default:     return ct_entry_u32(e, attr);
	}
}

static const char *state_name(const struct ct_entry *e)
{
	int attr;
	const char *name;

	if (!state_table(ct_proto(e), &attr))
		return NULL;
	name = ct_state_text(attr, ct_entry_u8(e, (enum nf_conntrack_attr)attr));
	return name ? name : "UNKNOWN";
}

/* One past the highest label bit l can hold: libnfct's bitmask has whole
 * 32-bit words, the kernel's bytes rounded up to them. */
unsigned int ct_labels_bits(const struct ct_labels *l)
{
	return l->mask ? nfct_bitmask_maxbit(l->mask) + 1 : (unsigned int)(l->len + 3) / 4 * 32;
}

/* Whether label bit is set: the kernel's bytes are read as libnfct reads
 * them, 32-bit words in the host's order. */
bool ct_labels_test(const struct ct_labels *l, unsigned int bit)
{
	size_t at = bit / 32 * 4;
	uint32_t word = 0;

	if (bit >= ct_labels_bits(l))
		return false;
	if (l->mask)
		return nfct_bitmask_test_bit(l->mask, bit);
	memcpy(&word, l->bytes + at, l->len - at < sizeof(word) ? l->len - at : sizeof(word));
	return word & (1u << (bit % 32));
}

/* The labels of e, however it is read. */
struct ct_labels ct_entry_labels(const struct ct_entry *e)
{
	struct ct_labels l = { NULL, NULL, 0 };

	if (e->ct)
		l.mask = nfct_get_attr(e->ct, ATTR_CONNLABELS);
	else
		l.bytes = ct_entry_ptr(e, ATTR_CONNLABELS), l.len = ct_entry_len(e, ATTR_CONNLABELS);
	return l;
}

static void push_labels(lua_State *L, const struct ct_labels *l, struct nfct_labelmap *map)
{
	unsigned int bits = ct_labels_bits(l);

	lua_newtable(L);
	for (unsigned int bit = 0; bit < bits; bit++) {
		const char *name;

		if (!ct_labels_test(l, bit))
			continue;
		name = ct_label_name(map, bit);
		if (name)
			lua_pushstring(L, name);
		else
			lua_pushinteger(L, bit);
		lua_pushboolean(L, 1);
		lua_rawset(L, -3);
	}
}

/* An address of e as libnfct stores it: 16 bytes, an IPv4 one in the first
 * 4, zeros when absent. pair: its IPv4 and IPv6 attributes. */
static void stored_addr(const struct ct_entry *e, const enum nf_conntrack_attr pair[2],
			uint8_t out[16])
{
	memset(out, 0, 16);
	if (ct_entry_has(e, pair[0]))
		memcpy(out, ct_entry_ptr(e, pair[0]), 4);
	else if (ct_entry_has(e, pair[1]))
		memcpy(out, ct_entry_ptr(e, pair[1]), 16);
}

/*
 * NFCT_GOPT_IS_SNAT (src) or NFCT_GOPT_IS_DNAT of e, as libnfct 1.0.9
 * answers them: the status's NAT_DONE bit (or no status), and the reply
 * address differing from the original one, compared as the original
 * tuple's family says (no family: not NATed).
 */
static bool is_nat(const struct ct_entry *e, bool src)
{
	static const enum nf_conntrack_attr addr[2][2][2] = {	/* [reply][source][ipv6] */
		{ { ATTR_ORIG_IPV4_DST, ATTR_ORIG_IPV6_DST }, { ATTR_ORIG_IPV4_SRC, ATTR_ORIG_IPV6_SRC } },
		{ { ATTR_REPL_IPV4_DST, ATTR_REPL_IPV6_DST }, { ATTR_REPL_IPV4_SRC, ATTR_REPL_IPV6_SRC } },
	};
	uint8_t family, orig[16], reply[16];

	if (e->ct)
		return nfct_getobjopt(e->ct, src ? NFCT_GOPT_IS_SNAT : NFCT_GOPT_IS_DNAT) > 0;
	if (ct_entry_has(e, ATTR_STATUS) &&
	    !(ct_entry_u32(e, ATTR_STATUS) & (src ? IPS_SRC_NAT_DONE : IPS_DST_NAT_DONE)))
		return false;
	family = ct_family(e);
	if (family != AF_INET && family != AF_INET6)
		return false;
	/* source NAT: the original source against the reply destination */
	stored_addr(e, addr[0][src], orig);
	stored_addr(e, addr[1][!src], reply);
	return memcmp(orig, reply, family == AF_INET ? 4 : 16) != 0;
}

/* The name of label bit in map, or NULL when it has none (then it is read as its number). */
const char *ct_label_name(struct nfct_labelmap *map, unsigned int bit)
{
	const char *name = map ? nfct_labelmap_get_name(map, bit) : NULL;

	return name && *name ? name : NULL;
}

/*
 * The value of field f, present in e, as the C side of what Lua reads: one
 * reading serves ct_field_push and the JSON printer, so both give the same.
 */
void ct_field_read(const struct ct_field *f, const struct ct_entry *e, struct ct_reading *r)
{
	switch (f->kind) {
	case K_FAMILY:
		r->type = CT_R_STRING;
		r->str = ct_family(e) == AF_INET6 ? "ipv6" : "ipv4";
		break;
	case K_PROTO:
		r->str = ct_proto_name(ct_proto(e));
		r->type = r->str ? CT_R_STRING : CT_R_INTEGER;
		r->num = ct_proto(e);
		break;
	case K_ADDR:
		r->type = CT_R_ADDR;
		r->ipv6 = ct_family(e) == AF_INET6;
		r->addr = ct_entry_ptr(e, (enum nf_conntrack_attr)attr_of(f, e));
		break;
	case K_STRING:
		r->type = CT_R_STRING;
		r->str = ct_entry_ptr(e, (enum nf_conntrack_attr)f->attr);
		break;
	case K_STATE:
		r->type = CT_R_STRING;
		r->str = state_name(e);
		break;
	case K_STATUS:
	case K_TCP_FLAGS:
		r->type = CT_R_FLAGS;
		r->num = flag_bits(f, e);
		r->names = flag_names(f);
		break;
	case K_LABELS:
		r->type = CT_R_LABELS;
		r->labels = ct_entry_labels(e);
		break;
	case K_NAT:
		r->type = CT_R_BOOLEAN;
		r->num = is_nat(e, f->attr == NFCT_GOPT_IS_SNAT);
		break;
	case K_ICMP_REPLY_TYPE:
		r->type = CT_R_INTEGER;
		r->num = icmp_reply_type(ct_family(e), ct_entry_u8(e, ATTR_ICMP_TYPE));
		break;
	default:
		/* a u64 counter above 2^63 reads negative, as lua_Integer does */
		r->type = CT_R_INTEGER;
		r->num = (int64_t)get_number(f, e);
		break;
	}
}

void ct_field_push(lua_State *L, const struct ct_field *f, const struct ct_entry *e,
		   struct nfct_labelmap *labelmap)
{
	struct ct_reading r;

	if (!ct_field_present(f, e)) {
		lua_pushnil(L);
		return;
	}
	ct_field_read(f, e, &r);
	switch (r.type) {
	case CT_R_STRING:
		lua_pushstring(L, r.str);
		break;
	case CT_R_INTEGER:
		lua_pushinteger(L, (lua_Integer)r.num);
		break;
	case CT_R_BOOLEAN:
		lua_pushboolean(L, r.num != 0);
		break;
	case CT_R_ADDR: {
		char text[INET6_ADDRSTRLEN];

		ct_print_addr(text, r.ipv6, r.addr);
		lua_pushstring(L, text);
		break;
	}
	case CT_R_FLAGS:
		lua_newtable(L);
		for (int bit = 0; r.names[bit]; bit++) {
			if (r.num & (1 << bit)) {
				lua_pushboolean(L, 1);
				lua_setfield(L, -2, r.names[bit]);
			}
		}
		break;
	case CT_R_LABELS:
		push_labels(L, &r.labels, labelmap);
		break;
	}
}

/* ---- matching ------------------------------------------------------------ */

static bool bytes_match(const uint8_t *have, const struct ct_value *want, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((have[i] & want->mask.bits[i]) != (want->v.bits[i] & want->mask.bits[i]))
			return false;
	return true;
}

bool ct_field_match(const struct ct_field *f, const struct ct_value *want,
		    const struct ct_entry *e)
{
	if (!ct_field_present(f, e))
		return false;
	switch (f->kind) {
	case K_FAMILY:
		return ct_family(e) == want->v.num;
	case K_PROTO:
		return ct_proto(e) == want->v.num;
	case K_ADDR:
		if (ct_family(e) != want->family)
			return false;
		return bytes_match(ct_entry_ptr(e, (enum nf_conntrack_attr)attr_of(f, e)), want,
				   want->family == AF_INET6 ? 16 : 4);
	case K_STRING:
		return strcmp(ct_entry_ptr(e, (enum nf_conntrack_attr)f->attr), want->str) == 0;
	case K_STATE:
		return strcmp(state_name(e), want->str) == 0;
	case K_STATUS:
	case K_TCP_FLAGS:
		return (flag_bits(f, e) & want->mask.num) == want->v.num;
	case K_LABELS: {
		const struct ct_labels l = ct_entry_labels(e);

		for (unsigned bit = 0; bit < LABEL_BITS; bit++) {
			bool wanted = want->mask.bits[bit / 8] & (1u << (bit % 8));
			bool set = want->v.bits[bit / 8] & (1u << (bit % 8));

			if (wanted && set != ct_labels_test(&l, bit))
				return false;
		}
		return true;
	}
	case K_NAT:
		return is_nat(e, f->attr == NFCT_GOPT_IS_SNAT) == (want->v.num != 0);
	default: {
		uint64_t have = get_number(f, e);

		if (want->has_mask)
			return (have & want->mask.num) == want->v.num;
		return have == want->v.num;
	}
	}
}

/* ---- writing a conntrack object ------------------------------------------ */

/* The bits of a label bitmask attribute of ct into bits (left as they are when unset). */
static void read_label_bits(const struct nf_conntrack *ct, int attr, uint8_t *bits)
{
	const struct nfct_bitmask *b;

	if (nfct_attr_is_set(ct, (enum nf_conntrack_attr)attr) <= 0)
		return;
	b = nfct_get_attr(ct, (enum nf_conntrack_attr)attr);
	for (unsigned bit = 0; bit <= nfct_bitmask_maxbit(b) && bit < LABEL_BITS; bit++)
		if (nfct_bitmask_test_bit(b, bit))
			bits[bit / 8] |= (uint8_t)(1u << (bit % 8));
}

static struct nfct_bitmask *label_bitmask(const uint8_t *bits)
{
	struct nfct_bitmask *b = nfct_bitmask_new(LABEL_BITS - 1);

	if (!b)
		return NULL;
	for (unsigned bit = 0; bit < LABEL_BITS; bit++)
		if (bits[bit / 8] & (1u << (bit % 8)))
			nfct_bitmask_set_bit(b, bit);
	return b;
}

/*
 * Store val into ct. old, when given, is the current entry: masked marks
 * and status keep its other bits (the kernel refuses to clear most status
 * bits, so an update always sends old | new). Returns 0, or an errno value
 * (EINVAL: a state name that the protocol does not have; ENOMEM).
 */
int ct_field_store(const struct ct_field *f, const struct ct_value *val,
		   struct nf_conntrack *ct, const struct nf_conntrack *old)
{
	enum nf_conntrack_attr attr = (enum nf_conntrack_attr)f->attr;

	switch (f->kind) {
	case K_FAMILY:
	case K_PROTO:
	case K_U8:
		nfct_set_attr_u8(ct, attr, (uint8_t)val->v.num);
		if (f->kind != K_U8)	/* the reply tuple repeats the protocol numbers */
			nfct_set_attr_u8(ct, f->kind == K_FAMILY ? ATTR_REPL_L3PROTO : ATTR_REPL_L4PROTO,
					 (uint8_t)val->v.num);
		return 0;
	case K_ADDR:
		nfct_set_attr_u8(ct, ATTR_ORIG_L3PROTO, val->family);
		nfct_set_attr_u8(ct, ATTR_REPL_L3PROTO, val->family);
		nfct_set_attr(ct, (enum nf_conntrack_attr)(val->family == AF_INET6 ? f->attr6 : f->attr),
			      &val->v.addr);
		return 0;
	case K_PORT:
		nfct_set_attr_u16(ct, attr, htons((uint16_t)val->v.num));
		return 0;
	case K_U16:
		nfct_set_attr_u16(ct, attr, (uint16_t)val->v.num);
		return 0;
	case K_U32: {
		uint32_t v = (uint32_t)val->v.num;

		if (val->has_mask)
			v = ((old ? nfct_get_attr_u32(old, attr) : 0) & ~(uint32_t)val->mask.num) |
			    (v & (uint32_t)val->mask.num);
		nfct_set_attr_u32(ct, attr, v);
		return 0;
	}
	case K_U64:
		nfct_set_attr_u64(ct, attr, val->v.num);
		return 0;
	case K_STRING:
		nfct_set_attr(ct, attr, val->str);
		return 0;
	case K_STATE: {
		int state_attr;
		uint8_t proto = nfct_get_attr_u8(old ? old : ct, ATTR_ORIG_L4PROTO);
		int state = ct_state_number(proto, val->str);

		if (state < 0 || !state_table(proto, &state_attr))
			return EINVAL;
		nfct_set_attr_u8(ct, (enum nf_conntrack_attr)state_attr, (uint8_t)state);
		return 0;
	}
	case K_STATUS: {
		uint32_t status = (uint32_t)val->v.num;

		if (old)
			status |= nfct_get_attr_u32(old, ATTR_STATUS) & ~(uint32_t)val->mask.num;
		nfct_set_attr_u32(ct, ATTR_STATUS, status);
		return 0;
	}
	case K_LABELS:
	case K_LABELS_ADD:
	case K_LABELS_DEL: {
		/* labels replaces the whole set (its mask covers every bit); add
		 * and del change only the bits they name. Changes made to this
		 * request before (labels_add with labels_del) are kept. */
		uint8_t bits[LABEL_BITS / 8] = { 0 }, covered[LABEL_BITS / 8] = { 0 };
		struct nfct_bitmask *labels, *mask;

		read_label_bits(ct, ATTR_CONNLABELS, bits);
		read_label_bits(ct, ATTR_CONNLABELS_MASK, covered);
		for (size_t i = 0; i < sizeof(bits); i++) {
			uint8_t named = val->mask.bits[i];

			if (f->kind == K_LABELS) {
				bits[i] = val->v.bits[i];
				covered[i] = 0xff;
			} else {
				bits[i] = f->kind == K_LABELS_ADD ? bits[i] | named : bits[i] & ~named;
				covered[i] |= named;
			}
		}
		labels = label_bitmask(bits);
		mask = label_bitmask(covered);

		if (!labels || !mask) {
			nfct_bitmask_destroy(labels);
			nfct_bitmask_destroy(mask);
			return ENOMEM;
		}
		nfct_set_attr(ct, ATTR_CONNLABELS, labels);	/* ct takes ownership */
		nfct_set_attr(ct, ATTR_CONNLABELS_MASK, mask);
		return 0;
	}
	case K_TCP_FLAGS:
		/* the kernel changes only the bits of the mask */
		nfct_set_attr_u8(ct, attr, (uint8_t)val->v.num);
		nfct_set_attr_u8(ct, attr == ATTR_TCP_FLAGS_ORIG ? ATTR_TCP_MASK_ORIG : ATTR_TCP_MASK_REPL,
				 (uint8_t)val->mask.num);
		return 0;
	case K_NAT: {
		bool snat = f->attr == NFCT_GOPT_IS_SNAT;

		if (val->family == AF_INET6)
			nfct_set_attr(ct, snat ? ATTR_SNAT_IPV6 : ATTR_DNAT_IPV6, &val->v.addr);
		else
			nfct_set_attr_u32(ct, snat ? ATTR_SNAT_IPV4 : ATTR_DNAT_IPV4,
					  val->v.addr.s6_addr32[0]);
		if (val->has_port)
			nfct_set_attr_u16(ct, snat ? ATTR_SNAT_PORT : ATTR_DNAT_PORT,
					  htons(val->port));
		return 0;
	}
	case K_ICMP_REPLY_TYPE:
		break;
	}
	return EINVAL;
}
