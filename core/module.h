/*
 * The entry point of the conntrack.core module, shared by the module's
 * build (conntrack/core.so) and the ct-lua interpreter that preloads it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef CT_MODULE_H
#define CT_MODULE_H

#include <lua.h>

int luaopen_conntrack_core(lua_State *L);

#endif
