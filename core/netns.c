/*
 * conntrack.open{ netns = NAME | PATH }: a handle on another network
 * namespace's table. Its sockets are created in that namespace by a short
 * thread that enters it, so the program itself never leaves its own
 * namespace (setns changes only the calling thread) and cannot be left in
 * the wrong one by an error. A socket stays in the namespace it was made in.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

struct ct_netns {
	int fd;		/* -1: the program's own namespace */
};

static int netns_gc(lua_State *L)
{
	struct ct_netns *ns = luaL_checkudata(L, 1, CT_NETNS_TYPE);

	if (ns->fd >= 0) {
		close(ns->fd);
		ns->fd = -1;
	}
	return 0;
}

/*
 * Pushes the namespace named by spec (NULL: our own): a name from
 * `ip netns` (/run/netns/NAME) or a path such as /proc/PID/ns/net.
 * Returns 0 or an errno value.
 */
int ct_netns_new(lua_State *L, const char *spec)
{
	struct ct_netns *ns = lua_newuserdatauv(L, sizeof(*ns), 0);
	char path[4096];

	ns->fd = -1;
	luaL_setmetatable(L, CT_NETNS_TYPE);
	if (!spec)
		return 0;
	if (strchr(spec, '/'))
		snprintf(path, sizeof(path), "%s", spec);
	else
		snprintf(path, sizeof(path), "/run/netns/%s", spec);
	ns->fd = open(path, O_RDONLY | O_CLOEXEC);
	return ns->fd < 0 ? errno : 0;
}

/* The descriptor of the namespace object at idx, or -1 for our own. */
int ct_netns_fd(lua_State *L, int idx)
{
	struct ct_netns *ns = luaL_testudata(L, idx, CT_NETNS_TYPE);

	return ns ? ns->fd : -1;
}

struct open_job {
	struct ct_socket *sock;
	int netns, flags, err;
	unsigned int groups;
};

static void *open_in_netns(void *arg)
{
	struct open_job *job = arg;

	if (setns(job->netns, CLONE_NEWNET) < 0)
		job->err = errno;
	else
		job->err = ct_socket_open(job->sock, job->groups, job->flags);
	return NULL;
}

/* ct_socket_open in the namespace netns (-1: ours). */
int ct_socket_open_in(struct ct_socket *s, int netns, unsigned int groups, int flags)
{
	struct open_job job = { s, netns, flags, 0, groups };
	pthread_t thread;
	int err;

	if (netns < 0)
		return ct_socket_open(s, groups, flags);
	err = pthread_create(&thread, NULL, open_in_netns, &job);
	if (err)
		return err;
	pthread_join(thread, NULL);
	return job.err;
}

void ct_netns_open(lua_State *L)
{
	luaL_newmetatable(L, CT_NETNS_TYPE);
	lua_pushcfunction(L, netns_gc);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);
}
