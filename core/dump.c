/*
 * conntrack.dump: a streaming table dump. Each dump has its own socket, so
 * the loop body may call get, update or delete on the handle, and holds one
 * receive buffer, so memory does not grow with the table. It is the generic
 * for's closing value: break, an error or the end of the table frees all.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <linux/netfilter/nfnetlink_conntrack.h>

enum { UV_LABELMAP = 1, UV_PREDICATE, UV_COUNT = UV_PREDICATE };	/* the dump's own */

/* The kernel fills dump datagrams up to 32 KiB (libmnl 1.0.5's CT_DUMP_BUFFER). */
#define CT_DUMP_BUFFER 32768

static void drop_pending(struct ct_dump *d);

static void dump_release(struct ct_dump *d)
{
	ct_socket_close(&d->sock);
	free(d->buf);
	d->buf = NULL;
	drop_pending(d);
}

/* The dump metatable's key in the registry (a dump is checked for every entry). */
static const char metatable_key = 0;

static struct ct_dump *check_dump(lua_State *L, int idx)
{
	struct ct_dump *d = ct_checkudata(L, idx, &metatable_key, CT_DUMP_TYPE);

	if (!d->sock.nl)
		luaL_error(L, "attempt to use a closed " CT_DUMP_TYPE);
	return d;
}

static int dump_close(lua_State *L)
{
	dump_release(luaL_checkudata(L, 1, CT_DUMP_TYPE));
	return 0;
}

static int dump_tostring(lua_State *L)
{
	struct ct_dump *d = luaL_checkudata(L, 1, CT_DUMP_TYPE);

	if (d->sock.nl)
		lua_pushfstring(L, CT_DUMP_TYPE " (%p)", (void *)d);
	else
		lua_pushliteral(L, CT_DUMP_TYPE " (closed)");
	return 1;
}

/* Forget the entry that no object took. */
static void drop_pending(struct ct_dump *d)
{
	ct_entry_release(&d->entry);
	ct_expect_clear(&d->pending_expect);
}

/* Whether the kernel leaves some term of the filter to us. */
static bool terms_left(const struct ct_filter *filter)
{
	for (size_t i = 0; i < filter->nterms; i++)
		if (!filter->terms[i].in_kernel)
			return true;
	return false;
}

/*
 * Whether an entry of the dump may pass its filter, from its attributes,
 * before it is indexed (the prefilter drops only entries the filter drops).
 * Other messages (the end, an error, a stranger's) go to mnl_cb_run.
 */
static bool may_pass(const struct ct_dump *d, const struct nlmsghdr *nlh)
{
	/* an interrupted dump's flag goes to mnl_cb_run, whichever entry carries it */
	if (!d->prefilter_len || nlh->nlmsg_type != CT_MSG(IPCTNL_MSG_CT_NEW) ||
	    nlh->nlmsg_seq != d->seq || nlh->nlmsg_pid != d->sock.portid ||
	    (nlh->nlmsg_flags & NLM_F_DUMP_INTR))
		return true;
	return ct_bpf_run(d->prefilter, d->prefilter_len, nlh, nlh->nlmsg_len);
}

/* mnl callback: index a valid conntrack message into the ct_entry at data. */
static int index_cb(const struct nlmsghdr *nlh, void *data)
{
	if (!ct_flow_msg_valid(nlh)) {
		errno = EBADMSG;
		return MNL_CB_ERROR;
	}
	ct_entry_index(data, nlh);
	return MNL_CB_OK;
}

static int send_request(struct ct_dump *d);

/* Whether a dump of type reads the conntrack table itself, the only dump
 * that is sent a filter (an expectation dump would take its attribute
 * numbers for others). */
static bool of_conntrack_table(uint16_t type)
{
	return type == CT_MSG(IPCTNL_MSG_CT_GET) || type == CT_MSG(IPCTNL_MSG_CT_GET_CTRZERO);
}

/*
 * A kernel built without marks or zones refuses a dump request that names
 * them (EOPNOTSUPP), before it sends any entry. The C filter checks every
 * term anyway: ask again, and for a second family too, with no attribute,
 * the family in the header alone. Returns 0 or an errno.
 */
static int retry_unfiltered(struct ct_dump *d)
{
	for (size_t i = 0; i < d->filter.nterms; i++)
		d->filter.terms[i].in_kernel = d->filter.terms[i].field->kind == K_FAMILY &&
					       !d->filter.terms[i].want.negate;
	d->refused = true;
	d->off = d->len;	/* nothing of the refused request is read */
	return send_request(d);
}

/* The first family's dump is done: ask for the second's (ct_filter_split_family). */
static int dump_then_family(struct ct_dump *d)
{
	d->filter.family = d->then_family;
	d->then_family = AF_UNSPEC;
	d->answered = false;
	d->off = d->len;
	return send_request(d);
}

/*
 * Index the next message into d->entry (an expectation: parse it into
 * d->pending_expect). A C filter reads the index, or the parse when it
 * needs one (ct_filter_match). Returns 1 with an entry that passes the C
 * filter, 0 at the end of the dump, or -errno. No Lua is called here.
 */
static int next_entry(struct ct_dump *d)
{
	for (;;) {
		struct nlmsghdr *nlh;
		int ret;

		if (d->off >= d->len) {
			int err = ct_socket_recv(&d->sock, d->buf, CT_DUMP_BUFFER, &d->len);

			if (err)
				return -err;
			d->off = 0;
			continue;
		}
		nlh = (struct nlmsghdr *)(d->buf + d->off);
		if (!ct_nlmsg_ok(nlh, d->len - d->off))
			return -EPROTO;
		d->off += NLMSG_ALIGN(nlh->nlmsg_len);
		if (nlh->nlmsg_type != NLMSG_ERROR)
			d->answered = true;
		/* a malformed entry is reported even when the filter would drop it */
		if (!d->expect && !may_pass(d, nlh)) {
			if (!ct_flow_msg_valid(nlh))
				return -EBADMSG;
			continue;
		}
		if (d->expect) {
			ret = mnl_cb_run(nlh, nlh->nlmsg_len, d->seq, d->sock.portid, ct_expect_parse_cb,
					 &d->pending_expect);
			if (ret == MNL_CB_OK && d->pending_expect.exp)
				return 1;
		} else {
			/* index_cb sets it: libmnl passes NLMSG_NOOP over as OK (and the
			 * expectation's parse above leaves its exp NULL) */
			d->entry.nlh = NULL;
			ret = mnl_cb_run(nlh, nlh->nlmsg_len, d->seq, d->sock.portid, index_cb,
					 &d->entry);
			if (ret == MNL_CB_OK && d->entry.nlh) {
				int pass = ct_filter_match(&d->filter, &d->entry);

				if (pass)
					return pass < 0 ? -ENOMEM : 1;
			}
		}
		if (ret < 0)
			ret = -ct_run_errno();	/* before drop_pending, which may change errno */
		drop_pending(d);
		if (ret == MNL_CB_STOP && d->then_family) {
			int err = dump_then_family(d);

			if (err)
				return -err;
			continue;
		}
		if (ret == MNL_CB_STOP)
			return 0;
		/* not a dump that zeroes counters: it would zero those of every entry */
		if (ret == -EOPNOTSUPP && d->kernel_filtered && !d->answered &&
		    d->type == CT_MSG(IPCTNL_MSG_CT_GET)) {
			int err = retry_unfiltered(d);

			if (err)
				return -err;
			continue;
		}
		if (ret < 0)
			return ret;
	}
}

/*
 * Push the entry as a flow or an expectation object, which takes it: a
 * flow keeps a copy of the message and its index, or takes the parse the
 * filter made of an odd entry.
 */
static void push_pending(lua_State *L, struct ct_dump *d, int idx)
{
	if (d->expect) {
		struct ct_expect *e = ct_expect_new(L);

		*e = d->pending_expect;
		memset(&d->pending_expect, 0, sizeof(d->pending_expect));
		return;
	}
	lua_getiuservalue(L, idx, UV_LABELMAP);
	ct_flow_new_entry(L, -1, &d->entry, &d->unreported);
	lua_remove(L, -2);
}

/*
 * Push the next entry that passes the filter (C terms, then the Lua
 * predicate) as a flow (or expectation) and return 1; return 0 at the end
 * or -errno on a kernel error, both after the dump released its socket. An
 * error raised by the predicate also releases the dump before it
 * propagates, so a loop in C that has no closing variable leaks nothing
 * until the next GC.
 */
int ct_dump_next_flow(lua_State *L, int idx)
{
	struct ct_dump *d = check_dump(L, idx);

	idx = lua_absindex(L, idx);
	for (;;) {
		int ret = next_entry(d);

		if (ret <= 0) {
			dump_release(d);
			return ret;
		}
		push_pending(L, d, idx);
		if (lua_getiuservalue(L, idx, UV_PREDICATE) == LUA_TNIL) {
			lua_pop(L, 1);
			return 1;
		}
		lua_pushvalue(L, -2);
		if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
			dump_release(d);
			return lua_error(L);
		}
		if (lua_toboolean(L, -1)) {
			lua_pop(L, 1);
			return 1;
		}
		lua_pop(L, 2);
	}
}

/*
 * For a caller that needs no Lua object per entry: the next entry that
 * passes the C filter as *e (the dump's own, valid until the next call;
 * its message unparsed when no C filter needed it parsed), as 1; 0 at the
 * end, or -errno, both after the dump released its socket. The dump must
 * have no predicate (ct_dump_has_predicate).
 */
int ct_dump_next_entry(struct ct_dump *d, struct ct_entry **e)
{
	int ret;

	drop_pending(d);
	ret = next_entry(d);
	if (ret <= 0) {
		dump_release(d);
		return ret;
	}
	*e = &d->entry;
	return 1;
}

/* Whether the dump at idx runs a Lua predicate on its entries. */
bool ct_dump_has_predicate(lua_State *L, int idx)
{
	bool has = lua_getiuservalue(L, idx, UV_PREDICATE) != LUA_TNIL;

	lua_pop(L, 1);
	return has;
}

/*
 * The generic for's iterator: (dump, _) -> flow | nothing. Kernel errors
 * are raised: a for loop has no other way to say the listing is incomplete.
 */
int ct_dump_iter(lua_State *L)
{
	int ret = ct_dump_next_flow(L, 1);

	if (ret < 0)
		return ct_raise(L, ((struct ct_dump *)lua_touserdata(L, 1))->op, -ret);
	return ret;
}

/*
 * Push a dump of the table of the handle at handle_idx with the filter at
 * filter_idx (argument number arg for error messages). type is a CT_GET
 * variant (plain, dying, unconfirmed, or CTRZERO to zero the counters) or
 * EXP_GET for expectations.
 * Returns 0 or an errno value, with the dump (closed on error) pushed.
 */
int ct_dump_push(lua_State *L, int handle_idx, int filter_idx, int arg, const char *op,
		 uint16_t type)
{
	struct ct_dump *d = lua_newuserdatauv(L, sizeof(*d), UV_COUNT);
	struct ct_arg a = { L, arg, 0, true };
	int err;

	memset(d, 0, sizeof(*d));
	d->op = op;
	d->type = type;
	d->expect = type == EXP_MSG(IPCTNL_MSG_EXP_GET);
	luaL_setmetatable(L, CT_DUMP_TYPE);
	lua_getiuservalue(L, handle_idx, CT_UV_LABELMAP);
	a.labelmap = lua_gettop(L);
	ct_filter_compile(&a, filter_idx, &d->filter);
	if (of_conntrack_table(type))
		d->then_family = ct_filter_split_family(&d->filter);
	lua_setiuservalue(L, -2, UV_LABELMAP);
	ct_filter_push_predicate(L, filter_idx);
	lua_setiuservalue(L, -2, UV_PREDICATE);

	d->buf = malloc(CT_DUMP_BUFFER);
	if (!d->buf)
		return ENOMEM;
	lua_getiuservalue(L, handle_idx, CT_UV_NETNS);
	err = ct_socket_open_in(&d->sock, ct_netns_fd(L, -1), 0, 0);
	lua_pop(L, 1);
	if (err)
		return err;
	err = send_request(d);
	if (err)
		dump_release(d);
	return err;
}

/*
 * Send the dump's request for filter.family, with the terms the kernel can
 * filter unless it refused them, and make the prefilter of the terms left
 * to us. Returns 0 or an errno.
 */
static int send_request(struct ct_dump *d)
{
	char req[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh;

	d->seq = ++d->sock.seq;
	nlh = ct_request_header(req, d->type, NLM_F_DUMP, d->filter.family, d->seq);
	d->kernel_filtered = !d->refused && of_conntrack_table(d->type) &&
			     ct_filter_to_request(&d->filter, nlh, true);
	d->prefilter_len = !d->expect && terms_left(&d->filter) ?
			   ct_bpf_compile(&d->filter, d->prefilter) : 0;
	return ct_socket_send(&d->sock, nlh, nlh->nlmsg_len);
}

void ct_dump_open(lua_State *L)
{
	static const luaL_Reg meta[] = {
		{ "__gc", dump_close },
		{ "__close", dump_close },
		{ "__tostring", dump_tostring },
		{ NULL, NULL }
	};

	luaL_newmetatable(L, CT_DUMP_TYPE);
	luaL_setfuncs(L, meta, 0);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &metatable_key);
}
