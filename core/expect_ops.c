/*
 * The handle's methods for the expectation table: expect_dump, expect_get,
 * expect_create, expect_delete, expect_flush. They mirror the conntrack
 * table's methods; an expectation is named by its expected tuple.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <errno.h>
#include <string.h>
#include <linux/netfilter/nfnetlink_conntrack.h>

/* h:expect_dump([filter]) -> iterator: the filter takes a family and a predicate. */
static int expect_dump(lua_State *L)
{
	int err;

	ct_handle_check(L, 1);
	lua_settop(L, 2);
	if (lua_type(L, 2) == LUA_TTABLE) {
		lua_pushnil(L);
		while (lua_next(L, 2)) {
			lua_pop(L, 1);
			if (!(lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "family") == 0) &&
			    !(lua_isinteger(L, -1) && lua_tointeger(L, -1) == 1))
				luaL_argerror(L, 2, lua_pushfstring(L, "an expectation filter takes 'family' "
								    "and a predicate, not '%s'",
								    luaL_tolstring(L, -1, NULL)));
		}
	}
	lua_pushcfunction(L, ct_dump_iter);
	err = ct_dump_push(L, 1, 2, 2, "expect_dump", EXP_MSG(IPCTNL_MSG_EXP_GET));
	if (err)
		return ct_raise(L, "expect_dump", err);
	lua_pushnil(L);
	lua_pushvalue(L, -2);
	return 4;
}

/*
 * The expectation that argument 2 names, an expectation object or a table
 * (create: the whole spec), built into exp; objects made on the way stay
 * on the stack. Returns the family of its expected tuple.
 */
static uint8_t expect_arg(lua_State *L, struct nf_expect *exp, bool create)
{
	struct ct_expect *e = create ? NULL : luaL_testudata(L, 2, CT_EXPECT_TYPE);
	struct ct_arg a = { L, 2, 3, false };

	if (e) {
		luaL_argcheck(L, e->exp && e->tuple[CT_EXPECTED], 2, "empty " CT_EXPECT_TYPE);
		nfexp_set_attr(exp, ATTR_EXP_EXPECTED, e->tuple[CT_EXPECTED]);
		if (nfexp_attr_is_set(e->exp, ATTR_EXP_ZONE) > 0)
			nfexp_set_attr_u16(exp, ATTR_EXP_ZONE, nfexp_get_attr_u16(e->exp, ATTR_EXP_ZONE));
		return nfct_get_attr_u8(e->tuple[CT_EXPECTED], ATTR_ORIG_L3PROTO);
	}
	return ct_expect_build(&a, 2, create, exp);
}

/* A new, empty nf_expect owned by an expectation object pushed on the stack. */
static struct nf_expect *expect_alloc(lua_State *L)
{
	struct ct_expect *owner = ct_expect_new(L);

	owner->exp = nfexp_new();
	if (!owner->exp)
		luaL_error(L, "not enough memory");
	return owner->exp;
}

/* One request about exp (NULL: all expectations), answered by cb's messages and an ACK. */
static int request(struct ct_handle *h, uint16_t type, uint16_t flags, const struct nf_expect *exp,
		   uint8_t family, mnl_cb_t cb, void *data)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh;

	nlh = ct_request_header(buf, EXP_MSG(type), NLM_F_ACK | flags, family, ++h->sock.seq);
	if (exp)
		nfexp_nlmsg_build(nlh, exp);
	return ct_socket_talk(&h->sock, nlh, buf, sizeof(buf), cb, data);
}

/* h:expect_get(expectation | { expected = tuple, zone = }) -> expectation | nil, message, errno */
static int expect_get(lua_State *L)
{
	struct ct_handle *h = ct_handle_check(L, 1);
	struct nf_expect *exp;
	struct ct_expect *found;
	uint8_t family;
	int err;

	lua_settop(L, 2);
	lua_getiuservalue(L, 1, CT_UV_LABELMAP);
	exp = expect_alloc(L);
	family = expect_arg(L, exp, false);
	found = ct_expect_new(L);
	err = request(h, IPCTNL_MSG_EXP_GET, 0, exp, family, ct_expect_parse_cb, found);
	if (!err && !found->exp)
		err = EPROTO;	/* an ACK alone: the kernel sends the expectation before it */
	if (err)
		return ct_fail(L, "expect_get", err);
	/* the kernel does not report an expectation's zone: keep the one it was found in,
	 * so that get, then delete of the result, works in a zone too */
	if (nfexp_attr_is_set(exp, ATTR_EXP_ZONE) > 0 && nfexp_attr_is_set(found->exp, ATTR_EXP_ZONE) <= 0)
		nfexp_set_attr_u16(found->exp, ATTR_EXP_ZONE, nfexp_get_attr_u16(exp, ATTR_EXP_ZONE));
	return 1;
}

/* Sends the expectation argument 2 names; pushes true or nil, message, errno. */
static int expect_change(lua_State *L, const char *op, uint16_t type, uint16_t flags, bool create)
{
	struct ct_handle *h = ct_handle_check(L, 1);
	struct nf_expect *exp;
	uint8_t family;
	int err;

	lua_settop(L, 2);
	lua_getiuservalue(L, 1, CT_UV_LABELMAP);
	exp = expect_alloc(L);
	family = expect_arg(L, exp, create);
	err = request(h, type, flags, exp, family, NULL, NULL);
	if (err)
		return ct_fail(L, op, err);
	lua_pushboolean(L, 1);
	return 1;
}

/* h:expect_create(spec) -> true | nil, message, errno */
static int expect_create(lua_State *L)
{
	return expect_change(L, "expect_create", IPCTNL_MSG_EXP_NEW, NLM_F_CREATE | NLM_F_EXCL, true);
}

/*
 * h:expect_delete(expectation | { expected = tuple }) -> true | nil, message, errno.
 * The expected tuple is required: without it the kernel would flush them all.
 */
static int expect_delete(lua_State *L)
{
	return expect_change(L, "expect_delete", IPCTNL_MSG_EXP_DELETE, 0, false);
}

/* h:expect_flush() -> true | nil, message, errno */
static int expect_flush(lua_State *L)
{
	struct ct_handle *h = ct_handle_check(L, 1);
	int err = request(h, IPCTNL_MSG_EXP_DELETE, 0, NULL, AF_UNSPEC, NULL, NULL);

	if (err)
		return ct_fail(L, "expect_flush", err);
	lua_pushboolean(L, 1);
	return 1;
}

/* Adds the methods to the handle's method table on the stack top. */
void ct_expect_methods(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{ "expect_dump", expect_dump },
		{ "expect_get", expect_get },
		{ "expect_create", expect_create },
		{ "expect_delete", expect_delete },
		{ "expect_flush", expect_flush },
		{ NULL, NULL }
	};

	luaL_setfuncs(L, methods, 0);
}
