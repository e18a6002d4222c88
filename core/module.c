/*
 * luaopen_conntrack_core: registers the metatables and returns the module
 * table: open(), the list of fields (from ct_fields[], built when asked for)
 * and the version.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"
#include "module.h"

/* field_list() -> { { name =, doc =, set =, read =, filter =, create =, change =,
 * tuple = }, ... }: lua/conntrack.lua builds conntrack.fields with it on first use */
static int field_list(lua_State *L)
{
	static const struct {
		const char *key;
		unsigned flag;
	} uses[] = {
		{ "read", F_READ }, { "filter", F_FILTER }, { "tuple", F_TUPLE }, { "create", F_CREATE },
		{ "change", F_CHANGE },
	};

	lua_createtable(L, (int)ct_nfields, 0);
	for (size_t i = 0; i < ct_nfields; i++) {
		lua_createtable(L, 0, 8);
		lua_pushstring(L, ct_fields[i].name);
		lua_setfield(L, -2, "name");
		lua_pushstring(L, ct_fields[i].doc);
		lua_setfield(L, -2, "doc");
		lua_pushboolean(L, ct_field_is_set(&ct_fields[i]));
		lua_setfield(L, -2, "set");
		for (size_t u = 0; u < sizeof(uses) / sizeof(uses[0]); u++) {
			lua_pushboolean(L, (ct_fields[i].flags & uses[u].flag) != 0);
			lua_setfield(L, -2, uses[u].key);
		}
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	return 1;
}

/* methods = { handle = ..., events = ... }: the method tables, which
 * lua/conntrack.lua extends with the parts written in Lua */
static void push_method_tables(lua_State *L)
{
	static const struct {
		const char *key, *type;
	} types[] = { { "handle", CT_HANDLE_TYPE }, { "events", CT_EVENTS_TYPE } };

	lua_createtable(L, 0, 2);
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		luaL_getmetatable(L, types[i].type);
		lua_getfield(L, -1, "__index");
		lua_setfield(L, -3, types[i].key);
		lua_pop(L, 1);
	}
}

int luaopen_conntrack_core(lua_State *L)
{
	ct_error_open(L);
	ct_fields_open(L);
	ct_labelmap_open(L);
	ct_flow_open(L);
	ct_netns_open(L);
	ct_dump_open(L);
	ct_expect_open(L);
	ct_events_open(L);
	lua_newtable(L);
	ct_handle_open(L);
	ct_save_line_open(L);
	ct_poll_open(L);
	ct_file_open(L);
	ct_requester_open(L);
	ct_signals_open(L);
	push_method_tables(L);
	lua_setfield(L, -2, "methods");
	lua_pushcfunction(L, field_list);
	lua_setfield(L, -2, "field_list");
	lua_pushliteral(L, CT_VERSION);
	lua_setfield(L, -2, "version");
	return 1;
}
