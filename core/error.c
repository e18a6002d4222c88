/*
 * The two error tiers that reach Lua from the kernel: a refusal returned
 * as nil, message, errno (ct_fail), and, where a return value cannot carry
 * it (inside a for loop), a raised conntrack.error object (ct_raise).
 * Callers save errno before any Lua call and pass it here.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <errno.h>
#include <string.h>

void ct_push_message(lua_State *L, const char *op, int err)
{
	switch (err) {
	case EPERM:
		lua_pushfstring(L, "conntrack.%s: %s (CAP_NET_ADMIN is needed; "
				"`unshare -rn` gives a private table without root)", op, strerror(err));
		break;
	case ENOSPC:
		lua_pushfstring(L, "conntrack.%s: %s (the entry has no label storage: the kernel "
				"gives it only to entries created while an nft rule uses 'ct label')",
				op, strerror(err));
		break;
	case EBADMSG:
		/* nlvalidate.c refused it: libnetfilter_conntrack would exit() */
		lua_pushfstring(L, "conntrack.%s: malformed ctnetlink message from the kernel "
				"(an attribute of the wrong length or type); it was not parsed", op);
		break;
	case EINTR:
		/* libmnl's report of NLM_F_DUMP_INTR: interrupted syscalls are retried */
		lua_pushfstring(L, "conntrack.%s: the table changed during the dump "
				"(NLM_F_DUMP_INTR); retry", op);
		break;
	default:
		lua_pushfstring(L, "conntrack.%s: %s", op, strerror(err));
		break;
	}
}

int ct_fail(lua_State *L, const char *op, int err)
{
	lua_pushnil(L);
	ct_push_message(L, op, err);
	lua_pushinteger(L, err);
	return 3;
}

/* Raises { op = op, errno = err, message = "..." } whose tostring is the message. */
int ct_raise(lua_State *L, const char *op, int err)
{
	lua_createtable(L, 0, 3);
	lua_pushstring(L, op);
	lua_setfield(L, -2, "op");
	lua_pushinteger(L, err);
	lua_setfield(L, -2, "errno");
	ct_push_message(L, op, err);
	lua_setfield(L, -2, "message");
	luaL_setmetatable(L, CT_ERROR_TYPE);
	return lua_error(L);
}

/*
 * Misuse checks for option tables. The table at idx is argument arg of the
 * running function: every key must be one of names, else
 * "bad argument #arg to 'f' (unknown option 'x')".
 */
void ct_check_options(lua_State *L, int idx, int arg, const char *const *names)
{
	idx = lua_absindex(L, idx);
	luaL_checktype(L, idx, LUA_TTABLE);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		ct_check_choice(L, -1, arg, "option", NULL, names);
	}
}

/* The index in names of the string at idx (def when it is nil), raising "(unknown what 'x')". */
int ct_check_choice(lua_State *L, int idx, int arg, const char *what, const char *def,
		    const char *const *names)
{
	const char *s = lua_isnil(L, idx) && def ? def : lua_tostring(L, idx);

	for (int i = 0; s && lua_type(L, idx) != LUA_TNUMBER && names[i]; i++)
		if (strcmp(names[i], s) == 0)
			return i;
	return luaL_argerror(L, arg, lua_pushfstring(L, "unknown %s '%s'", what,
						     luaL_tolstring(L, idx, NULL)));
}

/* The value at idx, the option name of argument arg, which must be a string. */
const char *ct_opt_string(lua_State *L, int idx, int arg, const char *name)
{
	if (lua_type(L, idx) != LUA_TSTRING)
		luaL_argerror(L, arg, lua_pushfstring(L, "'%s' must be a string, got %s", name,
						      luaL_typename(L, idx)));
	return lua_tostring(L, idx);
}

/* The value at idx, the option name of argument arg, which must be an integer. */
lua_Integer ct_opt_integer(lua_State *L, int idx, int arg, const char *name)
{
	int isnum;
	lua_Integer v = lua_tointegerx(L, idx, &isnum);

	if (!isnum || lua_type(L, idx) != LUA_TNUMBER)
		luaL_argerror(L, arg, lua_pushfstring(L, "'%s' must be an integer, got %s", name,
						      luaL_typename(L, idx)));
	return v;
}

static int error_tostring(lua_State *L)
{
	lua_getfield(L, 1, "message");
	return 1;
}

void ct_error_open(lua_State *L)
{
	luaL_newmetatable(L, CT_ERROR_TYPE);
	lua_pushcfunction(L, error_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pop(L, 1);
}
