/*
 * conntrack.expect: one expectation, an entry that a helper (ftp, sip, ...)
 * or a program adds so that a related connection is let through. Its
 * tuples (expected, mask, master, nat) read as conntrack.flow objects, so
 * every tuple field and its tostring work as for flows; tostring of the
 * expectation is the line `conntrack -L expect` prints.
 *
 * libnetfilter_conntrack parses expectations but only lends their tuples
 * through its own layout, so each nested tuple is parsed again as the
 * original tuple of a conntrack message: public API only.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <errno.h>
#include <string.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>

static const struct {
	const char *name;
	int attr;		/* in the message, nested in nest (0: top level) */
	int nest;
	int exp_attr;		/* what libnetfilter_conntrack calls it, for building */
} tuples[CT_EXPECT_TUPLES] = {
	[CT_EXPECTED] = { "expected", CTA_EXPECT_TUPLE, 0, ATTR_EXP_EXPECTED },
	[CT_MASK] = { "mask", CTA_EXPECT_MASK, 0, ATTR_EXP_MASK },
	[CT_MASTER] = { "master", CTA_EXPECT_MASTER, 0, ATTR_EXP_MASTER },
	[CT_NAT] = { "nat", CTA_EXPECT_NAT_TUPLE, CTA_EXPECT_NAT, ATTR_EXP_NAT_TUPLE },
};

/* The expectation's own attributes (README lists what each means). */
static const struct {
	const char *name;
	enum ct_kind kind;
	int attr;
} scalars[] = {
	{ "timeout", K_U32, ATTR_EXP_TIMEOUT },
	{ "zone", K_U16, ATTR_EXP_ZONE },
	{ "flags", K_STATUS, ATTR_EXP_FLAGS },	/* a set of PERMANENT, INACTIVE, USERSPACE */
	{ "helper", K_STRING, ATTR_EXP_HELPER_NAME },
	{ "class", K_U32, ATTR_EXP_CLASS },
	{ "fn", K_STRING, ATTR_EXP_FN },
	{ "nat_dir", K_U8, ATTR_EXP_NAT_DIR },
};

static const char *const flag_names[] = { "PERMANENT", "INACTIVE", "USERSPACE", NULL };

void ct_expect_clear(struct ct_expect *e)
{
	if (e->exp)
		nfexp_destroy(e->exp);
	e->exp = NULL;
	for (int i = 0; i < CT_EXPECT_TUPLES; i++) {
		if (e->tuple[i])
			nfct_destroy(e->tuple[i]);
		e->tuple[i] = NULL;
	}
}

/* The tuple nested in attr, as the original tuple of a conntrack object. */
static struct nf_conntrack *parse_tuple(const struct nlattr *attr, uint8_t family, int *err)
{
	char buf[CT_REQUEST_MAX];
	struct nlmsghdr *nlh = ct_request_header(buf, CT_MSG(IPCTNL_MSG_CT_NEW), 0, family, 0);
	struct nlattr *nest;
	struct nf_conntrack *ct;
	uint16_t len = mnl_attr_get_payload_len(attr);

	if (nlh->nlmsg_len + MNL_ATTR_HDRLEN + MNL_ALIGN(len) > sizeof(buf)) {
		*err = EPROTO;
		return NULL;
	}
	nest = mnl_attr_nest_start(nlh, CTA_TUPLE_ORIG);
	memcpy(mnl_nlmsg_get_payload_tail(nlh), mnl_attr_get_payload(attr), len);
	nlh->nlmsg_len += MNL_ALIGN(len);
	mnl_attr_nest_end(nlh, nest);
	ct = nfct_new();
	if (!ct) {
		*err = ENOMEM;
		return NULL;
	}
	*err = ct_parse_flow(nlh, ct);
	if (*err) {
		nfct_destroy(ct);
		return NULL;
	}
	return ct;
}

struct nested {
	const struct nlattr *top[CTA_EXPECT_MAX + 1];
	const struct nlattr *nat[CTA_EXPECT_NAT_MAX + 1];
};

static int collect_top(const struct nlattr *attr, void *data)
{
	struct nested *n = data;

	if (mnl_attr_get_type(attr) <= CTA_EXPECT_MAX)
		n->top[mnl_attr_get_type(attr)] = attr;
	return MNL_CB_OK;
}

static int collect_nat(const struct nlattr *attr, void *data)
{
	struct nested *n = data;

	if (mnl_attr_get_type(attr) <= CTA_EXPECT_NAT_MAX)
		n->nat[mnl_attr_get_type(attr)] = attr;
	return MNL_CB_OK;
}

/* Parse an expectation message into e (empty). Returns 0 or an errno value; no Lua runs. */
int ct_expect_parse(const struct nlmsghdr *nlh, struct ct_expect *e)
{
	const struct nfgenmsg *nfh = mnl_nlmsg_get_payload(nlh);
	struct nested n;
	int err = 0;

	memset(&n, 0, sizeof(n));
	if (!ct_expect_msg_valid(nlh))
		return EBADMSG;
	e->exp = nfexp_new();
	if (!e->exp)
		return ENOMEM;
	if (nfexp_nlmsg_parse(nlh, e->exp) < 0 ||
	    mnl_attr_parse(nlh, sizeof(*nfh), collect_top, &n) < 0)
		return EPROTO;
	if (n.top[CTA_EXPECT_NAT] && mnl_attr_parse_nested(n.top[CTA_EXPECT_NAT], collect_nat, &n) < 0)
		return EPROTO;
	for (int i = 0; i < CT_EXPECT_TUPLES && !err; i++) {
		const struct nlattr *attr = tuples[i].nest ? n.nat[tuples[i].attr] : n.top[tuples[i].attr];

		if (attr)
			e->tuple[i] = parse_tuple(attr, nfh->nfgen_family, &err);
	}
	return err;
}

/* mnl callback: parse an expectation message into the ct_expect at data. A
 * reply of several (the kernel sends one) keeps the last, leaking none. */
int ct_expect_parse_cb(const struct nlmsghdr *nlh, void *data)
{
	int err;

	ct_expect_clear(data);
	err = ct_expect_parse(nlh, data);

	errno = err;
	return err ? MNL_CB_ERROR : MNL_CB_OK;
}

/* Pushes an empty expectation; the caller fills it. */
struct ct_expect *ct_expect_new(lua_State *L)
{
	struct ct_expect *e = lua_newuserdatauv(L, sizeof(*e), 0);

	memset(e, 0, sizeof(*e));
	luaL_setmetatable(L, CT_EXPECT_TYPE);
	return e;
}

static struct ct_expect *check_expect(lua_State *L, int idx)
{
	struct ct_expect *e = luaL_checkudata(L, idx, CT_EXPECT_TYPE);

	if (!e->exp)
		luaL_argerror(L, idx, "empty " CT_EXPECT_TYPE);
	return e;
}

/* Pushes a flow holding a copy of tuple i, or nil. */
static void push_tuple(lua_State *L, const struct ct_expect *e, int i)
{
	if (!e->tuple[i]) {
		lua_pushnil(L);
		return;
	}
	lua_pushnil(L);
	ct_flow_new(L, -1)->ct = nfct_clone(e->tuple[i]);
	lua_remove(L, -2);
}

static void push_scalar(lua_State *L, const struct ct_expect *e, size_t i)
{
	enum nf_expect_attr attr = (enum nf_expect_attr)scalars[i].attr;

	if (nfexp_attr_is_set(e->exp, attr) <= 0) {
		lua_pushnil(L);
		return;
	}
	switch (scalars[i].kind) {
	case K_STRING:
		lua_pushstring(L, nfexp_get_attr(e->exp, attr));
		break;
	case K_STATUS: {
		uint32_t flags = nfexp_get_attr_u32(e->exp, attr);

		lua_newtable(L);
		for (int bit = 0; flag_names[bit]; bit++) {
			if (flags & (1u << bit)) {
				lua_pushboolean(L, 1);
				lua_setfield(L, -2, flag_names[bit]);
			}
		}
		break;
	}
	case K_U8:
		lua_pushinteger(L, nfexp_get_attr_u8(e->exp, attr));
		break;
	case K_U16:
		lua_pushinteger(L, nfexp_get_attr_u16(e->exp, attr));
		break;
	default:
		lua_pushinteger(L, nfexp_get_attr_u32(e->exp, attr));
		break;
	}
}

/* Pushes field name of e and returns true, or returns false for an unknown name. */
static bool push_field(lua_State *L, const struct ct_expect *e, const char *name)
{
	for (int i = 0; i < CT_EXPECT_TUPLES; i++) {
		if (strcmp(name, tuples[i].name) == 0) {
			push_tuple(L, e, i);
			return true;
		}
	}
	for (size_t i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++) {
		if (strcmp(name, scalars[i].name) == 0) {
			push_scalar(L, e, i);
			return true;
		}
	}
	if (strcmp(name, "family") == 0 || strcmp(name, "proto") == 0) {
		if (e->tuple[CT_EXPECTED])
			ct_field_push(L, ct_field_named(name), CT_ENTRY_OF(e->tuple[CT_EXPECTED]), NULL);
		else
			lua_pushnil(L);
		return true;
	}
	return false;
}

static int expect_index(lua_State *L)
{
	struct ct_expect *e = check_expect(L, 1);
	const char *name = luaL_checkstring(L, 2);

	if (push_field(L, e, name))
		return 1;
	lua_pushvalue(L, 2);
	if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL)
		return 1;
	return luaL_error(L, CT_EXPECT_TYPE " has no field '%s'", name);
}

static int expect_totable(lua_State *L)
{
	static const char *const extra[] = { "family", "proto" };
	struct ct_expect *e = check_expect(L, 1);

	lua_newtable(L);
	for (int i = 0; i < CT_EXPECT_TUPLES; i++) {
		push_tuple(L, e, i);
		lua_setfield(L, -2, tuples[i].name);
	}
	for (size_t i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++) {
		push_scalar(L, e, i);
		lua_setfield(L, -2, scalars[i].name);
	}
	for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
		push_field(L, e, extra[i]);
		lua_setfield(L, -2, extra[i]);
	}
	return 1;
}

static int expect_pairs(lua_State *L)
{
	return ct_pairs(L, expect_totable);
}

static int expect_tostring(lua_State *L)
{
	struct ct_expect *e = luaL_checkudata(L, 1, CT_EXPECT_TYPE);
	char buf[1024];

	if (!e->exp) {
		lua_pushliteral(L, CT_EXPECT_TYPE " (empty)");
		return 1;
	}
	/* the call `conntrack -L expect` makes */
	nfexp_snprintf(buf, sizeof(buf), e->exp, NFCT_T_UNKNOWN, NFCT_O_DEFAULT, 0);
	lua_pushstring(L, buf);
	return 1;
}

/*
 * e:format{ xml =, event = } -> the text `conntrack -L expect` (or -E
 * expect) prints with those -o options, from libnetfilter_conntrack.
 */
static int expect_format(lua_State *L)
{
	static const char *const options[] = { "xml", "event", NULL };
	struct ct_expect *e = check_expect(L, 1);
	char buf[2048];
	int len;

	lua_settop(L, 2);
	if (lua_isnil(L, 2)) {
		lua_newtable(L);
		lua_replace(L, 2);
	}
	ct_check_options(L, 2, 2, options);
	len = nfexp_snprintf(buf, sizeof(buf), e->exp, ct_format_event(L, 2),
			     ct_format_flag(L, 2, "xml") ? NFCT_O_XML : NFCT_O_DEFAULT, 0);
	lua_pushlstring(L, buf, len < 0 ? 0 : (size_t)(len < (int)sizeof(buf) ? len : (int)sizeof(buf) - 1));
	return 1;
}

static int expect_gc(lua_State *L)
{
	ct_expect_clear(luaL_checkudata(L, 1, CT_EXPECT_TYPE));
	return 0;
}

static int expect_newindex(lua_State *L)
{
	return luaL_error(L, CT_EXPECT_TYPE " is read-only (field '%s')", luaL_tolstring(L, 2, NULL));
}

/* ---- building an expectation from a Lua table ---------------------------- */

/*
 * The tuple table at spec.name, as a conntrack object owned by a flow
 * pushed on the stack, or NULL (nothing pushed) when absent. family and
 * proto default to those of the expected tuple, which a mask or a master
 * tuple usually shares.
 */
static struct nf_conntrack *build_tuple(const struct ct_arg *a, int spec, int i,
					const struct nf_conntrack *expected)
{
	lua_State *L = a->L;
	struct nf_conntrack *ct;
	int copy;

	if (lua_getfield(L, spec, tuples[i].name) == LUA_TNIL) {
		lua_pop(L, 1);
		return NULL;
	}
	if (lua_type(L, -1) != LUA_TTABLE)
		luaL_argerror(L, a->arg, lua_pushfstring(L, "'%s' must be a table of tuple fields",
							 tuples[i].name));
	lua_newtable(L);
	copy = lua_gettop(L);
	lua_pushnil(L);
	while (lua_next(L, copy - 1)) {
		lua_pushvalue(L, -2);
		lua_insert(L, -2);
		lua_rawset(L, copy);
	}
	if (expected && lua_getfield(L, copy, "proto") == LUA_TNIL) {
		ct_field_push(L, ct_field_named("proto"), CT_ENTRY_OF(expected), NULL);
		lua_setfield(L, copy, "proto");
	}
	lua_settop(L, copy);
	lua_remove(L, --copy);	/* the original: the copy moves down */
	ct = ct_flow_alloc(L);
	ct_spec_build(a, copy, F_TUPLE, ct);
	lua_remove(L, copy);
	return ct;
}

static void set_scalar(const struct ct_arg *a, struct nf_expect *exp, size_t i, int idx)
{
	lua_State *L = a->L;
	enum nf_expect_attr attr = (enum nf_expect_attr)scalars[i].attr;

	switch (scalars[i].kind) {
	case K_STRING:
		nfexp_set_attr(exp, attr, ct_opt_string(L, idx, a->arg, scalars[i].name));
		break;
	case K_STATUS: {
		uint32_t flags = 0;
		const char *s = ct_opt_string(L, idx, a->arg, scalars[i].name);

		while (*s) {
			size_t len = strcspn(s, ",");
			int bit;

			for (bit = 0; flag_names[bit]; bit++)
				if (strlen(flag_names[bit]) == len && strncmp(flag_names[bit], s, len) == 0)
					break;
			if (!flag_names[bit])
				luaL_argerror(L, a->arg, lua_pushfstring(L, "unknown expectation flag in '%s'",
									 lua_tostring(L, idx)));
			flags |= 1u << bit;
			s += len + (s[len] == ',');
		}
		nfexp_set_attr_u32(exp, attr, flags);
		break;
	}
	default: {
		lua_Integer max = scalars[i].kind == K_U8 ? UINT8_MAX :
				  scalars[i].kind == K_U16 ? UINT16_MAX : UINT32_MAX;
		lua_Integer v = ct_opt_integer(L, idx, a->arg, scalars[i].name);

		if (v < 0 || v > max)
			luaL_argerror(L, a->arg, lua_pushfstring(L, "'%s' is out of range", scalars[i].name));
		if (scalars[i].kind == K_U8)
			nfexp_set_attr_u8(exp, attr, (uint8_t)v);
		else if (scalars[i].kind == K_U16)
			nfexp_set_attr_u16(exp, attr, (uint16_t)v);
		else
			nfexp_set_attr_u32(exp, attr, (uint32_t)v);
		break;
	}
	}
}

/* A mask that matches the expected tuple exactly: every address and port bit. */
static struct nf_conntrack *exact_mask(lua_State *L, const struct nf_conntrack *expected)
{
	static const uint8_t ones[16] = {
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	struct nf_conntrack *mask = ct_flow_alloc(L);
	bool v6 = nfct_get_attr_u8(expected, ATTR_ORIG_L3PROTO) == AF_INET6;

	nfct_set_attr_u8(mask, ATTR_ORIG_L3PROTO, nfct_get_attr_u8(expected, ATTR_ORIG_L3PROTO));
	nfct_set_attr_u8(mask, ATTR_ORIG_L4PROTO, nfct_get_attr_u8(expected, ATTR_ORIG_L4PROTO));
	nfct_set_attr(mask, v6 ? ATTR_ORIG_IPV6_SRC : ATTR_ORIG_IPV4_SRC, ones);
	nfct_set_attr(mask, v6 ? ATTR_ORIG_IPV6_DST : ATTR_ORIG_IPV4_DST, ones);
	nfct_set_attr_u16(mask, ATTR_ORIG_PORT_SRC, 0xffff);
	nfct_set_attr_u16(mask, ATTR_ORIG_PORT_DST, 0xffff);
	return mask;
}

/*
 * Fill exp from the table at spec: { expected = {...}, mask = {...},
 * master = {...}, nat = {...}, timeout =, zone =, flags =, helper =,
 * class =, fn =, nat_dir = }, for create (expected, master and timeout
 * required; an exact mask when none is given) or a lookup (expected alone
 * names an expectation). Objects made on the way are left on the stack,
 * owned by Lua. Returns the family of the expected tuple.
 */
uint8_t ct_expect_build(const struct ct_arg *a, int spec, bool create, struct nf_expect *exp)
{
	lua_State *L = a->L;
	struct nf_conntrack *ct[CT_EXPECT_TUPLES] = { NULL };

	luaL_checktype(L, a->arg, LUA_TTABLE);
	lua_pushnil(L);
	while (lua_next(L, spec)) {
		const char *key;
		bool known = false;

		lua_pop(L, 1);
		/* a number key must not be converted in place: lua_next would lose its way */
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_argerror(L, a->arg, lua_pushfstring(L, "field names must be strings, got %s",
								 luaL_typename(L, -1)));
		key = lua_tostring(L, -1);
		for (int i = 0; i < CT_EXPECT_TUPLES; i++)
			known = known || strcmp(key, tuples[i].name) == 0;
		for (size_t i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++)
			known = known || strcmp(key, scalars[i].name) == 0;
		if (!known)
			luaL_argerror(L, a->arg, lua_pushfstring(L, "unknown field '%s'", key));
	}
	ct[CT_EXPECTED] = build_tuple(a, spec, CT_EXPECTED, NULL);
	if (!ct[CT_EXPECTED])
		luaL_argerror(L, a->arg, "field 'expected' is required");
	for (int i = CT_EXPECTED + 1; i < CT_EXPECT_TUPLES; i++)
		ct[i] = build_tuple(a, spec, i, ct[CT_EXPECTED]);
	if (create && !ct[CT_MASTER])
		luaL_argerror(L, a->arg, "field 'master' is required");
	if (create && !ct[CT_MASK])
		ct[CT_MASK] = exact_mask(L, ct[CT_EXPECTED]);
	for (int i = 0; i < CT_EXPECT_TUPLES; i++)
		if (ct[i])
			nfexp_set_attr(exp, (enum nf_expect_attr)tuples[i].exp_attr, ct[i]);
	for (size_t i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++) {
		if (lua_getfield(L, spec, scalars[i].name) != LUA_TNIL)
			set_scalar(a, exp, i, lua_gettop(L));
		lua_pop(L, 1);
	}
	if (create && nfexp_attr_is_set(exp, ATTR_EXP_TIMEOUT) <= 0)
		luaL_argerror(L, a->arg, "field 'timeout' is required");
	return nfct_get_attr_u8(ct[CT_EXPECTED], ATTR_ORIG_L3PROTO);
}

void ct_expect_open(lua_State *L)
{
	static const luaL_Reg meta[] = {
		{ "__newindex", expect_newindex },
		{ "__pairs", expect_pairs },
		{ "__tostring", expect_tostring },
		{ "__gc", expect_gc },
		{ NULL, NULL }
	};
	static const luaL_Reg methods[] = {
		{ "totable", expect_totable },
		{ "format", expect_format },
		{ NULL, NULL }
	};

	luaL_newmetatable(L, CT_EXPECT_TYPE);
	luaL_setfuncs(L, meta, 0);
	luaL_newlib(L, methods);
	lua_pushcclosure(L, expect_index, 1);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
}
