/*
 * conntrack.handle: one netlink socket for requests (get, create, count,
 * flush, and the batches of update and delete); dumps open their own.
 * The userdata exists, closed, before its socket does, and __gc, __close
 * and close() share one idempotent close.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <errno.h>
#include <string.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>

struct ct_handle *ct_handle_check(lua_State *L, int idx)
{
	struct ct_handle *h = luaL_checkudata(L, idx, CT_HANDLE_TYPE);

	if (!h->sock.nl)
		luaL_error(L, "attempt to use a closed " CT_HANDLE_TYPE);
	return h;
}

static int handle_close(lua_State *L)
{
	ct_socket_close(&((struct ct_handle *)luaL_checkudata(L, 1, CT_HANDLE_TYPE))->sock);
	return 0;
}

static int handle_tostring(lua_State *L)
{
	struct ct_handle *h = luaL_checkudata(L, 1, CT_HANDLE_TYPE);

	if (h->sock.nl)
		lua_pushfstring(L, CT_HANDLE_TYPE " (%p)", (void *)h);
	else
		lua_pushliteral(L, CT_HANDLE_TYPE " (closed)");
	return 1;
}

/* An option of open: a string or nil. */
static const char *string_option(lua_State *L, const char *name)
{
	const char *value;

	if (lua_isnoneornil(L, 1))
		return NULL;
	lua_getfield(L, 1, name);
	value = lua_isnil(L, -1) ? NULL : ct_opt_string(L, -1, 1, name);
	lua_pop(L, 1);	/* the options table keeps the string alive */
	return value;
}

/*
 * conntrack.open([{ labelmap = PATH, netns = NAME | PATH }])
 *   -> handle | nil, message, errno
 */
static int ct_open(lua_State *L)
{
	static const char *const options[] = { "labelmap", "netns", NULL };
	struct ct_handle *h;
	int err;

	if (!lua_isnoneornil(L, 1))
		ct_check_options(L, 1, 1, options);
	h = lua_newuserdatauv(L, sizeof(*h), 2);
	h->sock.nl = NULL;
	luaL_setmetatable(L, CT_HANDLE_TYPE);
	ct_labelmap_new(L, string_option(L, "labelmap"));
	lua_setiuservalue(L, -2, CT_UV_LABELMAP);
	err = ct_netns_new(L, string_option(L, "netns"));
	lua_pushvalue(L, -1);
	lua_setiuservalue(L, -3, CT_UV_NETNS);
	if (err)
		return ct_fail(L, "open", err);
	err = ct_socket_open_in(&h->sock, ct_netns_fd(L, -1), 0, 0);
	if (err)
		return ct_fail(L, "open", err);
	lua_pop(L, 1);
	return 1;
}

/*
 * The request of a dump: options { table = "conntrack" | "dying" |
 * "unconfirmed", zero = bool } at idx (zero: read the counters and reset
 * them, CT_GET_CTRZERO, which the conntrack table alone has).
 */
uint16_t ct_dump_type(lua_State *L, int idx)
{
	static const char *const tables[] = { "conntrack", "dying", "unconfirmed", NULL };
	static const uint16_t types[] = { IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_GET_DYING,
					  IPCTNL_MSG_CT_GET_UNCONFIRMED };
	static const char *const names[] = { "table", "zero", NULL };
	int table;
	bool zero;

	if (lua_isnoneornil(L, idx))
		return CT_MSG(IPCTNL_MSG_CT_GET);
	ct_check_options(L, idx, idx, names);
	lua_getfield(L, idx, "table");
	table = ct_check_choice(L, -1, idx, "table", "conntrack", tables);
	lua_getfield(L, idx, "zero");
	zero = lua_toboolean(L, -1);
	lua_pop(L, 2);
	luaL_argcheck(L, !zero || table == 0, idx, "'zero' works on the conntrack table only");
	return CT_MSG(zero ? IPCTNL_MSG_CT_GET_CTRZERO : types[table]);
}

/* h:dump([filter[, { table =, zero = }]]) -> iterator, dump, nil, dump */
static int handle_dump(lua_State *L)
{
	uint16_t type;
	int err;

	ct_handle_check(L, 1);
	lua_settop(L, 3);
	type = ct_dump_type(L, 3);
	lua_settop(L, 2);
	lua_pushcfunction(L, ct_dump_iter);
	err = ct_dump_push(L, 1, 2, 2, "dump", type);
	if (err)
		return ct_raise(L, "dump", err);
	lua_pushnil(L);
	lua_pushvalue(L, -2);	/* the dump is also the loop's closing value */
	return 4;
}

/*
 * The entry named by argument 2, a flow or a table of fields with the need
 * flags, as a conntrack object owned by a flow pushed at index 4 (3 holds
 * the labelmap).
 */
static struct nf_conntrack *entry_arg(lua_State *L, unsigned need)
{
	struct ct_arg a = { L, 2, 3, false };
	struct nf_conntrack *entry;

	lua_settop(L, 2);
	lua_getiuservalue(L, 1, CT_UV_LABELMAP);
	entry = ct_flow_alloc(L);
	if (need == F_TUPLE && ct_flow_test(L, 2))
		ct_spec_identity(entry, ct_flow_check(L, 2)->ct, false);
	else
		ct_spec_build(&a, 2, need, entry);
	return entry;
}

/* One request about entry, answered by cb's messages (or none) and an ACK. */
static int entry_request(struct ct_handle *h, uint16_t type, uint16_t flags,
			 const struct nf_conntrack *entry, mnl_cb_t cb, void *data)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh;

	nlh = ct_request_header(buf, type, NLM_F_ACK | flags,
				nfct_get_attr_u8(entry, ATTR_ORIG_L3PROTO), ++h->sock.seq);
	nfct_nlmsg_build(nlh, entry);
	return ct_socket_talk(&h->sock, nlh, buf, sizeof(buf), cb, data);
}

/* mnl callback of get: the flow at data takes a fresh parse of each message,
 * so a reply of several (the kernel sends one) keeps the last, leaking none. */
static int get_cb(const struct nlmsghdr *nlh, void *data)
{
	struct ct_flow *flow = data;

	if (flow->ct)
		nfct_destroy(flow->ct);
	flow->ct = nfct_new();
	if (!flow->ct) {
		errno = ENOMEM;
		return MNL_CB_ERROR;
	}
	return ct_parse_cb(nlh, flow->ct);
}

/* h:get(tuple | flow) -> flow | nil, message, errno: the entry as it is now */
static int handle_get(lua_State *L)
{
	struct ct_handle *h = ct_handle_check(L, 1);
	struct nf_conntrack *tuple = entry_arg(L, F_TUPLE);
	struct ct_flow *flow = ct_flow_new(L, 3);
	int err;

	err = entry_request(h, CT_MSG(IPCTNL_MSG_CT_GET), 0, tuple, get_cb, flow);
	if (!err && !flow->ct)
		err = EPROTO;	/* an ACK alone: the kernel sends the entry before it */
	if (err)
		return ct_fail(L, "get", err);
	return 1;
}

/* h:create(spec) -> true | nil, message, errno; h:create{ spec, ... } -> count.
 * A spec is a table or a line of conntrack's save format. */
static int handle_create(lua_State *L)
{
	struct ct_handle *h = ct_handle_check(L, 1);
	int err;

	if (lua_type(L, 2) == LUA_TTABLE &&
	    (lua_rawgeti(L, 2, 1) == LUA_TTABLE || lua_type(L, -1) == LUA_TSTRING))
		return ct_handle_create_many(L);
	err = entry_request(h, CT_MSG(IPCTNL_MSG_CT_NEW), NLM_F_CREATE | NLM_F_EXCL,
			    entry_arg(L, F_CREATE), NULL, NULL);
	if (err)
		return ct_fail(L, "create", err);
	lua_pushboolean(L, 1);
	return 1;
}

struct table_size {
	uint32_t entries, max;
};

static int stats_attr(const struct nlattr *attr, void *data)
{
	struct table_size *size = data;

	if (mnl_attr_validate(attr, MNL_TYPE_U32) < 0)
		return MNL_CB_OK;	/* not a counter we know */
	if (mnl_attr_get_type(attr) == CTA_STATS_GLOBAL_ENTRIES)
		size->entries = ntohl(mnl_attr_get_u32(attr));
	else if (mnl_attr_get_type(attr) == CTA_STATS_GLOBAL_MAX_ENTRIES)
		size->max = ntohl(mnl_attr_get_u32(attr));
	return MNL_CB_OK;
}

static int stats_cb(const struct nlmsghdr *nlh, void *data)
{
	return mnl_attr_parse(nlh, sizeof(struct nfgenmsg), stats_attr, data);
}

/* h:count() -> entries, max | nil, message, errno: the kernel's counter, no dump */
static int handle_count(lua_State *L)
{
	struct ct_handle *h = ct_handle_check(L, 1);
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct table_size size = { 0, 0 };
	struct nlmsghdr *nlh;
	int err;

	nlh = ct_request_header(buf, CT_MSG(IPCTNL_MSG_CT_GET_STATS), NLM_F_ACK, AF_UNSPEC,
				++h->sock.seq);
	err = ct_socket_talk(&h->sock, nlh, buf, sizeof(buf), stats_cb, &size);
	if (err)
		return ct_fail(L, "count", err);
	lua_pushinteger(L, size.entries);
	lua_pushinteger(L, size.max);
	return 2;
}

/* h:flush by deleting what a dump finds: the filter (at 2) is more than the kernel's. */
static int flush_by_delete(lua_State *L)
{
	int results;

	lua_settop(L, 2);
	results = ct_handle_delete(L);
	if (lua_isnil(L, -results))
		return results;	/* nil, message, errno, report */
	lua_pushboolean(L, 1);
	return 1;
}

/*
 * h:flush([filter]) -> true | nil, message, errno[, report] (the report of
 * a delete by filter, as h:delete gives it). The kernel flushes by
 * family and mark itself; any other filter deletes the matching entries,
 * as does a mark on a kernel built without marks, which refuses it.
 */
static int handle_flush(lua_State *L)
{
	struct ct_handle *h = ct_handle_check(L, 1);
	struct ct_arg a = { L, 2, 3, true };
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct ct_filter filter;
	struct nlmsghdr *nlh;
	bool names_mark;
	int err;

	lua_settop(L, 2);
	lua_getiuservalue(L, 1, CT_UV_LABELMAP);
	ct_filter_compile(&a, 2, &filter);
	if (!ct_filter_kernel_only(&filter))
		return flush_by_delete(L);
	nlh = ct_request_header(buf, CT_MSG(IPCTNL_MSG_CT_DELETE), NLM_F_ACK, filter.family,
				++h->sock.seq);
	/* the kernel applies a flush's family only to version 1 messages:
	 * older tools sent AF_INET while meaning "everything" */
	((struct nfgenmsg *)mnl_nlmsg_get_payload(nlh))->version = 1;
	names_mark = ct_filter_to_request(&filter, nlh, false);
	err = ct_socket_talk(&h->sock, nlh, buf, sizeof(buf), NULL, NULL);
	if (err == EOPNOTSUPP && names_mark)
		return flush_by_delete(L);
	if (err)
		return ct_fail(L, "flush", err);
	lua_pushboolean(L, 1);
	return 1;
}

static const char *family_name(uint8_t family)
{
	return family == AF_INET ? "ipv4" : family == AF_INET6 ? "ipv6" : "both";
}

/*
 * h:explain([filter]) -> { kernel = { field, ... }, c = { field, ... },
 * predicate = bool, dumps = { family, ... } }: which terms of the filter a
 * dump of the conntrack table leaves to the kernel (C checks them all
 * again), whether a Lua predicate runs last, and the family each request
 * of the dump asks for ("ipv4", "ipv6" or "both"), in order.
 */
static int handle_explain(lua_State *L)
{
	struct ct_arg a = { L, 2, 3, true };
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct ct_filter filter;
	uint8_t then;

	ct_handle_check(L, 1);
	lua_settop(L, 2);
	lua_getiuservalue(L, 1, CT_UV_LABELMAP);
	ct_filter_compile(&a, 2, &filter);
	then = ct_filter_split_family(&filter);	/* its dump takes the same terms */
	ct_filter_to_request(&filter, ct_request_header(buf, CT_MSG(IPCTNL_MSG_CT_GET), NLM_F_DUMP,
							 filter.family, 0), true);
	ct_filter_explain(L, &filter);
	lua_createtable(L, 2, 0);
	lua_pushstring(L, family_name(filter.family));
	lua_rawseti(L, -2, 1);
	if (then != AF_UNSPEC) {
		lua_pushstring(L, family_name(then));
		lua_rawseti(L, -2, 2);
	}
	lua_setfield(L, -2, "dumps");
	return 1;
}

static const luaL_Reg handle_methods[] = {
	{ "dump", handle_dump },
	{ "get", handle_get },
	{ "create", handle_create },
	{ "restore", ct_handle_restore },
	{ "update", ct_handle_update },
	{ "delete", ct_handle_delete },
	{ "flush", handle_flush },
	{ "explain", handle_explain },
	{ "write", ct_handle_write },
	{ "count", handle_count },
	{ "listen", ct_handle_listen },
	{ "close", handle_close },
	{ NULL, NULL }
};

void ct_handle_open(lua_State *L)
{
	static const luaL_Reg meta[] = {
		{ "__gc", handle_close },
		{ "__close", handle_close },
		{ "__tostring", handle_tostring },
		{ NULL, NULL }
	};

	luaL_newmetatable(L, CT_HANDLE_TYPE);
	luaL_setfuncs(L, meta, 0);
	luaL_newlib(L, handle_methods);
	ct_expect_methods(L);
	ct_stats_methods(L);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
	lua_pushcfunction(L, ct_open);
	lua_setfield(L, -2, "open");
}
