/*
 * conntrack.signals{ "HUP", "TERM", ... }: signals as a pollable object.
 * The signals are blocked and read from a signalfd, so a script can wait
 * for events and signals at once (conntrack.poll) without a handler that
 * would have to reach the Lua state from anywhere. close() (or __gc)
 * restores the signal mask the process had.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/signalfd.h>

#define CT_SIGNALS_TYPE "conntrack.signals"

static const struct {
	const char *name;
	int number;
} names[] = {
	{ "HUP", SIGHUP }, { "INT", SIGINT }, { "QUIT", SIGQUIT }, { "TERM", SIGTERM },
	{ "USR1", SIGUSR1 }, { "USR2", SIGUSR2 }, { "ALRM", SIGALRM }, { "CHLD", SIGCHLD },
	{ "PIPE", SIGPIPE }, { "WINCH", SIGWINCH },
};

struct ct_signals {
	int fd;			/* -1 once closed */
	sigset_t set;		/* the signals taken */
	sigset_t unblock;	/* those of them the process had not blocked */
};

static int signal_number(const char *name)
{
	if (strncmp(name, "SIG", 3) == 0)
		name += 3;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(names[i].name, name) == 0)
			return names[i].number;
	return -1;
}

static const char *signal_name(int number)
{
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].number == number)
			return names[i].name;
	return "?";
}

static struct ct_signals *check_signals(lua_State *L, int idx)
{
	struct ct_signals *s = luaL_checkudata(L, idx, CT_SIGNALS_TYPE);

	if (s->fd < 0)
		luaL_error(L, "attempt to use a closed " CT_SIGNALS_TYPE);
	return s;
}

static int signals_close(lua_State *L)
{
	struct ct_signals *s = luaL_checkudata(L, 1, CT_SIGNALS_TYPE);

	if (s->fd >= 0) {
		close(s->fd);
		s->fd = -1;
		sigprocmask(SIG_UNBLOCK, &s->unblock, NULL);
	}
	return 0;
}

/* s:recv() -> { "HUP", ... }: the signals received since the last call, in order */
static int signals_recv(lua_State *L)
{
	struct ct_signals *s = check_signals(L, 1);
	struct signalfd_siginfo info;
	lua_Integer n = 0;

	lua_newtable(L);
	for (;;) {
		ssize_t got = read(s->fd, &info, sizeof(info));

		if (got < 0 && errno == EINTR)
			continue;
		if (got != (ssize_t)sizeof(info))
			break;
		lua_pushstring(L, signal_name((int)info.ssi_signo));
		lua_rawseti(L, -2, ++n);
	}
	return 1;
}

bool ct_signals_pollable(lua_State *L, int idx, struct ct_pollable *p)
{
	if (!luaL_testudata(L, idx, CT_SIGNALS_TYPE))
		return false;
	p->fd = check_signals(L, idx)->fd;
	p->timeout = -1;
	return true;
}

static int signals_pollfd(lua_State *L)
{
	lua_pushinteger(L, check_signals(L, 1)->fd);
	return 1;
}

static int signals_events(lua_State *L)
{
	check_signals(L, 1);
	lua_pushliteral(L, "r");
	return 1;
}

static int signals_timeout(lua_State *L)
{
	check_signals(L, 1);
	lua_pushnil(L);
	return 1;
}

static int signals_tostring(lua_State *L)
{
	struct ct_signals *s = luaL_checkudata(L, 1, CT_SIGNALS_TYPE);

	lua_pushfstring(L, CT_SIGNALS_TYPE " (%s)", s->fd < 0 ? "closed" : "open");
	return 1;
}

/* conntrack.signals{ name, ... } -> signals | nil, message, errno */
static int signals_new(lua_State *L)
{
	struct ct_signals *s;
	sigset_t old;

	luaL_checktype(L, 1, LUA_TTABLE);
	s = lua_newuserdatauv(L, sizeof(*s), 0);
	s->fd = -1;
	sigemptyset(&s->set);
	sigemptyset(&s->unblock);
	luaL_setmetatable(L, CT_SIGNALS_TYPE);
	for (lua_Integer i = 1; lua_rawgeti(L, 1, i) != LUA_TNIL; i++) {
		const char *name = ct_opt_string(L, -1, 1, "signal name");
		int number = signal_number(name);

		if (number < 0)
			luaL_argerror(L, 1, lua_pushfstring(L, "unknown signal '%s'", name));
		sigaddset(&s->set, number);
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	if (sigprocmask(SIG_BLOCK, &s->set, &old) < 0)
		return ct_fail(L, "signals", errno);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (sigismember(&s->set, names[i].number) && !sigismember(&old, names[i].number))
			sigaddset(&s->unblock, names[i].number);
	s->fd = signalfd(-1, &s->set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (s->fd < 0) {
		int err = errno;

		sigprocmask(SIG_UNBLOCK, &s->unblock, NULL);
		return ct_fail(L, "signals", err);
	}
	return 1;
}

void ct_signals_open(lua_State *L)
{
	static const luaL_Reg meta[] = {
		{ "__gc", signals_close },
		{ "__close", signals_close },
		{ "__tostring", signals_tostring },
		{ NULL, NULL }
	};
	static const luaL_Reg methods[] = {
		{ "recv", signals_recv },
		{ "pollfd", signals_pollfd },
		{ "events", signals_events },
		{ "timeout", signals_timeout },
		{ "close", signals_close },
		{ NULL, NULL }
	};

	luaL_newmetatable(L, CT_SIGNALS_TYPE);
	luaL_setfuncs(L, meta, 0);
	luaL_newlib(L, methods);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
	lua_pushcfunction(L, signals_new);
	lua_setfield(L, -2, "signals");
}
