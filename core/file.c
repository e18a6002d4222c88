/*
 * conntrack.replace_file(path, text): publish a file whole, for readers
 * that poll it (node_exporter's textfile collector). The text goes to a
 * new file that mkstemp creates in the same directory (O_EXCL: a symlink
 * planted there is never followed), which is then renamed over path, so a
 * reader sees the old file or the new one, never half of one.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

static int write_all(int fd, const char *text, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, text, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		text += n;
		len -= (size_t)n;
	}
	return 0;
}

/* nil, "conntrack.replace_file: PATH: reason", errno */
static int fail(lua_State *L, const char *path, int err)
{
	lua_pushnil(L);
	lua_pushfstring(L, "conntrack.replace_file: %s: %s", path, strerror(err));
	lua_pushinteger(L, err);
	return 3;
}

/* conntrack.replace_file(path, text) -> true | nil, message, errno */
static int replace_file(lua_State *L)
{
	size_t len, plen;
	const char *path = luaL_checklstring(L, 1, &plen);
	const char *text = luaL_checklstring(L, 2, &len);
	luaL_Buffer b;
	char *tmp;
	int fd, err;

	luaL_buffinit(L, &b);
	luaL_addlstring(&b, path, plen);
	luaL_addstring(&b, ".XXXXXX");
	luaL_pushresult(&b);
	tmp = (char *)lua_tostring(L, -1);	/* a fresh string of ours: mkstemp fills it */
	fd = mkstemp(tmp);
	if (fd < 0)
		return fail(L, path, errno);
	err = fchmod(fd, 0644) < 0 ? errno : write_all(fd, text, len);
	if (close(fd) < 0 && !err)
		err = errno;
	if (!err && rename(tmp, path) < 0)
		err = errno;
	if (err) {
		unlink(tmp);
		return fail(L, path, err);
	}
	lua_pushboolean(L, 1);
	return 1;
}

void ct_file_open(lua_State *L)
{
	lua_pushcfunction(L, replace_file);
	lua_setfield(L, -2, "replace_file");
}
