/*
 * conntrack.flow: one table entry, read through ct_fields[]. tostring(flow)
 * is the line `conntrack -L` prints for it; pairs(flow) and flow:totable()
 * give every field that is present; flow:key() names the entry. Flows are
 * read-only: changes go through the handle, which is where the kernel is.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <string.h>

enum { UV_LABELMAP = 1 };

/*
 * The registry keys of the two flow metatables (by address: a flow is made
 * for every entry of a dump and every event, and checked on every field
 * read, and luaL_checkudata finds a metatable by name, a string hashed and
 * compared each time). A flow that holds only its message, which is Lua's
 * memory, has the one without __gc: a finalizer costs each object a call,
 * and a collection cycle more before its memory is freed, which was a
 * fifth of what a flow cost a dump or event loop. A flow takes the
 * finalizing one when it gets a libnfct object to free.
 */
static const char finalizing_key = 0;
static const char plain_key = 0;
/* The key of a field that both metatables have, and no other table. */
static const char flow_mark = 0;

/* Pushes a flow of size bytes with the metatable at key, sharing the
 * labelmap at labelmap_idx (may be nil). */
static struct ct_flow *new_flow(lua_State *L, int labelmap_idx, size_t size, const char *key)
{
	struct ct_flow *flow;

	labelmap_idx = lua_absindex(L, labelmap_idx);
	flow = lua_newuserdatauv(L, size, 1);
	flow->ct = NULL;
	flow->msg = NULL;
	flow->entry.nlh = NULL;
	lua_rawgetp(L, LUA_REGISTRYINDEX, key);
	lua_setmetatable(L, -2);
	lua_pushvalue(L, labelmap_idx);
	lua_setiuservalue(L, -2, UV_LABELMAP);
	return flow;
}

/* The flow at idx, or NULL when the value there is not one. */
struct ct_flow *ct_flow_test(lua_State *L, int idx)
{
	struct ct_flow *flow = lua_touserdata(L, idx);
	bool is;

	if (!flow || !lua_getmetatable(L, idx))
		return NULL;
	is = lua_rawgetp(L, -1, &flow_mark) != LUA_TNIL;
	lua_pop(L, 2);
	return is ? flow : NULL;
}

static struct ct_flow *check_flow(lua_State *L, int idx)
{
	struct ct_flow *flow = ct_flow_test(L, idx);

	if (!flow)
		luaL_typeerror(L, idx, CT_FLOW_TYPE);
	return flow;
}

/* Pushes an empty flow that will share the labelmap at labelmap_idx (may be nil). */
struct ct_flow *ct_flow_new(lua_State *L, int labelmap_idx)
{
	return new_flow(L, labelmap_idx, sizeof(struct ct_flow), &finalizing_key);
}

/*
 * Pushes the flow of nlh, a valid conntrack message, copied into the
 * userdata (one allocation, which the collector sees): it is indexed when
 * a field is first read, and parsed only when something needs the parse.
 */
struct ct_flow *ct_flow_new_unparsed(lua_State *L, int labelmap_idx, const struct nlmsghdr *nlh)
{
	struct ct_flow *flow = new_flow(L, labelmap_idx, sizeof(struct ct_flow) + nlh->nlmsg_len,
					&plain_key);

	flow->msg = (struct nlmsghdr *)(flow + 1);
	memcpy(flow->msg, nlh, nlh->nlmsg_len);
	return flow;
}

/* Pushes the flow of e, an indexed entry (not parsed), with its index. */
struct ct_flow *ct_flow_new_indexed(lua_State *L, int labelmap_idx, const struct ct_entry *e)
{
	struct ct_flow *flow = ct_flow_new_unparsed(L, labelmap_idx, e->nlh);

	flow->entry = *e;
	flow->entry.nlh = flow->msg;
	return flow;
}

/*
 * Pushes the flow of entry e, a received message's (indexed, and parsed
 * only if something needed it): the flow takes e's parse, or copies its
 * message and index. *unreported: as ct_flow_account's.
 */
struct ct_flow *ct_flow_new_entry(lua_State *L, int labelmap_idx, struct ct_entry *e,
				  size_t *unreported)
{
	struct ct_flow *flow;

	if (!e->parsed)
		return ct_flow_new_indexed(L, labelmap_idx, e);
	flow = ct_flow_new(L, labelmap_idx);
	flow->ct = e->parsed;
	e->parsed = NULL;
	e->ct = NULL;
	ct_flow_account(L, unreported);
	return flow;
}

/* Pushes a flow owning a new empty conntrack object and returns the object. */
struct nf_conntrack *ct_flow_alloc(lua_State *L)
{
	struct ct_flow *flow;

	lua_pushnil(L);
	flow = ct_flow_new(L, -1);
	lua_remove(L, -2);
	flow->ct = nfct_new();
	if (!flow->ct)
		luaL_error(L, "not enough memory");
	return flow->ct;
}

/* sizeof(struct nf_conntrack) in libnetfilter_conntrack 1.0.9 (392; its
 * nfct_maxsize() is deprecated) plus malloc's header */
#define FLOW_EXTERNAL_BYTES 408

/*
 * A parsed flow's conntrack object is malloc'd by libnetfilter_conntrack,
 * out of the collector's sight (an indexed flow is all Lua memory). Loops
 * that may parse many flows (a dump's odd entries) call this for each, so
 * the collector hears of it as if Lua had allocated it; otherwise garbage
 * flows pile up in proportion to the Lua heap. *unreported carries the
 * remainder below 1 KiB.
 */
void ct_flow_account(lua_State *L, size_t *unreported)
{
	*unreported += FLOW_EXTERNAL_BYTES;
	if (*unreported >= 16 * 1024) {
		lua_gc(L, LUA_GCSTEP, (int)(*unreported / 1024));
		*unreported %= 1024;
	}
}

/* The registry key of the bytes that deferred parses allocated and the
 * collector has not heard of yet (ct_flow_account's remainder). */
static const char deferred_key = 0;

/*
 * A dump's or an event's flow holds its message, read through its index,
 * until something needs libnfct's object (a change, tostring, an odd
 * message): the parse happens then, and the collector hears of its
 * allocation as of a dump's (a flow has no loop to keep the remainder in).
 */
static void parse_deferred(lua_State *L, int idx, struct ct_flow *flow)
{
	struct nf_conntrack *ct;
	size_t unreported;

	if (flow->ct || !flow->msg)
		return;
	idx = lua_absindex(L, idx);
	ct = nfct_new();
	if (!ct || nfct_nlmsg_parse(flow->msg, ct) < 0) {	/* valid: only memory can fail */
		if (ct)
			nfct_destroy(ct);
		luaL_error(L, "not enough memory");
	}
	flow->ct = ct;
	flow->msg = NULL;
	lua_rawgetp(L, LUA_REGISTRYINDEX, &finalizing_key);
	lua_setmetatable(L, idx);
	lua_rawgetp(L, LUA_REGISTRYINDEX, &deferred_key);
	unreported = (size_t)lua_tointeger(L, -1);
	lua_pop(L, 1);
	ct_flow_account(L, &unreported);
	lua_pushinteger(L, (lua_Integer)unreported);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &deferred_key);
}

struct ct_flow *ct_flow_check(lua_State *L, int idx)
{
	struct ct_flow *flow = check_flow(L, idx);

	parse_deferred(L, idx, flow);
	if (!flow->ct)
		luaL_argerror(L, idx, "empty " CT_FLOW_TYPE);
	return flow;
}

static struct nfct_labelmap *flow_labelmap(lua_State *L, int idx)
{
	struct nfct_labelmap *map;

	lua_getiuservalue(L, idx, UV_LABELMAP);
	map = ct_labelmap_get(L, -1);
	lua_pop(L, 1);
	return map;
}

/* The flow at idx, which may still be unparsed, and is not empty. */
static struct ct_flow *check_filled(lua_State *L, int idx)
{
	struct ct_flow *flow = check_flow(L, idx);

	if (!flow->ct && !flow->msg)
		luaL_argerror(L, idx, "empty " CT_FLOW_TYPE);
	return flow;
}

/* Indexes the flow's message into flow->entry, once. */
static void index_message(struct ct_flow *flow)
{
	if (flow->entry.nlh != flow->msg)
		ct_entry_index(&flow->entry, flow->msg);
}

/*
 * The entry to read a filled flow's fields from: its message's index (a
 * dump's or an event's flow is then never parsed to be read: libnfct's
 * parse was most of what reading one cost), or its parse.
 */
static const struct ct_entry *flow_entry(lua_State *L, int idx, struct ct_flow *flow)
{
	if (flow->msg) {
		index_message(flow);
		if (!flow->entry.odd)
			return &flow->entry;
	}
	parse_deferred(L, idx, flow);
	ct_entry_set(&flow->entry, flow->ct);
	return &flow->entry;
}

/*
 * The flow at idx as an entry, into *e: its message's index or its parse,
 * never odd. A printer that declines it parses it into e, which
 * ct_entry_release(e) frees; nothing else does.
 */
void ct_flow_entry(lua_State *L, int idx, struct ct_entry *e)
{
	*e = *flow_entry(L, idx, check_filled(L, idx));
}

static int flow_totable(lua_State *L)
{
	struct ct_flow *flow = check_filled(L, 1);
	struct nfct_labelmap *map = flow_labelmap(L, 1);
	const struct ct_entry *e = flow_entry(L, 1, flow);

	lua_createtable(L, 0, 24);
	for (size_t i = 0; i < ct_nfields; i++) {
		const struct ct_field *f = &ct_fields[i];

		if (!(f->flags & F_READ) || !ct_field_present(f, e))
			continue;
		ct_field_push(L, f, e, f->kind == K_LABELS ? map : NULL);
		lua_setfield(L, -2, f->name);
	}
	return 1;
}

/*
 * flow:key(): the entry's identity (struct ct_identity) as an opaque
 * string, the same for every read of one entry, by dump, get or event, and
 * different for any two entries a table holds at once, where the id alone
 * may repeat. A view of the table keys its entries by it.
 */
static int flow_key(lua_State *L)
{
	struct ct_flow *flow = check_filled(L, 1);
	struct ct_identity key;

	ct_entry_identity(flow_entry(L, 1, flow), &key);
	lua_pushlstring(L, (const char *)&key, sizeof(key));
	return 1;
}

static int flow_index(lua_State *L)
{
	struct ct_flow *flow = check_filled(L, 1);
	const struct ct_field *f = ct_field_lookup(L, 2);

	if (f && (f->flags & F_READ)) {
		ct_field_push(L, f, flow_entry(L, 1, flow),
			      f->kind == K_LABELS ? flow_labelmap(L, 1) : NULL);
		return 1;
	}
	/* methods live in the first upvalue */
	lua_pushvalue(L, 2);
	if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL)
		return 1;
	return luaL_error(L, CT_FLOW_TYPE " has no field '%s'", luaL_tolstring(L, 2, NULL));
}

static int flow_newindex(lua_State *L)
{
	return luaL_error(L, CT_FLOW_TYPE " is read-only (field '%s'); use handle:update(flow, changes)",
			  luaL_tolstring(L, 2, NULL));
}

/* __pairs of an object whose fields totable lists: next, totable(obj), nil */
int ct_pairs(lua_State *L, lua_CFunction totable)
{
	lua_getglobal(L, "next");
	lua_pushcfunction(L, totable);
	lua_pushvalue(L, 1);
	lua_call(L, 1, 1);
	lua_pushnil(L);
	return 3;
}

static int flow_pairs(lua_State *L)
{
	return ct_pairs(L, flow_totable);
}

/*
 * tostring(flow): libnetfilter_conntrack's own printer, on purpose. It is
 * the reference that core/print.c (behind flow:format and h:write) is held
 * to, byte for byte, by the tests; speed is flow:format's business.
 */
static int flow_tostring(lua_State *L)
{
	struct ct_flow *flow = check_flow(L, 1);
	char buf[4096];

	parse_deferred(L, 1, flow);
	if (!flow->ct) {
		lua_pushliteral(L, CT_FLOW_TYPE " (empty)");
		return 1;
	}
	/* the exact call `conntrack -L` makes for its default output */
	nfct_snprintf(buf, sizeof(buf), flow->ct, NFCT_T_UNKNOWN, NFCT_O_DEFAULT, 0);
	lua_pushstring(L, buf);
	return 1;
}

/* The message type of the event kind at idx, for the [NEW] / [UPDATE] / [DESTROY] prefix. */
static unsigned int event_type(lua_State *L, int idx)
{
	static const char *const kinds[] = { "new", "update", "destroy", NULL };
	static const unsigned int types[] = { NFCT_T_NEW, NFCT_T_UPDATE, NFCT_T_DESTROY };

	return types[ct_check_choice(L, idx, 2, "event kind", NULL, kinds)];
}

/* The message type of opts.event (UNKNOWN when it has none). */
unsigned int ct_format_event(lua_State *L, int opts)
{
	unsigned int type = NFCT_T_UNKNOWN;

	if (lua_getfield(L, opts, "event") != LUA_TNIL)
		type = event_type(L, -1);
	lua_pop(L, 1);
	return type;
}

bool ct_format_flag(lua_State *L, int opts, const char *name)
{
	bool set;

	lua_getfield(L, opts, name);
	set = lua_toboolean(L, -1);
	lua_pop(L, 1);
	return set;
}

/*
 * Read the format options at idx (nil: the default line) into fmt; names
 * extra keys the caller accepts besides the format's own (NULL-terminated,
 * or NULL).
 */
void ct_format_parse(lua_State *L, int idx, const char *const *extra, struct ct_format *fmt)
{
	enum { XML, EXTENDED, ID, KTIMESTAMP, LABELS, EVENT, OWN };
	static const char *const own[OWN] = {
		[XML] = "xml", [EXTENDED] = "extended", [ID] = "id", [KTIMESTAMP] = "ktimestamp",
		[LABELS] = "labels", [EVENT] = "event"
	};
	const char *names[16];
	size_t n = 0;

	for (; n < OWN; n++)
		names[n] = own[n];
	for (size_t i = 0; extra && extra[i] && n < sizeof(names) / sizeof(names[0]) - 1; i++)
		names[n++] = extra[i];
	names[n] = NULL;
	memset(fmt, 0, sizeof(*fmt));
	fmt->output = NFCT_O_DEFAULT;
	fmt->type = NFCT_T_UNKNOWN;
	if (lua_isnoneornil(L, idx))
		return;
	idx = lua_absindex(L, idx);
	luaL_checktype(L, idx, LUA_TTABLE);
	/* one pass over the options given (a getfield per option was a fifth of
	 * flow:format, called for every line of -D) */
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		int which = ct_check_choice(L, -2, idx, "option", NULL, names);
		bool on = lua_toboolean(L, -1);

		if (which == EVENT)
			fmt->type = event_type(L, -1);
		else if (which == EXTENDED && on)
			fmt->flags |= NFCT_OF_SHOW_LAYER3;
		else if (which == ID && on)
			fmt->flags |= NFCT_OF_ID;
		else if (which == KTIMESTAMP && on)
			fmt->flags |= NFCT_OF_TIMESTAMP;
		else if (which == XML && on)
			fmt->output = NFCT_O_XML;
		else if (which == LABELS)
			fmt->labels = on;
		lua_pop(L, 1);
	}
}

/*
 * The text of entry e in format fmt into buf (map: the label names, when
 * fmt asks for them): its length, or -1 with errno ENOMEM when libnfct's
 * printer needed e parsed and that failed.
 */
int ct_format_print(char *buf, size_t size, struct ct_entry *e, const struct ct_format *fmt,
		    struct nfct_labelmap *map)
{
	int len;

	if (e->odd && !ct_entry_parse(e))
		return -1;
	len = fmt->output == NFCT_O_DEFAULT ?
	      ct_print_default(buf, size, e, fmt->type, fmt->flags, fmt->labels && map) :
	      ct_print_xml(buf, size, e, fmt->type, fmt->flags);
	if (len < 0) {
		const struct nf_conntrack *ct = ct_entry_parse(e);

		if (!ct)
			return -1;
		len = nfct_snprintf_labels(buf, size, ct, fmt->type, fmt->output, fmt->flags,
					   fmt->labels ? map : NULL);
	}
	return len < 0 ? 0 : (size_t)len < size ? len : (int)size - 1;
}

/*
 * flow:format{ xml =, extended =, id =, ktimestamp =, labels =, event = }
 * -> the text conntrack(8) prints with the matching -o options (and, for an
 * event, its [NEW] prefix): core/print.c's, from the flow's message when it
 * still has it, or libnetfilter_conntrack's printer where that declines.
 */
static int flow_format(lua_State *L)
{
	struct ct_entry entry;
	struct ct_format fmt;
	/* on the stack: a luaL_Buffer of this size boxed 8 KiB for the collector
	 * per line (-D of 5,000 entries: 98 million instructions, now 84) */
	char out[CT_FORMAT_MAX];
	int len;

	lua_settop(L, 2);
	ct_format_parse(L, 2, NULL, &fmt);
	ct_flow_entry(L, 1, &entry);
	len = ct_format_print(out, sizeof(out), &entry, &fmt,
			      fmt.labels ? flow_labelmap(L, 1) : NULL);
	ct_entry_release(&entry);	/* what a printer that declined it parsed */
	if (len < 0)
		return luaL_error(L, "not enough memory");
	lua_pushlstring(L, out, (size_t)len);
	return 1;
}

static int flow_gc(lua_State *L)
{
	struct ct_flow *flow = check_flow(L, 1);

	if (flow->ct) {
		nfct_destroy(flow->ct);
		flow->ct = NULL;
	}
	return 0;
}

void ct_flow_open(lua_State *L)
{
	static const luaL_Reg meta[] = {
		{ "__newindex", flow_newindex },
		{ "__pairs", flow_pairs },
		{ "__tostring", flow_tostring },
		{ "__gc", flow_gc },
		{ NULL, NULL }
	};
	static const luaL_Reg methods[] = {
		{ "totable", flow_totable },
		{ "format", flow_format },
		{ "key", flow_key },
		{ NULL, NULL }
	};

	luaL_newmetatable(L, CT_FLOW_TYPE);
	luaL_setfuncs(L, meta, 0);
	lua_pushboolean(L, 1);
	lua_rawsetp(L, -2, &flow_mark);
	luaL_newlib(L, methods);
	lua_pushcclosure(L, flow_index, 1);
	lua_setfield(L, -2, "__index");
	lua_pushvalue(L, -1);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &finalizing_key);
	/* the plain metatable: the same fields, __gc aside */
	lua_newtable(L);
	lua_pushnil(L);
	while (lua_next(L, -3)) {
		lua_pushvalue(L, -2);
		lua_insert(L, -2);
		lua_rawset(L, -4);
	}
	lua_pushnil(L);
	lua_setfield(L, -2, "__gc");
	lua_rawsetp(L, LUA_REGISTRYINDEX, &plain_key);
	lua_pop(L, 1);
}
