/*
 * h:stats() and h:expect_stats(): the kernel's per-CPU counters
 * (IPCTNL_MSG_CT_GET_STATS_CPU, IPCTNL_MSG_EXP_GET_STATS_CPU), one table per
 * CPU with every counter the kernel sends, under the names conntrack -S
 * prints; a counter newer than this code keeps its number ("unknown17").
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <errno.h>
#include <unistd.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>

#define COUNTERS_MAX 64		/* attribute types kept per CPU */

static const char *const ct_names[] = {
	[CTA_STATS_SEARCHED] = "searched", [CTA_STATS_FOUND] = "found", [CTA_STATS_NEW] = "new",
	[CTA_STATS_INVALID] = "invalid", [CTA_STATS_IGNORE] = "ignore",
	[CTA_STATS_DELETE] = "delete", [CTA_STATS_DELETE_LIST] = "delete_list",
	[CTA_STATS_INSERT] = "insert", [CTA_STATS_INSERT_FAILED] = "insert_failed",
	[CTA_STATS_DROP] = "drop", [CTA_STATS_EARLY_DROP] = "early_drop",
	[CTA_STATS_ERROR] = "error", [CTA_STATS_SEARCH_RESTART] = "search_restart",
	[CTA_STATS_CLASH_RESOLVE] = "clash_resolve", [CTA_STATS_CHAIN_TOOLONG] = "chaintoolong",
};

static const char *const exp_names[] = {
	[CTA_STATS_EXP_NEW] = "expect_new", [CTA_STATS_EXP_CREATE] = "expect_create",
	[CTA_STATS_EXP_DELETE] = "expect_delete",
};

struct cpu_counters {
	uint16_t cpu;
	uint64_t present;	/* bit n: attribute type n was sent */
	uint32_t value[COUNTERS_MAX];
};

/* Filled by the callback, in a userdata so that nothing leaks if Lua fails. */
struct stats {
	size_t n, capacity;
	struct cpu_counters cpus[];
};

static int counter_cb(const struct nlattr *attr, void *data)
{
	struct cpu_counters *c = data;
	uint16_t type = mnl_attr_get_type(attr);

	if (type < COUNTERS_MAX && mnl_attr_validate(attr, MNL_TYPE_U32) == 0) {
		c->value[type] = ntohl(mnl_attr_get_u32(attr));
		c->present |= (uint64_t)1 << type;
	}
	return MNL_CB_OK;
}

static int cpu_cb(const struct nlmsghdr *nlh, void *data)
{
	struct stats *s = data;
	const struct nfgenmsg *nfh = mnl_nlmsg_get_payload(nlh);
	struct cpu_counters *c;

	if (s->n == s->capacity) {
		errno = ENOBUFS;
		return MNL_CB_ERROR;
	}
	c = &s->cpus[s->n++];
	c->cpu = ntohs(nfh->res_id);
	c->present = 0;
	return mnl_attr_parse(nlh, sizeof(*nfh), counter_cb, c);
}

/* Pushes { { cpu = 0, found = .., ... }, ... } or returns nil, message, errno. */
static int per_cpu(lua_State *L, uint16_t type, const char *const *names, size_t nnames,
		   const char *op)
{
	struct ct_handle *h = ct_handle_check(L, 1);
	long possible = sysconf(_SC_NPROCESSORS_CONF);
	size_t capacity = (size_t)(possible > 0 ? possible : 1) * 2 + 8;
	struct stats *s = lua_newuserdatauv(L, sizeof(*s) + capacity * sizeof(s->cpus[0]), 0);
	char buf[CT_DUMP_BUFFER];
	struct nlmsghdr *nlh;
	int err;

	s->n = 0;
	s->capacity = capacity;
	nlh = ct_request_header(buf, type, NLM_F_DUMP, AF_UNSPEC, ++h->sock.seq);
	err = ct_socket_talk(&h->sock, nlh, buf, sizeof(buf), cpu_cb, s);
	if (err)
		return ct_fail(L, op, err);
	lua_createtable(L, (int)s->n, 0);
	for (size_t i = 0; i < s->n; i++) {
		const struct cpu_counters *c = &s->cpus[i];

		lua_createtable(L, 0, 16);
		lua_pushinteger(L, c->cpu);
		lua_setfield(L, -2, "cpu");
		for (unsigned int attr = 1; attr < COUNTERS_MAX; attr++) {
			if (!(c->present & ((uint64_t)1 << attr)))
				continue;
			if (attr < nnames && names[attr])
				lua_pushstring(L, names[attr]);
			else	/* newer than this code: keep it, by number */
				lua_pushfstring(L, "unknown%d", (int)attr);
			lua_pushinteger(L, c->value[attr]);
			lua_rawset(L, -3);
		}
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	return 1;
}

/* h:stats() -> { { cpu =, found =, invalid =, insert =, ... }, ... } | nil, message, errno */
static int stats(lua_State *L)
{
	return per_cpu(L, CT_MSG(IPCTNL_MSG_CT_GET_STATS_CPU), ct_names,
		       sizeof(ct_names) / sizeof(ct_names[0]), "stats");
}

/* h:expect_stats() -> { { cpu =, expect_new =, expect_create =, expect_delete = }, ... } */
static int expect_stats(lua_State *L)
{
	return per_cpu(L, EXP_MSG(IPCTNL_MSG_EXP_GET_STATS_CPU), exp_names,
		       sizeof(exp_names) / sizeof(exp_names[0]), "expect_stats");
}

/* Adds the methods to the handle's method table on the stack top. */
void ct_stats_methods(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{ "stats", stats },
		{ "expect_stats", expect_stats },
		{ NULL, NULL }
	};

	luaL_setfuncs(L, methods, 0);
}
