/*
 * update and delete. One flow is one request; a filter streams a dump and
 * sends the requests for its matches in pipelined batches: up to BATCH_MAX
 * messages in one datagram, then their ACKs, counted one by one. Nothing
 * is in flight while Lua runs (the filter's predicate), so an error raised
 * there leaves the handle's socket in step.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <errno.h>
#include <linux/netfilter/nfnetlink_conntrack.h>

/* 64 ACKs take about 50 KiB of the receive buffer, well inside the
 * default 208 KiB, so no ACK is dropped even without SO_RCVBUFFORCE. */
#define BATCH_MAX 64

struct ct_batch {
	struct ct_socket *sock;
	char buf[BATCH_MAX * CT_REQUEST_MAX];
	size_t len;
	unsigned int pending;
	lua_Integer done;
	int err;		/* the first failure */
	bool skip_vanished;	/* ENOENT: deleted by someone else meanwhile */
};

static void batch_init(struct ct_batch *b, struct ct_socket *sock, bool skip_vanished)
{
	b->sock = sock;
	b->len = 0;
	b->pending = 0;
	b->done = 0;
	b->err = 0;
	b->skip_vanished = skip_vanished;
}

static void batch_fail(struct ct_batch *b, int err)
{
	if (!b->err)
		b->err = err;
}

/* Send the queued requests and count their ACKs. */
static void batch_send(struct ct_batch *b)
{
	unsigned int last = b->sock->seq, first = last - b->pending + 1;
	int err;

	if (!b->pending)
		return;
	err = ct_socket_send(b->sock, b->buf, b->len);
	if (err) {
		batch_fail(b, err);
		b->pending = 0;
	}
	while (b->pending) {
		char ack[MNL_SOCKET_BUFFER_SIZE];
		const struct nlmsghdr *nlh = (const struct nlmsghdr *)ack;
		size_t len;

		err = ct_socket_recv(b->sock, ack, sizeof(ack), &len);
		if (err) {
			batch_fail(b, err);
			break;
		}
		if (!ct_datagram_ok(ack, len)) {
			batch_fail(b, EPROTO);
			break;
		}
		if (len < sizeof(*nlh) || nlh->nlmsg_seq < first || nlh->nlmsg_seq > last)
			continue;	/* a late reply to an abandoned request */
		b->pending--;
		if (mnl_cb_run(ack, len, 0, b->sock->portid, NULL, NULL) >= 0)
			b->done++;
		else if (!(errno == ENOENT && b->skip_vanished))
			batch_fail(b, errno);
	}
	b->len = 0;
	b->pending = 0;
}

/* Queue one request built from req, sending the queue first when it is full. */
static void batch_queue(struct ct_batch *b, uint16_t type, uint16_t flags,
			const struct nf_conntrack *req)
{
	struct nlmsghdr *nlh;

	if (b->len + CT_REQUEST_MAX > sizeof(b->buf) || b->pending == BATCH_MAX)
		batch_send(b);
	nlh = ct_request_header(b->buf + b->len, type, NLM_F_ACK | flags,
				nfct_get_attr_u8(req, ATTR_ORIG_L3PROTO), ++b->sock->seq);
	nfct_nlmsg_build(nlh, req);
	b->len += NLMSG_ALIGN(nlh->nlmsg_len);
	b->pending++;
}

/*
 * Queue the request that deletes old (no changes) or applies changes to
 * it. The entry is named by its original tuple and zone; a delete also
 * names its id, so an entry recreated meanwhile with the same tuple stays.
 */
static void batch_add(struct ct_batch *b, const struct nf_conntrack *old,
		      const struct ct_change *changes, size_t nchanges)
{
	struct nf_conntrack *req = nfct_new();

	if (!req) {
		batch_fail(b, ENOMEM);
		return;
	}
	ct_spec_identity(req, old, nchanges == 0);
	for (size_t i = 0; i < nchanges; i++) {
		int err = ct_field_store(changes[i].field, &changes[i].value, req, old);

		if (err) {
			batch_fail(b, err);
			nfct_destroy(req);
			return;
		}
	}
	batch_queue(b, CT_MSG(nchanges ? IPCTNL_MSG_CT_NEW : IPCTNL_MSG_CT_DELETE), 0, req);
	nfct_destroy(req);
}

/* Shared by update and delete: the target is at 2, the changes (if any) given. */
static int mutate(lua_State *L, const char *op, const struct ct_change *changes, size_t n)
{
	struct ct_handle *h = ct_handle_check(L, 1);
	struct ct_flow *flow = luaL_testudata(L, 2, CT_FLOW_TYPE);
	struct ct_batch b;

	if (flow) {
		batch_init(&b, &h->sock, false);
		batch_add(&b, ct_flow_check(L, 2)->ct, changes, n);
	} else {
		int dump = lua_gettop(L) + 1, ret, attempts = 0;

		batch_init(&b, &h->sock, true);
		do {
			int err;

			lua_settop(L, dump - 1);
			err = ct_dump_push(L, 1, 2, 2, op, CT_MSG(IPCTNL_MSG_CT_GET));
			if (err)
				return ct_fail(L, op, err);
			while ((ret = ct_dump_next_flow(L, dump)) > 0) {
				batch_add(&b, ((struct ct_flow *)lua_touserdata(L, -1))->ct, changes, n);
				lua_pop(L, 1);
			}
			/* an interrupted dump may have missed entries: a delete can
			 * simply go again (what it deleted is gone); an update would
			 * count entries twice, so it reports the interruption */
		} while (ret == -EINTR && !n && ++attempts < 3);
		if (ret < 0)
			batch_fail(&b, -ret);
	}
	batch_send(&b);
	if (b.err)
		return ct_fail(L, op, b.err);
	lua_pushinteger(L, b.done);
	return 1;
}

/*
 * h:create{ spec, spec, ... } -> count | nil, message, errno: many entries
 * in pipelined batches. Every spec is checked before the first is sent.
 */
int ct_handle_create_many(lua_State *L)
{
	struct ct_handle *h = ct_handle_check(L, 1);
	struct ct_arg a = { L, 2, 3, false };
	lua_Integer n = luaL_len(L, 2);
	struct ct_batch b;

	lua_settop(L, 2);
	lua_getiuservalue(L, 1, CT_UV_LABELMAP);
	lua_createtable(L, (int)n, 0);	/* 4: the built entries, owned by Lua */
	for (lua_Integer i = 1; i <= n; i++) {
		struct nf_conntrack *entry;

		if (lua_geti(L, 2, i) != LUA_TTABLE)	/* 5: the spec */
			luaL_argerror(L, 2, lua_pushfstring(L, "item %d is a %s, not a spec table",
							    (int)i, luaL_typename(L, 5)));
		entry = ct_flow_alloc(L);
		ct_spec_build(&a, 5, F_CREATE, entry);
		lua_rawseti(L, 4, i);
		lua_pop(L, 1);
	}
	batch_init(&b, &h->sock, false);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, 4, i);
		batch_queue(&b, CT_MSG(IPCTNL_MSG_CT_NEW), NLM_F_CREATE | NLM_F_EXCL,
			    ((struct ct_flow *)lua_touserdata(L, -1))->ct);
		lua_pop(L, 1);
	}
	batch_send(&b);
	if (b.err)
		return ct_fail(L, "create", b.err);
	lua_pushinteger(L, b.done);
	return 1;
}

static void check_target(lua_State *L)
{
	if (lua_isnoneornil(L, 2))
		luaL_argerror(L, 2, "a flow or a filter is required ({} matches every entry)");
}

/* h:delete(flow | filter) -> count | nil, message, errno */
int ct_handle_delete(lua_State *L)
{
	lua_settop(L, 2);
	check_target(L);
	return mutate(L, "delete", NULL, 0);
}

/* h:update(flow | filter, changes) -> count | nil, message, errno */
int ct_handle_update(lua_State *L)
{
	struct ct_change changes[64];
	struct ct_arg a = { L, 3, 4, false };
	size_t n;

	ct_handle_check(L, 1);
	check_target(L);
	lua_settop(L, 3);
	lua_getiuservalue(L, 1, CT_UV_LABELMAP);
	ct_spec_changes(&a, 3, changes, &n);
	lua_settop(L, 2);
	return mutate(L, "update", changes, n);
}
