/*
 * A filter is a partial flow: field = value, with masks and CIDR where they
 * mean something, plus optionally a Lua predicate at [1] (or the filter is
 * just a function). What the kernel can do goes into the dump request; C
 * re-checks every term on each entry, so results never depend on what the
 * running kernel supports.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/netfilter/nfnetlink_conntrack.h>

static void family_check(const struct ct_arg *a, struct ct_filter *filter, uint8_t family,
			 const char *name)
{
	if (filter->family != AF_UNSPEC && filter->family != family)
		luaL_argerror(a->L, a->arg,
			      lua_pushfstring(a->L, "field '%s' mixes IPv4 and IPv6", name));
	filter->family = family;
}

void ct_filter_compile(const struct ct_arg *a, int idx, struct ct_filter *filter)
{
	lua_State *L = a->L;

	memset(filter, 0, sizeof(*filter));
	filter->family = AF_UNSPEC;
	idx = lua_absindex(L, idx);
	switch (lua_type(L, idx)) {
	case LUA_TNONE:
	case LUA_TNIL:
		return;
	case LUA_TFUNCTION:
		filter->has_predicate = true;
		return;
	case LUA_TTABLE:
		break;
	default:
		luaL_argerror(L, a->arg, lua_pushfstring(L, "table, function or nil expected, got %s",
							 luaL_typename(L, idx)));
	}
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		const struct ct_field *f;
		struct ct_value *want;

		if (lua_isinteger(L, -2) && lua_tointeger(L, -2) == 1 &&
		    lua_type(L, -1) == LUA_TFUNCTION) {
			filter->has_predicate = true;
			lua_pop(L, 1);
			continue;
		}
		f = ct_field_check(a, -2, F_FILTER);
		want = &filter->terms[filter->nterms].want;
		filter->terms[filter->nterms++].field = f;
		ct_field_parse(a, f, -1, want);
		if (want->negate)
			;	/* "not this address" says nothing about the family */
		else if (f->kind == K_FAMILY)
			family_check(a, filter, (uint8_t)want->v.num, f->name);
		else if (f->kind == K_ADDR)
			family_check(a, filter, want->family, f->name);
		lua_pop(L, 1);
	}
}

/* Pushes the predicate of the filter at idx (or nil). */
void ct_filter_push_predicate(lua_State *L, int idx)
{
	if (lua_type(L, idx) == LUA_TFUNCTION)
		lua_pushvalue(L, idx);
	else if (lua_type(L, idx) == LUA_TTABLE)
		lua_geti(L, idx, 1);
	else
		lua_pushnil(L);
}

/* The protocol every match has, from a positive proto term, or -1. */
int ct_filter_proto(const struct ct_filter *filter)
{
	for (size_t i = 0; i < filter->nterms; i++)
		if (filter->terms[i].field->kind == K_PROTO && !filter->terms[i].want.negate)
			return (int)filter->terms[i].want.v.num;
	return -1;
}

/*
 * Whether entry e passes the filter: 1 or 0, or -1 with errno ENOMEM. An
 * odd entry is parsed first (ct_entry_parse).
 */
int ct_filter_match(const struct ct_filter *filter, struct ct_entry *e)
{
	if (!filter->nterms)
		return 1;
	if (e->odd && !ct_entry_parse(e))
		return -1;
	for (size_t i = 0; i < filter->nterms; i++) {
		const struct ct_value *want = &filter->terms[i].want;

		if (ct_field_match(filter->terms[i].field, want, e) == want->negate)
			return 0;
	}
	return 1;
}

/*
 * Push { kernel = { names }, c = { names }, predicate = bool }: which terms
 * the kernel applies (C checks every term again), and whether a Lua
 * predicate runs last.
 */
void ct_filter_explain(lua_State *L, const struct ct_filter *filter)
{
	lua_createtable(L, 0, 3);
	lua_newtable(L);
	lua_newtable(L);
	for (size_t i = 0; i < filter->nterms; i++) {
		int list = filter->terms[i].in_kernel ? -2 : -1;

		lua_Integer n = luaL_len(L, list);

		lua_pushstring(L, filter->terms[i].field->name);
		lua_rawseti(L, list - 1, n + 1);
	}
	lua_setfield(L, -3, "c");
	lua_setfield(L, -2, "kernel");
	lua_pushboolean(L, filter->has_predicate);
	lua_setfield(L, -2, "predicate");
}
