/*
 * Private declarations shared by the files of core/. Nothing here is global
 * state: every object lives in a Lua userdata and is reached through it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef CT_H
#define CT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <linux/filter.h>

#include <lua.h>
#include <lauxlib.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>

/*
 * The userdata at idx when its metatable is the one the registry holds at
 * key (an address), else a type error naming tname. For the objects
 * checked once per entry: luaL_checkudata finds the metatable by name, a
 * string lookup each time.
 */
static inline void *ct_checkudata(lua_State *L, int idx, const char *key, const char *tname)
{
	void *p = lua_touserdata(L, idx);
	bool ok = p && lua_getmetatable(L, idx);

	if (ok) {
		lua_rawgetp(L, LUA_REGISTRYINDEX, key);
		ok = lua_rawequal(L, -1, -2);
		lua_pop(L, 2);
	}
	if (!ok)
		luaL_typeerror(L, idx, tname);
	return p;
}

/* Metatable names; luaL_checkudata reports them in type errors. */
#define CT_HANDLE_TYPE   "conntrack.handle"
#define CT_FLOW_TYPE     "conntrack.flow"
#define CT_DUMP_TYPE     "conntrack.dump"
#define CT_LABELMAP_TYPE "conntrack.labelmap"
#define CT_EVENTS_TYPE   "conntrack.events"
#define CT_EXPECT_TYPE   "conntrack.expect"
#define CT_NETNS_TYPE    "conntrack.netns"

/* User values of every object that opens sockets (handles, events): the
 * labelmap its flows share, and the network namespace of its sockets. */
enum { CT_UV_LABELMAP = 1, CT_UV_NETNS = 2 };
#define CT_ERROR_TYPE    "conntrack.error"

#define CT_VERSION "0.1.0"

/* ---- fields.c: the one table of flow attributes ------------------------ */

enum ct_kind {
	K_FAMILY,	/* "ipv4" | "ipv6" */
	K_PROTO,	/* "tcp" ... or a protocol number */
	K_ADDR,		/* address, CIDR when filtering */
	K_PORT,		/* u16 kept in network order by libnetfilter_conntrack */
	K_U8,
	K_U16,
	K_U32,		/* with "V/M" masks when filtering or changing */
	K_U64,
	K_STRING,
	K_STATE,	/* tcp/sctp/dccp state name; attribute chosen by proto */
	K_STATUS,	/* set of IPS_* flag names */
	K_LABELS,	/* set of label names or bit numbers */
	K_LABELS_ADD,	/* labels to set, leaving the others (update only) */
	K_LABELS_DEL,	/* labels to clear, leaving the others (update only) */
	K_NAT,		/* reads and filters as a boolean; create takes the NAT target */
	K_TCP_FLAGS,	/* a set of one direction's TCP window-tracking flags */
	K_ICMP_REPLY_TYPE,	/* derived: the kernel inverts the query type */
};

/* Which protocols a field applies to; a flow of another protocol reads nil. */
enum ct_scope { S_ANY, S_PORTS, S_GRE, S_ICMP, S_SCTP, S_TCP };

enum ct_field_flag {
	F_READ   = 1 << 0,	/* readable from a flow */
	F_FILTER = 1 << 1,	/* usable as a filter key */
	F_TUPLE  = 1 << 2,	/* identifies an entry (get, create) */
	F_CREATE = 1 << 3,	/* may be given to create */
	F_CHANGE = 1 << 4,	/* may be changed by update */
	F_REPLY  = 1 << 5,	/* part of the reply tuple */
	F_ZERO   = 1 << 6,	/* absent means 0 (zones) */
};

struct ct_field {
	const char *name;
	enum ct_kind kind;
	enum ct_scope scope;
	int attr;		/* libnetfilter_conntrack attribute (IPv4 for K_ADDR) */
	int attr6;		/* IPv6 attribute for K_ADDR, else unused */
	unsigned flags;
	const char *doc;
};

/* ct_fields[] by name: ct_fields[CT_F_SPORT] is "sport". */
enum ct_field_id {
	CT_F_FAMILY, CT_F_PROTO, CT_F_SRC, CT_F_DST, CT_F_SPORT, CT_F_DPORT, CT_F_SRCKEY,
	CT_F_DSTKEY, CT_F_ICMP_TYPE, CT_F_ICMP_CODE, CT_F_ICMP_ID, CT_F_REPLY_SRC,
	CT_F_REPLY_DST, CT_F_REPLY_SPORT, CT_F_REPLY_DPORT, CT_F_REPLY_SRCKEY,
	CT_F_REPLY_DSTKEY, CT_F_REPLY_ICMP_TYPE, CT_F_REPLY_ICMP_CODE, CT_F_REPLY_ICMP_ID,
	CT_F_STATE, CT_F_TIMEOUT, CT_F_MARK, CT_F_SECMARK, CT_F_ZONE, CT_F_ORIG_ZONE,
	CT_F_REPLY_ZONE, CT_F_STATUS, CT_F_LABELS, CT_F_LABELS_ADD, CT_F_LABELS_DEL,
	CT_F_PACKETS, CT_F_BYTES, CT_F_REPLY_PACKETS, CT_F_REPLY_BYTES, CT_F_START, CT_F_STOP,
	CT_F_ID, CT_F_USE, CT_F_HELPER, CT_F_SECCTX, CT_F_SNAT, CT_F_DNAT, CT_F_TCP_FLAGS,
	CT_F_REPLY_TCP_FLAGS, CT_F_VTAG, CT_F_REPLY_VTAG,
	CT_NFIELDS
};

/* A parsed value: what a filter compares with, or what a write stores. */
struct ct_value {
	union {
		uint64_t num;
		struct in6_addr addr;	/* IPv4 in the first 4 bytes */
		uint8_t bits[16];	/* label bits */
	} v, mask;
	uint8_t family;		/* of an address value */
	uint16_t port;		/* of a NAT target, when has_port */
	bool has_port;
	bool has_mask;
	bool negate;		/* a filter term that must not match */
	char str[128];
};

extern const struct ct_field ct_fields[];
extern const size_t ct_nfields;

/* Where a parse error is reported: bad argument #arg to the current function. */
struct ct_arg {
	lua_State *L;
	int arg;
	int labelmap;			/* stack index of a conntrack.labelmap, or 0 */
	bool filtering;			/* CIDR prefixes allowed */
};

void ct_fields_open(lua_State *L);
const struct ct_field *ct_field_lookup(lua_State *L, int name_idx);
const struct ct_field *ct_field_named(const char *name);
const struct ct_field *ct_field_check(const struct ct_arg *a, int name_idx, unsigned need);
void ct_field_parse(const struct ct_arg *a, const struct ct_field *f, int idx, struct ct_value *out);
struct ct_entry;
bool ct_field_applies(const struct ct_field *f, const struct ct_entry *e);
bool ct_field_is_set(const struct ct_field *f);
bool ct_field_present(const struct ct_field *f, const struct ct_entry *e);

/* A flow's labels: libnfct's bitmask (a parsed entry's) or the kernel's
 * bytes (an indexed one's). */
struct ct_labels {
	const struct nfct_bitmask *mask;
	const uint8_t *bytes;		/* when mask is NULL */
	size_t len;
};

struct ct_labels ct_entry_labels(const struct ct_entry *e);
unsigned int ct_labels_bits(const struct ct_labels *l);
bool ct_labels_test(const struct ct_labels *l, unsigned int bit);

/* What a present field holds (ct_field_read): how Lua reads it, in C. */
struct ct_reading {
	enum { CT_R_STRING, CT_R_INTEGER, CT_R_BOOLEAN, CT_R_ADDR, CT_R_FLAGS, CT_R_LABELS } type;
	int64_t num;			/* integer, boolean; CT_R_FLAGS: the bits */
	const char *str;		/* CT_R_STRING */
	const void *addr;		/* CT_R_ADDR, IPv4 or (ipv6) IPv6 */
	bool ipv6;
	const char *const *names;	/* CT_R_FLAGS: bit n's name, NULL-terminated */
	struct ct_labels labels;	/* CT_R_LABELS */
};

void ct_field_read(const struct ct_field *f, const struct ct_entry *e, struct ct_reading *r);
const char *ct_label_name(struct nfct_labelmap *map, unsigned int bit);
void ct_field_push(lua_State *L, const struct ct_field *f, const struct ct_entry *e,
		   struct nfct_labelmap *labelmap);
bool ct_field_match(const struct ct_field *f, const struct ct_value *want,
		    const struct ct_entry *e);
int ct_field_store(const struct ct_field *f, const struct ct_value *val,
		   struct nf_conntrack *ct, const struct nf_conntrack *old);
/* The literal address (no prefix, no port) of len bytes at s into val's family and v. */
bool ct_address_parse(const char *s, size_t len, struct ct_value *val);
int ct_proto_number(const char *name);
const char *ct_proto_name(uint8_t num);
int ct_state_number(uint8_t proto, const char *name);
const char *ct_state_text(int attr, uint8_t s);

/* ---- spec.c: a spec of fields applied to a conntrack object -------------- */

/* Parsed values by field: values[i] is ct_fields[i]'s when bit i of given is set. */
struct ct_spec {
	uint64_t given;
	struct ct_value values[CT_NFIELDS];
};

struct ct_change {
	const struct ct_field *field;
	struct ct_value value;
};

const char *ct_spec_apply(struct ct_spec *spec, unsigned need, struct nf_conntrack *ct,
			  const char **name);
void ct_spec_build(const struct ct_arg *a, int idx, unsigned need, struct nf_conntrack *ct);
void ct_spec_identity(struct nf_conntrack *req, const struct nf_conntrack *entry, bool with_id);
void ct_spec_changes(const struct ct_arg *a, int idx, struct ct_change *changes, size_t *n);
void ct_spec_complete(struct nf_conntrack *req, const struct nf_conntrack *entry);

/* ---- save_line.c: a line of conntrack's save format as a create spec ---- */

/* The spec of a -I or -A line of the grammar: its command, 'I' or 'A', or 0. */
char ct_save_line_read(const char *line, size_t len, struct ct_spec *spec);
void ct_save_line_build(const struct ct_arg *a, int idx, struct nf_conntrack *ct);
void ct_save_line_open(lua_State *L);

/* The lines of a text that are neither blank nor comments (#), as -R reads them. */
struct ct_save_text {
	const char *p, *end;
	int number;		/* of the line last returned, from 1 */
};

void ct_save_text_init(struct ct_save_text *t, const char *text, size_t len);
/* The next line (without its newline), or false at the end. */
bool ct_save_text_next(struct ct_save_text *t, const char **line, size_t *len);

/* ---- filter.c: a filter spec compiled for the kernel and for C ---------- */

struct ct_filter {
	uint8_t family;		/* AF_UNSPEC when both */
	size_t nterms;
	struct {
		const struct ct_field *field;
		struct ct_value want;
		bool in_kernel;		/* the kernel applies it too */
	} terms[64];
	bool has_predicate;	/* a Lua function: the caller keeps it */
};

void ct_filter_compile(const struct ct_arg *a, int idx, struct ct_filter *filter);
void ct_filter_push_predicate(lua_State *L, int idx);
int ct_filter_match(const struct ct_filter *filter, struct ct_entry *e);
int ct_filter_proto(const struct ct_filter *filter);
bool ct_filter_to_request(struct ct_filter *filter, struct nlmsghdr *nlh, bool dump);
bool ct_filter_kernel_only(const struct ct_filter *filter);
uint8_t ct_filter_split_family(struct ct_filter *filter);
void ct_filter_explain(lua_State *L, const struct ct_filter *filter);

/* ---- poll.c: conntrack.poll over pollable objects ----------------------- */

/* What poll needs of an object: its descriptor, and its own timeout (-1: none). */
struct ct_pollable {
	int fd;
	double timeout;
};

/* For this module's own objects, what their :pollfd() and :timeout() give (their
 * :events() is "r"), read in C: false when idx holds another kind of object. */
bool ct_events_pollable(lua_State *L, int idx, struct ct_pollable *p);
bool ct_signals_pollable(lua_State *L, int idx, struct ct_pollable *p);

/* ---- bpf.c: a filter as a socket filter for event sockets --------------- */

#define CT_BPF_MAX 1024	/* instructions: far more than the largest filter needs
				 * (a term takes at most 30) */
int ct_bpf_attach(int fd, struct ct_filter *filter);
unsigned int ct_bpf_compile(const struct ct_filter *filter, struct sock_filter *insn);
bool ct_bpf_run(const struct sock_filter *insn, unsigned int len, const void *message,
		size_t size);

/* ---- labelmap.c: connlabel.conf, loaded on first use -------------------- */

void ct_labelmap_open(lua_State *L);
void ct_labelmap_new(lua_State *L, const char *path);
struct nfct_labelmap *ct_labelmap_get(lua_State *L, int idx);

/* ---- nl.c: netlink sockets and request/acknowledge ---------------------- */

struct ct_socket {
	struct mnl_socket *nl;	/* NULL when closed */
	unsigned int portid;
	unsigned int seq;
};

int ct_socket_open(struct ct_socket *s, unsigned int groups, int flags);
void ct_socket_close(struct ct_socket *s);
/* Message types: the subsystem in the high byte (linux/netfilter/nfnetlink.h). */
#define CT_MSG(type)  ((uint16_t)((1 << 8) | (type)))	/* NFNL_SUBSYS_CTNETLINK */
#define EXP_MSG(type) ((uint16_t)((2 << 8) | (type)))	/* NFNL_SUBSYS_CTNETLINK_EXP */

/* The kernel fills dump datagrams up to 32 KiB (libmnl 1.0.5's MNL_SOCKET_DUMP_SIZE). */
#define CT_DUMP_BUFFER 32768

/* Room for any request we build (a tuple, a few attributes, 16 bytes of labels). */
#define CT_REQUEST_MAX 512

struct nlmsghdr *ct_request_header(void *buf, uint16_t type, uint16_t flags,
				   uint8_t family, unsigned int seq);
int ct_parse_cb(const struct nlmsghdr *nlh, void *data);
int ct_run_errno(void);
bool ct_nlmsg_ok(const struct nlmsghdr *nlh, size_t len);
bool ct_datagram_ok(const void *buf, size_t len);
int ct_socket_send(struct ct_socket *s, const void *buf, size_t len);
int ct_socket_recv(struct ct_socket *s, void *buf, size_t size, size_t *len);
int ct_socket_talk(struct ct_socket *s, struct nlmsghdr *nlh, void *buf, size_t bufsize,
		   mnl_cb_t cb, void *data);

int ct_parse_flow(const struct nlmsghdr *nlh, struct nf_conntrack *ct);

/* ---- nlvalidate.c: what libnetfilter_conntrack may be given to parse ---- */

bool ct_flow_msg_valid(const struct nlmsghdr *nlh);
bool ct_expect_msg_valid(const struct nlmsghdr *nlh);

/* ---- netns.c: sockets in another network namespace -------------------- */

void ct_netns_open(lua_State *L);
int ct_netns_new(lua_State *L, const char *spec);
int ct_netns_fd(lua_State *L, int idx);
int ct_socket_open_in(struct ct_socket *s, int netns, unsigned int groups, int flags);

/* ---- error.c: the three error tiers ------------------------------------- */

int ct_fail(lua_State *L, const char *op, int err);
void ct_push_message(lua_State *L, const char *op, int err);
void ct_check_options(lua_State *L, int idx, int arg, const char *const *names);
const char *ct_opt_string(lua_State *L, int idx, int arg, const char *name);
lua_Integer ct_opt_integer(lua_State *L, int idx, int arg, const char *name);
int ct_check_choice(lua_State *L, int idx, int arg, const char *what, const char *def,
		    const char *const *names);
int ct_raise(lua_State *L, const char *op, int err);
void ct_error_open(lua_State *L);

/* ---- netlink attributes, walked inline ------------------------------------ */
/* (libmnl's calls per attribute were most of the cost of walking a message) */

static inline unsigned int ct_attr_type(const struct nlattr *a)
{
	return a->nla_type & NLA_TYPE_MASK;
}

static inline const void *ct_attr_data(const struct nlattr *a)
{
	return (const char *)a + MNL_ATTR_HDRLEN;
}

static inline size_t ct_attr_len(const struct nlattr *a)
{
	return a->nla_len - MNL_ATTR_HDRLEN;
}

/*
 * The attribute at *p, moving *p past it, or NULL when none fits before
 * end: the walk ends there, as mnl_attr_parse's does.
 */
static inline const struct nlattr *ct_attr_next(const char **p, const char *end)
{
	const struct nlattr *a = (const struct nlattr *)*p;

	if (end - *p < (ptrdiff_t)sizeof(*a) || a->nla_len < sizeof(*a) || a->nla_len > end - *p)
		return NULL;
	*p += MNL_ALIGN(a->nla_len);
	return a;
}

/* ---- entry.c: an entry as the printers, fields and filters read it ------ */

/*
 * A parsed nf_conntrack (ct), or a conntrack message (nlh) whose attributes
 * are indexed by libnfct's attribute numbers, parsed only on demand. The
 * index holds offsets from nlh, not pointers, so an entry is small enough
 * for every flow to keep one beside its copy of the message.
 */
struct ct_entry {
	const struct nf_conntrack *ct;	/* NULL: read the message's attributes */
	const struct nlmsghdr *nlh;
	struct nf_conntrack *parsed;	/* nlh parsed by ct_entry_parse (owned) */
	uint8_t family;			/* nlh's */
	bool odd;			/* what libnfct reads otherwise: read the parse */
	uint16_t at[ATTR_MAX];		/* attribute's offset in nlh; 0: absent */
	uint16_t reply_icmp[3];		/* the same of the reply tuple's ICMP type, code
					 * and id, which libnfct gives no attribute */
};

/* A tuple's ICMP or ICMPv6 fields, as libnfct prints them. */
struct ct_icmp {
	uint8_t type, code;
	uint16_t id;			/* host order */
};

void ct_entry_index(struct ct_entry *e, const struct nlmsghdr *nlh);
const struct nf_conntrack *ct_entry_parse(struct ct_entry *e);
void ct_entry_release(struct ct_entry *e);
uint8_t ct_entry_u8(const struct ct_entry *e, enum nf_conntrack_attr attr);
uint16_t ct_entry_u16(const struct ct_entry *e, enum nf_conntrack_attr attr);
uint32_t ct_entry_u32(const struct ct_entry *e, enum nf_conntrack_attr attr);
uint64_t ct_entry_u64(const struct ct_entry *e, enum nf_conntrack_attr attr);
const void *ct_entry_ptr(const struct ct_entry *e, enum nf_conntrack_attr attr);
size_t ct_entry_len(const struct ct_entry *e, enum nf_conntrack_attr attr);
bool ct_entry_put_identity(const struct ct_entry *e, struct nlmsghdr *nlh);
struct ct_icmp ct_entry_icmp(const struct ct_entry *e, bool reply);

/*
 * What names one entry while it lives: the kernel's id, a 32-bit hash that
 * two entries may share, with the original tuple, the zone and the
 * original-direction zone, which no two entries of a table share.
 * Zero-filled where the entry has none and free of padding, so memcmp
 * compares two and flow:key() is its bytes.
 */
struct ct_identity {
	uint32_t id;
	uint16_t zone, orig_zone;
	uint8_t family, proto, icmp_type, icmp_code;
	uint16_t sport, dport;	/* network order as libnfct keeps them; ICMP's id in sport */
	uint8_t src[16], dst[16];
};

_Static_assert(sizeof(struct ct_identity) == 48, "a ct_identity has padding, which memcmp reads");

void ct_entry_identity(const struct ct_entry *e, struct ct_identity *out);

/* Parsed ct as an entry, for the readers of entries (a compound literal). */
#define CT_ENTRY_OF(parsed_ct) (&(struct ct_entry){ .ct = (parsed_ct) })

/* Makes e the entry of parsed ct (its attribute index is left unset: unread then). */
static inline void ct_entry_set(struct ct_entry *e, const struct nf_conntrack *ct)
{
	e->ct = ct;
	e->nlh = NULL;
	e->parsed = NULL;
	e->odd = false;
}

/* ---- flow.c: conntrack.flow --------------------------------------------- */

struct ct_flow {
	struct nf_conntrack *ct;	/* NULL until filled (or msg parsed); owned */
	struct nlmsghdr *msg;		/* a received valid message, read through its index
					 * until something needs it parsed (it follows the
					 * struct in the userdata), or NULL */
	struct ct_entry entry;		/* msg's index once made (entry.nlh == msg), or
					 * once parsed the entry of ct */
};

struct ct_flow *ct_flow_new(lua_State *L, int labelmap_idx);
struct ct_flow *ct_flow_new_unparsed(lua_State *L, int labelmap_idx, const struct nlmsghdr *nlh);
struct ct_flow *ct_flow_new_indexed(lua_State *L, int labelmap_idx, const struct ct_entry *e);
struct ct_flow *ct_flow_new_entry(lua_State *L, int labelmap_idx, struct ct_entry *e,
				  size_t *unreported);
struct nf_conntrack *ct_flow_alloc(lua_State *L);
void ct_flow_account(lua_State *L, size_t *unreported);
struct ct_flow *ct_flow_test(lua_State *L, int idx);
struct ct_flow *ct_flow_check(lua_State *L, int idx);
void ct_flow_entry(lua_State *L, int idx, struct ct_entry *e);
void ct_flow_open(lua_State *L);
unsigned int ct_format_event(lua_State *L, int opts);
int ct_pairs(lua_State *L, lua_CFunction totable);
bool ct_format_flag(lua_State *L, int opts, const char *name);

/* How flow:format and h:write print an entry (libnetfilter_conntrack's printer). */
#define CT_FORMAT_MAX 8192	/* the longest line, XML included */
struct ct_format {
	unsigned int type;	/* NFCT_T_*: the [NEW]-style prefix of an event, or UNKNOWN */
	unsigned int output;	/* NFCT_O_DEFAULT or NFCT_O_XML */
	unsigned int flags;	/* NFCT_OF_* */
	bool labels;		/* name the labels (needs the labelmap) */
};

void ct_format_parse(lua_State *L, int idx, const char *const *extra, struct ct_format *fmt);

int ct_format_print(char *buf, size_t size, struct ct_entry *e, const struct ct_format *fmt,
		    struct nfct_labelmap *map);

/* ---- print.c: conntrack -L's line without printf ------------------------ */

/* An output buffer that stops, and says so, when the next piece does not fit. */
struct ct_line {
	char *p, *end;
	bool full;
};

/* Whether attribute attr of ct is set. */
static inline bool ct_has(const struct nf_conntrack *ct, enum nf_conntrack_attr attr)
{
	return nfct_attr_is_set(ct, attr) > 0;
}

static inline bool ct_entry_has(const struct ct_entry *e, enum nf_conntrack_attr attr)
{
	return e->ct ? ct_has(e->ct, attr) : e->at[attr] != 0;
}

/* Inline: the printers call these for every piece of a line. */
static inline void ct_put(struct ct_line *l, const char *s, size_t n)
{
	if (l->full || (size_t)(l->end - l->p) < n) {
		l->full = true;
		return;
	}
	memcpy(l->p, s, n);
	l->p += n;
}

static inline void ct_put_str(struct ct_line *l, const char *s)
{
	ct_put(l, s, strlen(s));
}

void ct_put_u64(struct ct_line *l, uint64_t v);
int ct_print_default(char *buf, size_t size, const struct ct_entry *e, unsigned int type,
		     unsigned int flags, bool labels);
void ct_put_addr(struct ct_line *l, bool ipv6, const uint8_t *a);	/* as glibc's inet_ntop */
enum nf_conntrack_attr ct_addr_attr(bool ipv6, bool reply, bool dst);
void ct_put_hex(struct ct_line *l, unsigned int v);	/* printf's "%x" */
enum ct_l4 { CT_L4_NONE, CT_L4_PORTS, CT_L4_KEYS };
enum ct_l4 ct_l4_of(uint8_t proto);
bool ct_print_known(const struct ct_entry *e);
uint64_t ct_delta_time(const struct ct_entry *e);
int ct_print_xml(char *buf, size_t size, const struct ct_entry *e, unsigned int type,
		 unsigned int flags);
void ct_print_addr(char *buf, bool ipv6, const void *addr);

/* ---- json_print.c: a flow as json.flow's JSON object -------------------- */

size_t ct_json_flow(char *buf, size_t size, const struct ct_entry *e, struct nfct_labelmap *map);

/* ---- expect.c: conntrack.expect ----------------------------------------- */

enum { CT_EXPECTED, CT_MASK, CT_MASTER, CT_NAT, CT_EXPECT_TUPLES };

struct ct_expect {
	struct nf_expect *exp;		/* NULL until filled; owned */
	struct nf_conntrack *tuple[CT_EXPECT_TUPLES];	/* owned; NULL when absent */
};

void ct_expect_open(lua_State *L);
struct ct_expect *ct_expect_new(lua_State *L);
int ct_expect_parse(const struct nlmsghdr *nlh, struct ct_expect *e);
int ct_expect_parse_cb(const struct nlmsghdr *nlh, void *data);
void ct_expect_clear(struct ct_expect *e);
uint8_t ct_expect_build(const struct ct_arg *a, int spec, bool create, struct nf_expect *exp);

/* ---- handle.c, dump.c, batch.c ------------------------------------------ */

struct ct_handle {
	struct ct_socket sock;
};

struct ct_handle *ct_handle_check(lua_State *L, int idx);
void ct_handle_open(lua_State *L);
struct ct_dump {
	struct ct_socket sock;		/* its own: the loop body may use the handle */
	const char *op;			/* the method, for error messages */
	char *buf;			/* one receive buffer */
	size_t len, off;		/* of the datagram in buf */
	unsigned int seq;
	uint16_t type;			/* of the request (ct_dump_push) */
	bool kernel_filtered;		/* the request names terms for the kernel */
	bool refused;			/* the kernel refused them: ask without */
	bool answered;			/* something other than an error came back */
	uint8_t then_family;		/* to dump after filter.family's (AF_UNSPEC: none) */
	struct ct_entry entry;		/* the entry read last, not yet owned by a flow */
	bool expect;			/* a dump of expectations */
	struct ct_expect pending_expect;
	size_t unreported;		/* flow bytes not yet told to the GC */
	struct ct_filter filter;
	/* the filter as a BPF program run on each entry before it is parsed
	 * (bpf_run.c), when the kernel leaves some of its terms to us */
	struct sock_filter prefilter[CT_BPF_MAX];
	unsigned int prefilter_len;
};

void ct_dump_open(lua_State *L);
int ct_dump_push(lua_State *L, int handle_idx, int filter_idx, int arg, const char *op,
		 uint16_t type);
int ct_dump_next_flow(lua_State *L, int idx);
int ct_dump_next_entry(struct ct_dump *d, struct ct_entry **e);
bool ct_dump_has_predicate(lua_State *L, int idx);
uint16_t ct_dump_type(lua_State *L, int idx);
int ct_handle_write(lua_State *L);
int ct_dump_iter(lua_State *L);

int ct_handle_create_many(lua_State *L);
int ct_handle_restore(lua_State *L);
int ct_handle_listen(lua_State *L);
void ct_expect_methods(lua_State *L);
void ct_stats_methods(lua_State *L);
void ct_events_open(lua_State *L);

/* ---- seen.c: what a subscriber was told, for resync -------------------- */

enum { CT_SEEN_SAME, CT_SEEN_NEW, CT_SEEN_CHANGED };

struct ct_seen;
struct ct_seen *ct_seen_new(void);
void ct_seen_free(struct ct_seen *s);
int ct_seen_record(struct ct_seen *s, const struct ct_entry *e, bool destroyed,
		   uint32_t generation);
bool ct_seen_take_gone(struct ct_seen *s, uint32_t generation, struct nf_conntrack *out);

/* ---- requester.c: the process behind a change made through ctnetlink ---- */

/* A lookup's sock_diag socket (opened on first use) and its last answer. */
struct ct_requester {
	struct mnl_socket *diag;
	uint32_t portid, inode;		/* of the last answer; inode 0: none */
	bool named;			/* name holds the owner's program name */
	char name[64];
};

const char *ct_requester_name(struct ct_requester *r, uint32_t portid);
void ct_requester_close(struct ct_requester *r);

/* ---- events.c, event_write.c: conntrack.events --------------------------- */

/* user values after the labelmap and namespace (where ct_dump_push looks, for resync) */
enum {
	CT_EV_UV_PREDICATE = CT_UV_NETNS + 1, CT_EV_UV_QUEUE, CT_EV_UV_FILTER, CT_EV_UV_RESYNC,
	CT_EV_UV_COUNT = CT_EV_UV_RESYNC
};

/*
 * Where a resync is. After an overrun the events already queued are older
 * than any dump, so they are delivered first (draining); then the dump is
 * compared with the view, then what it lacked is swept out. Events that
 * arrive meanwhile wait in the socket and are newer than the dump.
 */
enum resync_phase { RESYNC_IDLE, RESYNC_DRAINING, RESYNC_DUMPING, RESYNC_SWEEPING };

#define CT_EVENT_SLOTS 64	/* datagrams per recvmmsg */

struct ct_events {
	struct ct_socket sock;
	char *slots;			/* CT_EVENT_SLOTS buffers of SLOT_SIZE */
	struct mmsghdr msgs[CT_EVENT_SLOTS];	/* recvmmsg's headers over them, made once */
	struct iovec iov[CT_EVENT_SLOTS];
	unsigned int len[CT_EVENT_SLOTS];	/* lengths of the datagrams received */
	int nsid[CT_EVENT_SLOTS];		/* their namespace ids, with all_netns */
	char control[CT_EVENT_SLOTS][CMSG_SPACE(sizeof(int))];
	bool all_netns;
	unsigned int count, slot;	/* datagrams received, the one being read */
	size_t off;			/* next message in that datagram */
	double received;		/* when they were received */
	int pending_err;		/* a receive error to report after the batch */
	int bufsize, bufsize_max;	/* the socket's receive buffer, and its cap */
	uint32_t drops;			/* the kernel's drop counter, as last read */
	bool congested;			/* ENOBUFS came, and the counter was not read since */
	struct ct_filter filter;
	struct ct_seen *seen;		/* the subscriber's view, with resync on */
	uint32_t generation;		/* of the latest resync */
	enum resync_phase resync;
	struct ct_requester requester;	/* ev:writer's lookups */
};

/* What one step of a receive came to. */
enum ct_events_step {
	CT_EV_MESSAGE,	/* a message to deliver */
	CT_EV_QUEUED,	/* an overrun or a resync's event queued, or nothing yet */
	CT_EV_DONE,	/* the socket is empty, or an error waits */
};

struct ct_events *ct_events_check(lua_State *L, int idx);
const char *ct_event_kind(const struct nlmsghdr *nlh);
enum ct_events_step ct_events_step(lua_State *L, struct ct_events *ev, int queue, bool *drained,
				   const struct nlmsghdr **nlh);
void ct_events_queue(lua_State *L, struct ct_events *ev, int self, int queue,
		     const struct nlmsghdr *nlh);
int ct_events_writer(lua_State *L);

/* ---- poll.c, signals.c: waiting on several objects ---------------------- */

void ct_poll_open(lua_State *L);
void ct_requester_open(lua_State *L);
void ct_file_open(lua_State *L);
void ct_signals_open(lua_State *L);
int ct_handle_update(lua_State *L);
int ct_handle_delete(lua_State *L);

#endif
