/*
 * h:write(file, format[, filter[, options]]): a dump written straight to a
 * Lua file, one line per entry as flow:format(format) gives it, or as
 * json.flow does (format.json, through json_print.c). No Lua
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

/*
 * Entry e's line, its newline included, into the buffer (a userdata) at
 * idx; returns its length, or 0 with errno ENOMEM when e could not be
 * parsed for a printer that needed it. A JSON line longer than the buffer
 * (hundreds of long label names) gets a larger one, which replaces it at
 * idx; the text formats are cut at CT_FORMAT_MAX, as flow:format's are.
 */
static size_t format_line(lua_State *L, int idx, struct ct_entry *e, const struct ct_format *fmt,
			  bool json, struct nfct_labelmap *map)
{
	char *buf = lua_touserdata(L, idx);
	size_t room = lua_rawlen(L, idx) - 1, len;	/* 1: the newline */

	if (!json) {
		int n = ct_format_print(buf, room, e, fmt, map);

		if (n < 0)
			return 0;
		len = (size_t)n;
	} else {
		if (e->odd && !ct_entry_parse(e))
			return 0;
		while ((len = ct_json_flow(buf, room, e, map)) == 0) {
			room *= 2;
			buf = lua_newuserdatauv(L, room + 1, 0);
			lua_replace(L, idx);
		}
	}
	buf[len++] = '\n';
	return len;
}

/*
 * Lines gathered for one fwrite: glibc writes a block larger than the
 * file's own buffer with one system call, where line by line it made one
 * per 4 KiB and paid fwrite's call for every line.
 */
#define OUTPUT_BLOCK (64 * 1024)

struct output {
	FILE *f;
	size_t used;
	char data[OUTPUT_BLOCK];
};

static bool output_flush(struct output *o)
{
	bool ok = fwrite(o->data, 1, o->used, o->f) == o->used;

	o->used = 0;
	return ok;
}

static bool output_add(struct output *o, const char *text, size_t len)
{
	if (o->used + len > sizeof(o->data) && !output_flush(o))
		return false;
	if (len > sizeof(o->data))
		return fwrite(text, 1, len, o->f) == len;
	memcpy(o->data + o->used, text, len);
	o->used += len;
	return true;
}

/*
 * The next entry of the dump at idx: without a predicate the dump's entry,
 * else the flow that passed it, pushed (the caller pops it), its entry in
 * *flow. Returns 1, 0 at the end, or -errno; a predicate's error
 * propagates.
 */
static int next(lua_State *L, int idx, bool predicate, struct ct_entry *flow, struct ct_entry **e)
{
	int ret;

	if (!predicate)
		return ct_dump_next_entry(lua_touserdata(L, idx), e);
	ret = ct_dump_next_flow(L, idx);
	if (ret > 0) {
		ct_flow_entry(L, -1, flow);
		*e = flow;
	}
	return ret;
}

/*
 * h:write(file, format[, filter[, options]]) -> count | nil, message, errno.
 * format is flow:format's table plus `header`, a text written before the
 * first line (an XML document's start), and `json`: each line is then
 * json.flow's object of the entry, and no other option of flow:format may
 * be given; options are h:dump's. A kernel error is raised, as by a dump
 * loop; an I/O error is returned.
 */
int ct_handle_write(lua_State *L)
{
	static const char *const extra[] = { "header", "json", NULL };
	luaL_Stream *file = luaL_checkudata(L, 2, LUA_FILEHANDLE);
	struct nfct_labelmap *map = NULL;
	const char *header = NULL;
	struct ct_entry flow, *e;
	struct ct_format fmt;
	struct output *out;
	lua_Integer count = 0;
	bool predicate, json, ok = true;
	uint16_t type;
	int dump, buf, ret, err = 0;

	ct_handle_check(L, 1);
	if (!file->closef)
		return luaL_argerror(L, 2, "attempt to use a closed file");
	lua_settop(L, 5);
	ct_format_parse(L, 3, extra, &fmt);
	json = lua_istable(L, 3) && ct_format_flag(L, 3, "json");
	if (json && (fmt.output != NFCT_O_DEFAULT || fmt.flags || fmt.labels ||
		     fmt.type != NFCT_T_UNKNOWN))
		return luaL_argerror(L, 3, "option 'json' takes no other option of flow:format");
	if (lua_istable(L, 3) && lua_getfield(L, 3, "header") != LUA_TNIL)
		header = luaL_checkstring(L, -1);	/* stays on the stack while in use */
	type = ct_dump_type(L, 5);
	/* JSON names labels whenever it can, as flow:totable does */
	if (fmt.labels || json) {
		lua_getiuservalue(L, 1, CT_UV_LABELMAP);
		map = ct_labelmap_get(L, -1);
	}
	lua_newuserdatauv(L, CT_FORMAT_MAX + 1, 0);
	buf = lua_gettop(L);
	out = lua_newuserdatauv(L, sizeof(*out), 0);
	out->f = file->f;
	out->used = 0;
	ret = ct_dump_push(L, 1, 4, 4, "write", type);
	if (ret)
		return ct_raise(L, "write", ret);
	dump = lua_gettop(L);
	predicate = ct_dump_has_predicate(L, dump);
	while ((ret = next(L, dump, predicate, &flow, &e)) > 0) {
		size_t len;

		if (predicate && !file->closef) {	/* the predicate is Lua: it may close it */
			luaL_callmeta(L, dump, "__close");
			return luaL_error(L, "attempt to use a closed file");
		}
		len = format_line(L, buf, e, &fmt, json, map);
		if (predicate)
			ct_entry_release(&flow);	/* what a printer parsed */
		if (len == 0) {
			luaL_callmeta(L, dump, "__close");
			output_flush(out);	/* the lines before it */
			return ct_raise(L, "write", ENOMEM);
		}
		ok = (count > 0 || !header || output_add(out, header, strlen(header))) &&
		     output_add(out, lua_touserdata(L, buf), len);
		/* a predicate may raise: what it passed is in the file by then, line by line */
		if (predicate) {
			ok = ok && output_flush(out);
			lua_pop(L, 1);
		}
		if (!ok) {
			err = errno;
			luaL_callmeta(L, dump, "__close");
			break;
		}
		count++;
	}
	if (ok && !output_flush(out)) {
		ok = false;
		err = errno;
	}
	if (!ok) {
		/* the file's error as io.write reports it: ct_fail's hints are the kernel's
		 * (its ENOSPC means no label storage, here a full disk) */
		errno = err;
		return luaL_fileresult(L, 0, "conntrack.write");
	}
	if (ret < 0)
		return ct_raise(L, "write", -ret);
	lua_pushinteger(L, count);
	return 1;
}
