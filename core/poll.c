/*
 * conntrack.poll(objects, [seconds]): wait until one of several pollable
 * objects is ready. An object is pollable the way cqueues defines it:
 * :pollfd() gives a descriptor, :events() "r", "w" or "rw", and :timeout()
 * seconds until it needs attention anyway (nil for none). Events, signals
 * and any foreign object with these methods mix in one wait.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <string.h>
#include <time.h>

#define POLL_MAX 64

/* Calls obj:name() (obj is object number i of the list) and leaves the result on the stack. */
static int call_method(lua_State *L, int obj, const char *name, lua_Integer i)
{
	if (lua_type(L, obj) != LUA_TTABLE && lua_type(L, obj) != LUA_TUSERDATA)
		luaL_error(L, "bad argument #1 to 'poll' (object %d is a %s, not pollable)", (int)i,
			   luaL_typename(L, obj));
	if (lua_getfield(L, obj, name) != LUA_TFUNCTION)
		luaL_error(L, "bad argument #1 to 'poll' (object %d has no method '%s')", (int)i, name);
	lua_pushvalue(L, obj);
	lua_call(L, 1, 1);
	return lua_type(L, -1);
}

/* The wait, in seconds (-1: none), shortened to an object's own timeout when it is due sooner. */
static double sooner(double seconds, double due)
{
	return due >= 0 && (seconds < 0 || due < seconds) ? due : seconds;
}

/* conntrack.poll(objects, [seconds]) -> { ready object, ... } (empty on timeout) */
static int poll_objects(lua_State *L)
{
	struct pollfd fds[POLL_MAX];
	double due[POLL_MAX];	/* each object's own timeout, -1 for none */
	double seconds = luaL_optnumber(L, 2, -1);
	lua_Integer n;
	int ready;

	luaL_checktype(L, 1, LUA_TTABLE);
	n = luaL_len(L, 1);
	luaL_argcheck(L, n <= POLL_MAX, 1, "too many objects");
	lua_settop(L, 2);
	for (lua_Integer i = 1; i <= n; i++) {
		struct pollfd *p = &fds[i - 1];
		struct ct_pollable own;
		const char *events;

		lua_geti(L, 1, i);	/* 3: the object */
		/* this module's objects are read in C: an event loop polls on
		 * every wakeup, and six method calls cost more than the poll */
		if (ct_events_pollable(L, 3, &own) || ct_signals_pollable(L, 3, &own)) {
			*p = (struct pollfd){ .fd = own.fd, .events = POLLIN };
			due[i - 1] = own.timeout;
			seconds = sooner(seconds, due[i - 1]);
			lua_settop(L, 2);
			continue;
		}
		call_method(L, 3, "pollfd", i);
		if (!lua_isinteger(L, -1))
			luaL_error(L, "bad argument #1 to 'poll' (object %d's pollfd() gave %s, "
				   "not a descriptor)", (int)i, luaL_typename(L, -1));
		p->fd = (int)lua_tointeger(L, -1);
		call_method(L, 3, "events", i);
		events = luaL_optstring(L, -1, "r");
		p->events = (short)((strchr(events, 'r') ? POLLIN : 0) | (strchr(events, 'w') ? POLLOUT : 0));
		p->revents = 0;
		due[i - 1] = call_method(L, 3, "timeout", i) == LUA_TNUMBER ? fmax(lua_tonumber(L, -1), 0) : -1;
		seconds = sooner(seconds, due[i - 1]);
		lua_settop(L, 2);
	}
	ready = poll(fds, (nfds_t)n, seconds < 0 ? -1 : (int)ceil(seconds * 1000));
	if (ready < 0 && errno != EINTR)
		return ct_fail(L, "poll", errno);
	lua_newtable(L);
	for (lua_Integer i = 1; i <= n; i++) {
		bool timed_out = due[i - 1] == 0 || (ready == 0 && due[i - 1] >= 0 && due[i - 1] <= seconds);

		if (fds[i - 1].revents || timed_out) {
			lua_geti(L, 1, i);
			lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
		}
	}
	return 1;
}

/* conntrack.monotonic() -> seconds on a clock that never jumps (for timers) */
static int monotonic(lua_State *L)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
	return 1;
}

void ct_poll_open(lua_State *L)
{
	lua_pushcfunction(L, poll_objects);
	lua_setfield(L, -2, "poll");
	lua_pushcfunction(L, monotonic);
	lua_setfield(L, -2, "monotonic");
}
