/*
 * update and delete. One flow is one request; a filter streams a dump and
 * sends the requests for its matches in pipelined batches: up to BATCH_MAX
 * messages in one datagram, then their answers (batch_send). Nothing
 * is in flight while Lua runs (the filter's predicate, and the caller's
 * function called with each entry done once its batch is acknowledged), so
 * an error raised there leaves the handle's socket in step.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <errno.h>
#include <linux/netfilter/nfnetlink_conntrack.h>

/* 64 answers (errors) take about 50 KiB of the receive buffer, well inside
 * the default 208 KiB, so none is dropped even without SO_RCVBUFFORCE. */
#define BATCH_MAX 64

/*
 * A batch keeps, for each request in flight, what names it to the caller
 * (its index in a list of specs, or the flow it changes), so that each
 * failure can be reported as that request's: { index | flow =, errno =,
 * message = }, and each entry that vanished meanwhile as its flow.
 */
struct ct_batch {
	lua_State *L;
	const char *op;
	struct ct_socket *sock;
	char buf[BATCH_MAX * CT_REQUEST_MAX];
	size_t len;
	size_t last;		/* the offset of the last request in buf */
	unsigned int pending;
	unsigned int seq[BATCH_MAX];	/* each queued request's sequence number */
	bool failed[BATCH_MAX];
	lua_Integer done;
	int err;		/* the first failure */
	bool skip_vanished;	/* ENOENT: deleted by someone else meanwhile */
	int inflight;		/* stack index: slot -> what names the request */
	int report;		/* stack index: the failures, and .vanished */
	int each;		/* stack index of the function called with each flow done, or 0 */
	bool raised;		/* it raised: the error is report.raised, nothing more is sent */
};

/* Pushes the batch's two tables (in flight, report): the caller keeps them there. */
static void batch_init(struct ct_batch *b, lua_State *L, const char *op, struct ct_socket *sock,
		       bool skip_vanished, int each)
{
	b->L = L;
	b->each = each;
	b->raised = false;
	b->op = op;
	b->sock = sock;
	b->len = 0;
	b->pending = 0;
	b->done = 0;
	b->err = 0;
	b->skip_vanished = skip_vanished;
	lua_createtable(L, BATCH_MAX, 0);
	b->inflight = lua_gettop(L);
	lua_createtable(L, 0, 2);
	b->report = lua_gettop(L);
	if (skip_vanished) {
		lua_newtable(L);
		lua_setfield(L, b->report, "vanished");
	}
}

static void batch_fail(struct ct_batch *b, int err)
{
	if (!b->err)
		b->err = err;
}

/*
 * Report what happened to the request in slot (1-based): err, or unknown
 * when the batch's answers were lost before its own (the kernel may have
 * applied it; err is then the receive error that lost them).
 */
static void report(struct ct_batch *b, unsigned int slot, int err, bool unknown)
{
	lua_State *L = b->L;

	lua_rawgeti(L, b->inflight, slot);
	if (!unknown && err == ENOENT && b->skip_vanished) {
		lua_getfield(L, b->report, "vanished");
		lua_insert(L, -2);
		lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
		lua_pop(L, 1);
		return;
	}
	batch_fail(b, err);
	lua_createtable(L, 0, 3);
	lua_insert(L, -2);
	lua_setfield(L, -2, lua_isinteger(L, -1) ? "index" : "flow");
	if (unknown) {
		lua_pushboolean(L, 1);
		lua_setfield(L, -2, "unknown");
	}
	lua_pushinteger(L, err);
	lua_setfield(L, -2, "errno");
	ct_push_message(L, b->op, err);
	lua_setfield(L, -2, "message");
	lua_rawseti(L, b->report, (lua_Integer)luaL_len(L, b->report) + 1);
}

/*
 * Call the caller's function with what names each request the kernel
 * applied, in order: once the last was answered, every one that did not fail.
 */
static void call_each(struct ct_batch *b, unsigned int count, bool answered)
{
	lua_State *L = b->L;

	for (unsigned int i = 0; answered && b->each && !b->raised && i < count; i++) {
		if (b->failed[i])
			continue;
		lua_pushvalue(L, b->each);
		lua_rawgeti(L, b->inflight, i + 1);
		if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
			lua_setfield(L, b->report, "raised");
			b->raised = true;
		}
	}
}

/* The slot of the request numbered seq among the count queued, or count. */
static unsigned int slot_of(const struct ct_batch *b, unsigned int count, unsigned int seq)
{
	unsigned int slot = 0;

	while (slot < count && b->seq[slot] != seq)
		slot++;
	return slot;
}

/*
 * Send the queued requests and account for each. Only the last asks for an
 * ACK: the kernel answers a failed request with its error whether asked or
 * not, and answers a datagram's requests in order, so once the last is
 * answered every other one that drew no error was applied. (An ACK per
 * request cost the kernel a message and us a receive each: a fifth of a
 * bulk delete's time.) A receive error before that answer leaves the
 * requests without an error unknown: the kernel may have applied them.
 */
static void batch_send(struct ct_batch *b)
{
	unsigned int count = b->pending;
	bool answered = false;
	int err;

	if (b->raised) {	/* the caller's function stopped the run: send nothing more */
		b->len = 0;
		b->pending = 0;
	}
	if (!b->pending)
		return;
	for (unsigned int i = 0; i < count; i++)
		b->failed[i] = false;
	((struct nlmsghdr *)(b->buf + b->last))->nlmsg_flags |= NLM_F_ACK;
	err = ct_socket_send(b->sock, b->buf, b->len);
	b->len = 0;
	b->pending = 0;
	if (err) {	/* none was sent */
		for (unsigned int i = 0; i < count; i++)
			report(b, i + 1, err, false);
		return;
	}
	while (!answered) {
		char ack[MNL_SOCKET_BUFFER_SIZE];
		const struct nlmsghdr *nlh = (const struct nlmsghdr *)ack;
		unsigned int slot;
		size_t len;

		err = ct_socket_recv(b->sock, ack, sizeof(ack), &len);
		if (!err && !ct_datagram_ok(ack, len))
			err = EPROTO;
		if (err) {
			batch_fail(b, err);
			break;
		}
		slot = len < sizeof(*nlh) ? count : slot_of(b, count, nlh->nlmsg_seq);
		if (slot == count || b->failed[slot])
			continue;	/* a late reply to an abandoned request */
		if (mnl_cb_run(ack, len, 0, b->sock->portid, NULL, NULL) < 0) {
			b->failed[slot] = true;
			report(b, slot + 1, ct_run_errno(), false);
		}
		answered = slot == count - 1;
	}
	for (unsigned int i = 0; i < count; i++) {
		if (b->failed[i])
			continue;
		if (answered)
			b->done++;
		else
			report(b, i + 1, err, true);
	}
	call_each(b, count, answered);
}

/* Where the next request goes (the queue is sent first when full), or NULL
 * once the caller's function stopped the run. */
static void *next_slot(struct ct_batch *b)
{
	if (b->len + CT_REQUEST_MAX > sizeof(b->buf) || b->pending == BATCH_MAX)
		batch_send(b);
	return b->raised ? NULL : b->buf + b->len;
}

/*
 * Queues the request built in the next slot, named by the value at ident.
 * It is numbered here, not when started: Lua that ran meanwhile (a
 * predicate, a finalizer) may have made requests of its own on the socket.
 */
static void queue(struct ct_batch *b, struct nlmsghdr *nlh, int ident)
{
	nlh->nlmsg_seq = ++b->sock->seq;
	b->seq[b->pending] = nlh->nlmsg_seq;
	b->last = b->len;
	b->len += NLMSG_ALIGN(nlh->nlmsg_len);
	lua_pushvalue(b->L, ident);
	lua_rawseti(b->L, b->inflight, ++b->pending);
}

/* Queues one request built from req, named by the value at ident. */
static void batch_queue(struct ct_batch *b, uint16_t type, uint16_t flags,
			const struct nf_conntrack *req, int ident)
{
	void *slot = next_slot(b);
	struct nlmsghdr *nlh;

	if (!slot)
		return;
	nlh = ct_request_header(slot, type, flags, nfct_get_attr_u8(req, ATTR_ORIG_L3PROTO), 0);
	/* it fails without an original tuple, leaving a bare header: as a
	 * delete, the kernel would take that for a flush */
	if (nfct_nlmsg_build(nlh, req) < 0) {
		batch_fail(b, EINVAL);
		return;
	}
	queue(b, nlh, ident);
}

/*
 * Queues the delete of e's entry (indexed, not odd) named by the attributes
 * the kernel sent: no parse and no build, which were most of a bulk
 * delete's own time. False when they do not fit a request.
 */
static bool queue_delete(struct ct_batch *b, const struct ct_entry *e, int ident)
{
	void *slot = next_slot(b);
	struct nlmsghdr *nlh;

	if (!slot)
		return true;
	nlh = ct_request_header(slot, CT_MSG(IPCTNL_MSG_CT_DELETE), 0, e->family, 0);
	if (!ct_entry_put_identity(e, nlh))
		return false;
	queue(b, nlh, ident);
	return true;
}

/*
 * Queue the request that deletes the flow at idx (no changes) or applies
 * changes to it. The entry is named by its original tuple and zone; a
 * delete also names its id, so an entry recreated meanwhile with the same
 * tuple stays.
 */
static void batch_add(struct ct_batch *b, int idx, const struct ct_change *changes,
		      size_t nchanges)
{
	const struct nf_conntrack *old;
	struct nf_conntrack *req;

	if (b->raised)
		return;
	if (!nchanges) {
		struct ct_entry e;

		ct_flow_entry(b->L, idx, &e);	/* never odd */
		if (!e.ct && queue_delete(b, &e, idx))
			return;
	}
	old = ct_flow_check(b->L, idx)->ct;	/* changes read the parse */
	req = nfct_new();
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
	ct_spec_complete(req, old);
	batch_queue(b, CT_MSG(nchanges ? IPCTNL_MSG_CT_NEW : IPCTNL_MSG_CT_DELETE), 0, req, idx);
	nfct_destroy(req);
}

/*
 * The results of a batch: on success count (and, for a filter, the flows
 * that vanished before their request); on failure nil, the first error's
 * message and errno, and the report { done = n, vanished = { ... },
 * { index | flow =, errno =, message = [, unknown = true] }, ... }.
 */
static int batch_results(struct ct_batch *b, bool with_vanished)
{
	lua_State *L = b->L;

	if (b->err) {
		ct_fail(L, b->op, b->err);
		lua_pushinteger(L, b->done);
		lua_setfield(L, b->report, "done");
		lua_pushvalue(L, b->report);
		return 4;
	}
	lua_pushinteger(L, b->done);
	if (!with_vanished)
		return 1;
	lua_getfield(L, b->report, "vanished");
	return 2;
}

/*
 * Shared by update and delete: the target is at 2, the changes (if any)
 * given, and each (a stack index, or 0) the function called with each
 * entry done.
 */
static int mutate(lua_State *L, const char *op, const struct ct_change *changes, size_t n,
		  int each)
{
	struct ct_handle *h = ct_handle_check(L, 1);
	struct ct_flow *flow = ct_flow_test(L, 2);
	struct ct_batch b;

	if (flow) {
		batch_init(&b, L, op, &h->sock, false, each);
		batch_add(&b, 2, changes, n);
	} else {
		int dump, ret, attempts = 0;

		batch_init(&b, L, op, &h->sock, true, each);
		dump = lua_gettop(L) + 1;
		do {
			int err;

			lua_settop(L, dump - 1);
			err = ct_dump_push(L, 1, 2, 2, op, CT_MSG(IPCTNL_MSG_CT_GET));
			if (err)
				return ct_fail(L, op, err);
			while (!b.raised && (ret = ct_dump_next_flow(L, dump)) > 0) {
				batch_add(&b, lua_gettop(L), changes, n);
				lua_pop(L, 1);
			}
			/* the function raised: give the dump's socket back now, not at the next GC */
			if (b.raised && luaL_callmeta(L, dump, "__close"))
				lua_pop(L, 1);
			/* an interrupted dump may have missed entries: a delete can
			 * simply go again (what it deleted is gone); an update would
			 * count entries twice, so it reports the interruption */
		} while (ret == -EINTR && !n && ++attempts < 3);
		if (ret < 0)
			batch_fail(&b, -ret);
	}
	batch_send(&b);
	if (b.raised) {
		lua_getfield(L, b.report, "raised");
		return lua_error(L);
	}
	if (flow && b.err)
		return ct_fail(L, op, b.err);
	return batch_results(&b, !flow);
}

/*
 * h:create{ spec, spec, ... } -> count | nil, message, errno, report: many
 * entries in pipelined batches (a spec is a table or a save line). Every
 * spec is checked before the first is sent; the report names each spec
 * that failed by its index.
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

		int type = lua_geti(L, 2, i);	/* 5: the spec */

		if (type != LUA_TTABLE && type != LUA_TSTRING)
			luaL_argerror(L, 2, lua_pushfstring(L, "item %d is a %s, not a spec",
							    (int)i, luaL_typename(L, 5)));
		entry = ct_flow_alloc(L);
		ct_spec_build(&a, 5, F_CREATE, entry);
		lua_rawseti(L, 4, i);
		lua_pop(L, 1);
	}
	batch_init(&b, L, "create", &h->sock, false, 0);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_pushinteger(L, i);
		lua_rawgeti(L, 4, i);
		batch_queue(&b, CT_MSG(IPCTNL_MSG_CT_NEW), NLM_F_CREATE | NLM_F_EXCL,
			    ((struct ct_flow *)lua_touserdata(L, -1))->ct, lua_gettop(L) - 1);
		lua_pop(L, 2);
	}
	batch_send(&b);
	return batch_results(&b, false);
}

static void check_target(lua_State *L)
{
	if (lua_isnoneornil(L, 2))
		luaL_argerror(L, 2, "a flow or a filter is required ({} matches every entry)");
}

/* The optional function at idx, called with each entry done: its index, or 0. */
static int each_arg(lua_State *L, int idx)
{
	if (lua_isnoneornil(L, idx))
		return 0;
	luaL_checktype(L, idx, LUA_TFUNCTION);
	return idx;
}

/*
 * h:delete(flow | filter[, each]) -> count[, vanished] | nil, message, errno[, report];
 * each(flow) is called with every entry deleted, in order.
 */
int ct_handle_delete(lua_State *L)
{
	lua_settop(L, 3);
	check_target(L);
	return mutate(L, "delete", NULL, 0, each_arg(L, 3));
}

/*
 * h:update(flow | filter, changes[, each]) -> count[, vanished] | nil, message, errno[,
 * report]; each(flow) is called with every entry updated (as it was before), in order.
 */
int ct_handle_update(lua_State *L)
{
	struct ct_change changes[64];
	struct ct_arg a = { L, 3, 5, false };
	size_t n;

	ct_handle_check(L, 1);
	check_target(L);
	lua_settop(L, 4);
	each_arg(L, 4);
	lua_getiuservalue(L, 1, CT_UV_LABELMAP);
	ct_spec_changes(&a, 3, changes, &n);
	lua_settop(L, 4);
	return mutate(L, "update", changes, n, lua_isnil(L, 4) ? 0 : 4);
}

/*
 * h:restore(text) -> count | nil, message, errno, report: the entries that
 * text's lines of conntrack's save format describe, in pipelined batches.
 * Blank lines and comments are skipped, as conntrack -R skips them; every
 * other line is checked before the first is sent, and the report names a
 * line that failed by its number in text.
 */
int ct_handle_restore(lua_State *L)
{
	struct ct_handle *h = ct_handle_check(L, 1);
	struct ct_save_text text;
	struct ct_spec spec;
	struct ct_flow *scratch;
	struct ct_batch b;
	const char *line, *s;
	size_t s_len, len;

	s = luaL_checklstring(L, 2, &s_len);
	lua_settop(L, 2);
	ct_save_text_init(&text, s, s_len);
	while (ct_save_text_next(&text, &line, &len))
		if (!ct_save_line_read(line, len, &spec))
			luaL_argerror(L, 2, lua_pushfstring(L, "line %d is not a line of conntrack's "
							    "save format (-I or -A, as conntrack "
							    "-L -o save prints)", text.number));
	/* each line's object, owned by Lua while the batch may call it */
	ct_flow_alloc(L);
	scratch = lua_touserdata(L, -1);
	batch_init(&b, L, "restore", &h->sock, false, 0);
	ct_save_text_init(&text, s, s_len);
	while (!b.raised && ct_save_text_next(&text, &line, &len)) {
		const char *name;

		if (!scratch->ct) {
			batch_fail(&b, ENOMEM);
			break;
		}
		ct_save_line_read(line, len, &spec);
		if (ct_spec_apply(&spec, F_CREATE, scratch->ct, &name)) {
			batch_fail(&b, EINVAL);	/* (the grammar makes only specs that apply) */
			break;
		}
		lua_pushinteger(L, text.number);
		batch_queue(&b, CT_MSG(IPCTNL_MSG_CT_NEW), NLM_F_CREATE | NLM_F_EXCL, scratch->ct,
			    lua_gettop(L));
		lua_pop(L, 1);
		nfct_destroy(scratch->ct);
		scratch->ct = nfct_new();
	}
	batch_send(&b);
	return batch_results(&b, false);
}
