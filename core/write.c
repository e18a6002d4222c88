/*
 * h:write(file, format[, filter[, options]]): a dump written straight to a
 * Lua file, one line per entry as flow:format(format) gives it. No Lua
 * object is made per entry (unless the filter has a predicate, which is
 * given the flow), so listing a large table costs what parsing and printing
 * cost, as in conntrack -L.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Writes one entry's line; false on an I/O error (errno says which). */
static bool write_line(FILE *out, const struct nf_conntrack *ct, const struct ct_format *fmt,
		       struct nfct_labelmap *map)
{
	char line[CT_FORMAT_MAX + 1];
	size_t len = ct_format_print(line, CT_FORMAT_MAX, ct, fmt, map);

	line[len++] = '\n';
	return fwrite(line, 1, len, out) == len;
}

/*
 * The next entry of the dump at idx: without a predicate the dump's parsed
 * entry, else the flow that passed it, pushed (the caller pops it). Returns
 * 1, 0 at the end, or -errno; a predicate's error propagates.
 */
static int next(lua_State *L, int idx, bool predicate, const struct nf_conntrack **ct)
{
	int ret;

	if (!predicate)
		return ct_dump_next_entry(lua_touserdata(L, idx), ct);
	ret = ct_dump_next_flow(L, idx);
	if (ret > 0)
		*ct = ((struct ct_flow *)lua_touserdata(L, -1))->ct;
	return ret;
}

/*
 * h:write(file, format[, filter[, options]]) -> count | nil, message, errno.
 * format is flow:format's table plus `header`, a text written before the
 * first line (an XML document's start); options are h:dump's. A kernel
 * error is raised, as by a dump loop; an I/O error is returned.
 */
int ct_handle_write(lua_State *L)
{
	static const char *const extra[] = { "header", NULL };
	luaL_Stream *file = luaL_checkudata(L, 2, LUA_FILEHANDLE);
	struct nfct_labelmap *map = NULL;
	const char *header = NULL;
	const struct nf_conntrack *ct;
	struct ct_format fmt;
	lua_Integer count = 0;
	bool predicate;
	uint16_t type;
	int dump, ret;

	ct_handle_check(L, 1);
	if (!file->closef)
		return luaL_argerror(L, 2, "attempt to use a closed file");
	lua_settop(L, 5);
	ct_format_parse(L, 3, extra, &fmt);
	if (lua_istable(L, 3) && lua_getfield(L, 3, "header") != LUA_TNIL)
		header = luaL_checkstring(L, -1);	/* stays on the stack while in use */
	type = ct_dump_type(L, 5);
	if (fmt.labels) {
		lua_getiuservalue(L, 1, CT_UV_LABELMAP);
		map = ct_labelmap_get(L, -1);
	}
	ret = ct_dump_push(L, 1, 4, 4, "write", type);
	if (ret)
		return ct_raise(L, "write", ret);
	dump = lua_gettop(L);
	predicate = ct_dump_has_predicate(L, dump);
	while ((ret = next(L, dump, predicate, &ct)) > 0) {
		bool ok = (count > 0 || !header || fputs(header, file->f) >= 0) &&
			  write_line(file->f, ct, &fmt, map);

		if (predicate)
			lua_pop(L, 1);
		if (!ok) {
			int err = errno;

			luaL_callmeta(L, dump, "__close");
			/* the file's error as io.write reports it: ct_fail's hints are the kernel's
			 * (its ENOSPC means no label storage, here a full disk) */
			errno = err;
			return luaL_fileresult(L, 0, "conntrack.write");
		}
		count++;
	}
	if (ret < 0)
		return ct_raise(L, "write", -ret);
	lua_pushinteger(L, count);
	return 1;
}
