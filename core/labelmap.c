/*
 * conntrack.labelmap: connlabel.conf, read on first use. A handle and every
 * flow it returns share one, so flows can name their labels after the
 * handle is closed, and a program that never reads labels never opens it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <string.h>

struct ct_labelmap {
	struct nfct_labelmap *map;
	bool tried;
	bool default_path;
	char path[];
};

static int labelmap_gc(lua_State *L)
{
	struct ct_labelmap *m = luaL_checkudata(L, 1, CT_LABELMAP_TYPE);

	if (m->map) {
		nfct_labelmap_destroy(m->map);
		m->map = NULL;
	}
	return 0;
}

/* Pushes a labelmap for path (NULL: libnetfilter_conntrack's default). */
void ct_labelmap_new(lua_State *L, const char *path)
{
	size_t len = path ? strlen(path) : 0;
	struct ct_labelmap *m = lua_newuserdatauv(L, sizeof(*m) + len + 1, 0);

	m->map = NULL;
	m->tried = false;
	m->default_path = path == NULL;
	memcpy(m->path, path ? path : "", len + 1);
	luaL_setmetatable(L, CT_LABELMAP_TYPE);
}

/* The loaded map of the labelmap at idx, or NULL when there is none (or no file). */
struct nfct_labelmap *ct_labelmap_get(lua_State *L, int idx)
{
	struct ct_labelmap *m = luaL_testudata(L, idx, CT_LABELMAP_TYPE);

	if (!m)
		return NULL;
	if (!m->tried) {
		m->tried = true;
		m->map = nfct_labelmap_new(m->default_path ? NULL : m->path);
	}
	return m->map;
}

void ct_labelmap_open(lua_State *L)
{
	luaL_newmetatable(L, CT_LABELMAP_TYPE);
	lua_pushcfunction(L, labelmap_gc);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);
}
