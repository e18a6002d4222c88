/*
 * ev:writer(file, format): flow events written straight to a Lua file,
 * one line each, as flow:format gives it with the event's kind as its
 * prefix; no Lua object is made for an event that needs none (no predicate,
 * no resync view). It is to events what h:write is to a dump: a listener
 * that keeps up wakes for an event or two, and the Lua objects of each
 * (an event table, a flow, a string) were most of what it cost.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <errno.h>
#include <stdio.h>
#include <linux/netfilter/nfnetlink.h>

/* conntrack -E's part after the line of a change a process made */
#define REQUESTER_PART " [USERSPACE] portid=4294967295 progname="

/* What a write needs besides the events object. */
struct writer {
	FILE *f;
	struct ct_format fmt;
	bool requester;		/* append REQUESTER_PART and the requester's name */
	const char *header;	/* before the first line, or NULL */
	struct nfct_labelmap *map;
	/* a line, the requester's part and the newline */
	char line[CT_FORMAT_MAX + sizeof(REQUESTER_PART) + sizeof(((struct ct_requester *)0)->name)];
};

/* The NFCT_T_* of an event kind ("new", "update", "destroy"). */
static unsigned int kind_type(const char *kind)
{
	return kind[0] == 'n' ? NFCT_T_NEW : kind[0] == 'u' ? NFCT_T_UPDATE : NFCT_T_DESTROY;
}

/*
 * Entry e's line as an event of the kind type, made by portid (0: the
 * kernel), to w's file. Returns 1, 0 when e could not be parsed for a
 * printer that needed it (ENOMEM waits in the object, as recv's errors
 * do), or -errno of the file.
 */
static int write_event(struct ct_events *ev, struct writer *w, struct ct_entry *e,
		       unsigned int type, uint32_t portid)
{
	size_t len;
	int n;

	w->fmt.type = type;
	n = ct_format_print(w->line, CT_FORMAT_MAX, e, &w->fmt, w->map);
	if (n < 0) {
		ev->pending_err = ENOMEM;
		return 0;
	}
	len = (size_t)n;
	if (portid && w->requester) {
		const char *name = ct_requester_name(&ev->requester, portid);
		size_t room = sizeof(w->line) - 1 - len;	/* 1: the newline */
		int part = name ? snprintf(w->line + len, room + 1, " [USERSPACE] portid=%u progname=%s",
					   portid, name) :
				  snprintf(w->line + len, room + 1, " [USERSPACE] portid=%u", portid);

		len += part < 0 ? 0 : (size_t)part < room ? (size_t)part : room;
	}
	w->line[len++] = '\n';
	errno = 0;
	if ((w->header && fputs(w->header, w->f) < 0) || fwrite(w->line, 1, len, w->f) != len)
		return -(errno ? errno : EIO);
	w->header = NULL;
	return 1;
}

/*
 * A received flow message written without a Lua object: indexed (and
 * parsed only for a C filter term or a printer that needs it). Returns 1 when
 * written, 0 when not (the filter dropped it, or an error waits: a
 * malformed message is an error for later, as recv makes it), or -errno.
 */
static int write_message(struct ct_events *ev, struct writer *w, const struct nlmsghdr *nlh,
			 const char *kind)
{
	struct ct_entry e;
	int ret = 0, pass;

	if (!ct_flow_msg_valid(nlh)) {
		ev->pending_err = EBADMSG;
		return 0;
	}
	ct_entry_index(&e, nlh);
	pass = ct_filter_match(&ev->filter, &e);
	if (pass < 0)
		ev->pending_err = ENOMEM;
	else if (pass)
		ret = write_event(ev, w, &e, kind_type(kind), nlh->nlmsg_pid);
	ct_entry_release(&e);
	return ret;
}

/* Removes the first event of the queue at index queue and pushes it. */
static void shift_queue(lua_State *L, int queue)
{
	lua_Integer n = (lua_Integer)lua_rawlen(L, queue);

	lua_rawgeti(L, queue, 1);
	for (lua_Integer i = 1; i < n; i++) {
		lua_rawgeti(L, queue, i + 1);
		lua_rawseti(L, queue, i);
	}
	lua_pushnil(L);
	lua_rawseti(L, queue, n);
}

/* Writes the queued flow event below its flow on the stack, and pops both. */
static int write_queued(lua_State *L, struct ct_events *ev, struct writer *w)
{
	struct ct_entry e;
	int ret;

	ct_flow_entry(L, -1, &e);
	lua_getfield(L, -2, "kind");
	lua_getfield(L, -3, "portid");
	ret = write_event(ev, w, &e, kind_type(lua_tostring(L, -2)), (uint32_t)lua_tointeger(L, -1));
	ct_entry_release(&e);
	lua_pop(L, 4);
	return ret;
}

/* format's options besides flow:format's (their check is ct_format_parse's). */
static void parse_writer(lua_State *L, struct writer *w)
{
	static const char *const extra[] = { "header", "requester", NULL };

	ct_format_parse(L, 3, extra, &w->fmt);
	if (w->fmt.type != NFCT_T_UNKNOWN)
		luaL_argerror(L, 3, "option 'event' is each event's own kind");
	w->requester = lua_istable(L, 3) && ct_format_flag(L, 3, "requester");
	w->header = NULL;
	if (lua_istable(L, 3)) {
		int type = lua_getfield(L, 3, "header");

		if (type != LUA_TNIL && type != LUA_TSTRING)
			luaL_argerror(L, 3, "option 'header' must be a string");
		w->header = lua_tostring(L, -1);
		lua_setiuservalue(L, -2, 1);	/* w keeps it (or nil) */
	}
	w->map = NULL;
	if (w->fmt.labels) {
		lua_getiuservalue(L, 1, CT_UV_LABELMAP);
		w->map = ct_labelmap_get(L, -1);	/* the events object keeps it */
		lua_pop(L, 1);
	}
}

/*
 * The writer function: write([max]) -> count[, event] | nil, message, errno
 * (see ct_events_writer). Its upvalues: the events object, the file, the
 * writer.
 */
static int write_events(lua_State *L)
{
	lua_Integer max = luaL_optinteger(L, 1, 256), count = 0;
	struct ct_events *ev;
	luaL_Stream *file = lua_touserdata(L, lua_upvalueindex(2));
	struct writer *w = lua_touserdata(L, lua_upvalueindex(3));
	bool drained = false, direct;
	int queue, ret = 0;

	luaL_argcheck(L, max > 0, 1, "must be positive");
	lua_settop(L, 0);
	lua_pushvalue(L, lua_upvalueindex(1));	/* 1: what ct_events_step takes */
	ev = ct_events_check(L, 1);
	if (!file->closef)
		return luaL_error(L, "attempt to use a closed file");
	w->f = file->f;
	lua_getiuservalue(L, 1, CT_EV_UV_PREDICATE);
	direct = lua_isnil(L, -1) && !ev->seen;
	lua_getiuservalue(L, 1, CT_EV_UV_QUEUE);
	queue = lua_gettop(L);
	while (count < max && ret >= 0) {
		const struct nlmsghdr *nlh;
		const char *kind;

		/* what recv or a step below queued comes first, in order */
		if (lua_rawlen(L, queue) > 0) {
			shift_queue(L, queue);
			if (lua_getfield(L, -1, "flow") != LUA_TUSERDATA) {
				lua_pop(L, 1);
				lua_pushinteger(L, count);
				lua_insert(L, -2);
				return 2;
			}
			ret = write_queued(L, ev, w);
			count += ret > 0;
			continue;
		}
		switch (ct_events_step(L, ev, queue, &drained, &nlh)) {
		case CT_EV_DONE:
			goto done;
		case CT_EV_QUEUED:
			continue;
		case CT_EV_MESSAGE:
			kind = ct_event_kind(nlh);
			if (direct && kind && nlh->nlmsg_type >> 8 == NFNL_SUBSYS_CTNETLINK) {
				ret = write_message(ev, w, nlh, kind);
				count += ret > 0;
			} else {
				ct_events_queue(L, ev, 1, queue, nlh);
			}
			break;
		}
	}
done:
	if (ret < 0) {	/* io.write's three results, and the events written before */
		errno = -ret;
		luaL_fileresult(L, 0, "conntrack.write");
		lua_pushinteger(L, count);
		return 4;
	}
	if (count == 0 && ev->pending_err) {
		int err = ev->pending_err;

		ev->pending_err = 0;
		return ct_fail(L, "recv", err);	/* the receive's, as recv reports it */
	}
	lua_pushinteger(L, count);
	return 1;
}

/*
 * ev:writer(file, format) -> write. write([max]) -> count[, event] |
 * nil, message, errno receives as ev:recv does (never blocks) and writes
 * up to max (default 256) flow events to file, each as flow:format(format)
 * with the event's kind. format also takes `header` (written before the
 * writer's first line) and `requester` (conntrack -E's " [USERSPACE]
 * portid=N progname=P" after the line of a change that a process made
 * through ctnetlink). write stops at the first event it does not write
 * (an overrun, an expectation's event) and returns it after the count:
 * the caller handles it, then writes on. A receive error is returned once
 * no event is left before it; a file's error as io.write returns it, then
 * the count of the events written before it (the one being written is lost). The format is read once, here: a listener
 * that keeps up calls write for every event or two.
 */
int ct_events_writer(lua_State *L)
{
	struct writer *w;

	ct_events_check(L, 1);
	luaL_checkudata(L, 2, LUA_FILEHANDLE);
	lua_settop(L, 3);
	w = lua_newuserdatauv(L, sizeof(*w), 1);
	parse_writer(L, w);
	lua_pushvalue(L, 1);
	lua_pushvalue(L, 2);
	lua_pushvalue(L, 4);
	lua_pushcclosure(L, write_events, 3);
	return 1;
}
