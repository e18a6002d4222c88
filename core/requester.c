/*
 * conntrack.requester(portid[, previous]): the process behind a change made
 * through ctnetlink. An event carries only the netlink port id of the
 * socket that asked; the socket's inode comes from sock_diag (one dump of
 * the netfilter sockets of this namespace, far cheaper than reading
 * /proc/net/netlink, which walks every netlink socket of the machine), and
 * its owner from the /proc/PID/fd links, the pid equal to the port id first
 * (netlink users commonly bind to their pid). Like conntrack -E's lookup it
 * is racy: the requester may have exited.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/netlink.h>
#include <linux/netlink_diag.h>
#include <linux/sock_diag.h>

struct lookup {
	uint32_t portid;
	uint32_t inode;		/* 0 until found */
};

static int diag_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct netlink_diag_msg *msg = mnl_nlmsg_get_payload(nlh);
	struct lookup *l = data;

	if (mnl_nlmsg_get_payload_len(nlh) >= sizeof(*msg) && msg->ndiag_portid == l->portid)
		l->inode = msg->ndiag_ino;
	return MNL_CB_OK;
}

void ct_requester_close(struct ct_requester *r)
{
	if (r->diag) {
		mnl_socket_close(r->diag);
		r->diag = NULL;
	}
}

static int requester_gc(lua_State *L)
{
	ct_requester_close(lua_touserdata(L, 1));
	return 0;
}

/* The inode of this namespace's NETLINK_NETFILTER socket bound to portid, or 0. */
static uint32_t socket_inode(struct ct_requester *r, uint32_t portid)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct lookup l = { portid, 0 };
	struct netlink_diag_req *req;
	struct nlmsghdr *nlh;
	unsigned int seq = (unsigned int)portid;
	int ret = MNL_CB_ERROR;

	if (!r->diag) {
		r->diag = mnl_socket_open2(NETLINK_SOCK_DIAG, SOCK_CLOEXEC);
		if (!r->diag || mnl_socket_bind(r->diag, 0, MNL_SOCKET_AUTOPID) < 0) {
			ct_requester_close(r);
			return 0;
		}
	}
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = seq;
	req = mnl_nlmsg_put_extra_header(nlh, sizeof(*req));
	req->sdiag_family = AF_NETLINK;
	req->sdiag_protocol = NETLINK_NETFILTER;
	if (mnl_socket_sendto(r->diag, nlh, nlh->nlmsg_len) < 0) {
		ct_requester_close(r);
		return 0;
	}
	do {
		ssize_t len = mnl_socket_recvfrom(r->diag, buf, sizeof(buf));

		if (len < 0)
			break;
		ret = mnl_cb_run(buf, (size_t)len, seq, mnl_socket_get_portid(r->diag), diag_cb, &l);
	} while (ret == MNL_CB_OK);
	if (ret != MNL_CB_STOP)	/* the socket may hold the rest of the dump: start anew */
		ct_requester_close(r);
	return ret == MNL_CB_STOP ? l.inode : 0;
}

/* Whether process pid holds the socket with this inode among its files. */
static bool holds(const char *pid, uint32_t inode)
{
	char path[64], want[32], link[32];
	struct dirent *ent;
	bool found = false;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%s/fd", pid);
	dir = opendir(path);
	if (!dir)
		return false;
	snprintf(want, sizeof(want), "socket:[%u]", inode);
	while (!found && (ent = readdir(dir))) {
		ssize_t n = readlinkat(dirfd(dir), ent->d_name, link, sizeof(link) - 1);

		found = n > 0 && (size_t)n == strlen(want) && memcmp(link, want, (size_t)n) == 0;
	}
	closedir(dir);
	return found;
}

static bool is_pid(const char *name)
{
	return name[0] >= '1' && name[0] <= '9' && strspn(name, "0123456789") == strlen(name);
}

/* The pid that holds the socket: hint first, then every process. Returns 0 when none. */
static long socket_owner(uint32_t inode, uint32_t hint)
{
	char first[16];
	struct dirent *ent;
	long pid = 0;
	DIR *proc;

	snprintf(first, sizeof(first), "%u", hint);
	if (holds(first, inode))
		return (long)hint;
	proc = opendir("/proc");
	if (!proc)
		return 0;
	while (!pid && (ent = readdir(proc)))
		if (is_pid(ent->d_name) && strcmp(ent->d_name, first) != 0 && holds(ent->d_name, inode))
			pid = strtol(ent->d_name, NULL, 10);
	closedir(proc);
	return pid;
}

/* The program name of pid (the comm of /proc/PID/stat) into name; false when unknown. */
static bool read_name(long pid, char *name, size_t size)
{
	char path[64], line[128];
	const char *lparen, *rparen;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	n = fd < 0 ? -1 : read(fd, line, sizeof(line) - 1);
	if (fd >= 0)
		close(fd);
	line[n > 0 ? n : 0] = '\0';
	lparen = strchr(line, '(');
	rparen = lparen ? strchr(lparen, ')') : NULL;
	if (!rparen || (size_t)(rparen - lparen) > size)
		return false;
	memcpy(name, lparen + 1, (size_t)(rparen - lparen - 1));
	name[rparen - lparen - 1] = '\0';
	return true;
}

/*
 * The program name of the process behind portid, or NULL when none is
 * found. r keeps the answer while the same socket stays bound to portid,
 * so a stream of one requester's changes walks /proc once.
 */
const char *ct_requester_name(struct ct_requester *r, uint32_t portid)
{
	uint32_t inode = socket_inode(r, portid);

	if (!inode) {
		r->inode = 0;
		return NULL;
	}
	if (inode != r->inode || portid != r->portid) {
		long pid = socket_owner(inode, portid);

		r->portid = portid;
		r->inode = inode;
		r->named = pid && read_name(pid, r->name, sizeof(r->name));
	}
	return r->named ? r->name : NULL;
}

/*
 * conntrack.requester(portid[, previous]) -> { portid =, inode =, pid =, name = } | nil.
 * previous, a result of an earlier call, is returned as it is when its socket is still
 * the one bound to portid, without walking /proc again.
 */
static int requester(lua_State *L)
{
	lua_Integer portid = luaL_checkinteger(L, 1);
	uint32_t inode;
	long pid;

	luaL_argcheck(L, portid >= 0 && portid <= UINT32_MAX, 1, "port id out of range");
	if (!lua_isnoneornil(L, 2))
		luaL_checktype(L, 2, LUA_TTABLE);
	inode = socket_inode(lua_touserdata(L, lua_upvalueindex(1)), (uint32_t)portid);
	if (!inode)
		return 0;
	if (lua_istable(L, 2) && lua_getfield(L, 2, "portid") == LUA_TNUMBER &&
	    lua_tointeger(L, -1) == portid && lua_getfield(L, 2, "inode") == LUA_TNUMBER &&
	    lua_tointeger(L, -1) == (lua_Integer)inode) {
		lua_settop(L, 2);
		return 1;
	}
	pid = socket_owner(inode, (uint32_t)portid);
	lua_createtable(L, 0, 4);
	lua_pushinteger(L, portid);
	lua_setfield(L, -2, "portid");
	lua_pushinteger(L, inode);
	lua_setfield(L, -2, "inode");
	if (pid) {
		char name[64];

		lua_pushinteger(L, pid);
		lua_setfield(L, -2, "pid");
		if (read_name(pid, name, sizeof(name))) {
			lua_pushstring(L, name);
			lua_setfield(L, -2, "name");
		}
	}
	return 1;
}

void ct_requester_open(lua_State *L)
{
	/* the function's own lookup: only its socket serves (Lua keeps the answers) */
	struct ct_requester *r = lua_newuserdatauv(L, sizeof(*r), 0);

	memset(r, 0, sizeof(*r));
	lua_createtable(L, 0, 1);
	lua_pushcfunction(L, requester_gc);
	lua_setfield(L, -2, "__gc");
	lua_setmetatable(L, -2);
	lua_pushcclosure(L, requester, 1);
	lua_setfield(L, -2, "requester");
}
