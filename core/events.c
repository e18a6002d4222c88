/*
 * conntrack.events: a subscription to the changes of the table.
 *
 * The socket is non-blocking and pollable (pollfd, events, timeout), so any
 * event loop can drive it; recv() returns what is queued. Nothing is lost
 * silently: the receive buffer is large and grows on overrun, an overrun is
 * delivered in the stream with the number of events the kernel dropped, and
 * received messages wait in the object until Lua has taken them, even when
 * a filter predicate raises half-way through a batch.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <linux/sock_diag.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_compat.h>
#include <linux/netfilter/nfnetlink_conntrack.h>

#ifndef CTA_TIMESTAMP_EVENT
#define CTA_TIMESTAMP_EVENT 27	/* newer than Debian 12's kernel headers */
#endif

#define SLOT_SIZE 4096		/* one event message; the largest is well under 1 KiB */
/* An event takes about 1.3 KiB of buffer: 32 MiB hold a burst of 25,000
 * unread events (the kernel caps it at net.core.rmem_max without CAP_NET_ADMIN) */
#define DEFAULT_BUFSIZE (32 << 20)
#define DEFAULT_BUFSIZE_MAX (512 << 20)
#define DEFAULT_BATCH 256
#define NO_NSID INT32_MIN	/* the event's namespace has no id here, or all_netns is off */

/* The kinds of event and their multicast groups, in the same order. */
static const char *const kinds[] = {
	"new", "update", "destroy", "expect_new", "expect_update", "expect_destroy", NULL
};
static const unsigned int groups_of_kinds[] = {
	NF_NETLINK_CONNTRACK_NEW, NF_NETLINK_CONNTRACK_UPDATE, NF_NETLINK_CONNTRACK_DESTROY,
	NF_NETLINK_CONNTRACK_EXP_NEW, NF_NETLINK_CONNTRACK_EXP_UPDATE,
	NF_NETLINK_CONNTRACK_EXP_DESTROY,
};

static void events_release(struct ct_events *ev)
{
	ct_socket_close(&ev->sock);
	free(ev->slots);
	ev->slots = NULL;
	ct_seen_free(ev->seen);
	ev->seen = NULL;
	ct_requester_close(&ev->requester);
}

struct ct_events *ct_events_check(lua_State *L, int idx)
{
	struct ct_events *ev = luaL_checkudata(L, idx, CT_EVENTS_TYPE);

	if (!ev->sock.nl)
		luaL_error(L, "attempt to use a closed " CT_EVENTS_TYPE);
	return ev;
}

static int events_close(lua_State *L)
{
	events_release(luaL_checkudata(L, 1, CT_EVENTS_TYPE));
	return 0;
}

static int events_tostring(lua_State *L)
{
	struct ct_events *ev = luaL_checkudata(L, 1, CT_EVENTS_TYPE);

	if (ev->sock.nl)
		lua_pushfstring(L, CT_EVENTS_TYPE " (%p)", (void *)ev);
	else
		lua_pushliteral(L, CT_EVENTS_TYPE " (closed)");
	return 1;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The kernel's count of messages it could not queue on the socket. */
static uint32_t socket_drops(const struct ct_events *ev)
{
	uint32_t meminfo[SK_MEMINFO_VARS] = { 0 };
	socklen_t len = sizeof(meminfo);

	if (getsockopt(mnl_socket_get_fd(ev->sock.nl), SOL_SOCKET, SO_MEMINFO, meminfo, &len) < 0)
		return ev->drops;
	return meminfo[SK_MEMINFO_DROPS];
}

/*
 * Ask for a receive buffer of size bytes. SO_RCVBUFFORCE passes
 * net.core.rmem_max but needs CAP_NET_ADMIN in the initial namespace;
 * SO_RCVBUF is the fallback. Records what the kernel granted (it doubles
 * the request for its bookkeeping, so half of that).
 */
static void set_bufsize(struct ct_events *ev, int size)
{
	int fd = mnl_socket_get_fd(ev->sock.nl), granted = 0;
	socklen_t len = sizeof(granted);

	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &granted, &len) == 0)
		ev->bufsize = granted / 2;
}

/* The namespace id the kernel attached to a message (NETLINK_LISTEN_ALL_NSID). */
static int message_nsid(struct msghdr *msg)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		if (c->cmsg_level == SOL_NETLINK && c->cmsg_type == NETLINK_LISTEN_ALL_NSID) {
			int nsid;

			memcpy(&nsid, CMSG_DATA(c), sizeof(nsid));
			return nsid;
		}
	}
	return NO_NSID;
}

/*
 * Points recvmmsg's headers at the slots (and their control buffers with
 * all_netns), once: a listener that keeps up receives a datagram or two
 * per call, and setting up all CT_EVENT_SLOTS headers each time cost more than that.
 */
static void prepare_slots(struct ct_events *ev)
{
	for (int i = 0; i < CT_EVENT_SLOTS; i++) {
		ev->iov[i].iov_base = ev->slots + (size_t)i * SLOT_SIZE;
		ev->iov[i].iov_len = SLOT_SIZE;
		ev->msgs[i].msg_hdr.msg_iov = &ev->iov[i];
		ev->msgs[i].msg_hdr.msg_iovlen = 1;
		if (ev->all_netns) {
			ev->msgs[i].msg_hdr.msg_control = ev->control[i];
			ev->msgs[i].msg_hdr.msg_controllen = sizeof(ev->control[i]);
		}
	}
}

/* Receive the queued datagrams. Returns how many, 0 when none, or -errno. */
static int fill(struct ct_events *ev)
{
	int n;

	/* the kernel shrank the control lengths of the datagrams it filled */
	for (unsigned int i = 0; ev->all_netns && i < ev->count; i++)
		ev->msgs[i].msg_hdr.msg_controllen = sizeof(ev->control[i]);
	do
		n = recvmmsg(mnl_socket_get_fd(ev->sock.nl), ev->msgs, CT_EVENT_SLOTS, MSG_DONTWAIT, NULL);
	while (n < 0 && errno == EINTR);
	ev->count = 0;
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
	for (int i = 0; i < n; i++) {
		ev->len[i] = ev->msgs[i].msg_len;
		ev->nsid[i] = message_nsid(&ev->msgs[i].msg_hdr);
	}
	ev->count = (unsigned int)n;
	ev->slot = 0;
	ev->off = 0;
	ev->received = now();
	return n;
}

/* The next message of the received datagrams, or NULL when they are used up. */
static const struct nlmsghdr *next_message(struct ct_events *ev)
{
	while (ev->slot < ev->count) {
		const char *datagram = ev->slots + (size_t)ev->slot * SLOT_SIZE;
		size_t len = ev->len[ev->slot];
		const struct nlmsghdr *nlh = (const struct nlmsghdr *)(datagram + ev->off);

		if (ev->off < len && ct_nlmsg_ok(nlh, len - ev->off)) {
			ev->off += NLMSG_ALIGN(nlh->nlmsg_len);
			return nlh;
		}
		ev->slot++;
		ev->off = 0;
	}
	return NULL;
}

/* The kind of event a message is ("new", ..., "expect_destroy"), or NULL. */
const char *ct_event_kind(const struct nlmsghdr *nlh)
{
	bool created = nlh->nlmsg_flags & (NLM_F_CREATE | NLM_F_EXCL);

	switch (nlh->nlmsg_type) {
	case CT_MSG(IPCTNL_MSG_CT_NEW):      return created ? "new" : "update";
	case CT_MSG(IPCTNL_MSG_CT_DELETE):   return "destroy";
	case EXP_MSG(IPCTNL_MSG_EXP_NEW):    return created ? "expect_new" : "expect_update";
	case EXP_MSG(IPCTNL_MSG_EXP_DELETE): return "expect_destroy";
	default:                             return NULL;
	}
}

/* The kernel's own time of the event when it sends one, else the receive time. */
static double event_time(const struct nlmsghdr *nlh, double received)
{
	const char *p = (const char *)mnl_nlmsg_get_payload_offset(nlh, sizeof(struct nfgenmsg));
	const char *end = mnl_nlmsg_get_payload_tail(nlh);
	const struct nlattr *attr;

	while ((attr = ct_attr_next(&p, end)) != NULL) {
		if (ct_attr_type(attr) == CTA_TIMESTAMP_EVENT && ct_attr_len(attr) == sizeof(uint64_t)) {
			uint64_t ns;

			memcpy(&ns, ct_attr_data(attr), sizeof(ns));
			return (double)be64toh(ns) / 1e9;
		}
	}
	return received;
}

/* Appends { kind = "overrun", lost = N, time = T } and grows the buffer. */
static void queue_overrun(lua_State *L, struct ct_events *ev, int queue)
{
	uint32_t drops = socket_drops(ev);

	lua_createtable(L, 0, 3);
	lua_pushliteral(L, "overrun");
	lua_setfield(L, -2, "kind");
	lua_pushinteger(L, (lua_Integer)(uint32_t)(drops - ev->drops));
	lua_setfield(L, -2, "lost");
	lua_pushnumber(L, now());
	lua_setfield(L, -2, "time");
	lua_rawseti(L, queue, (lua_Integer)lua_rawlen(L, queue) + 1);
	ev->drops = drops;
	if (ev->bufsize < ev->bufsize_max)
		set_bufsize(ev, ev->bufsize > ev->bufsize_max / 2 ? ev->bufsize_max : ev->bufsize * 2);
}

/* What an event says besides its kind and object. */
struct event_meta {
	double time;
	uint32_t portid;	/* the requester, for changes made through ctnetlink */
	int nsid;		/* the namespace, with all_netns */
	bool synthetic;		/* made by a resync */
};

/* The meta data of a received message. */
static struct event_meta received(const struct ct_events *ev, const struct nlmsghdr *nlh)
{
	struct event_meta m = { event_time(nlh, ev->received), nlh->nlmsg_pid, ev->nsid[ev->slot],
				false };

	return m;
}

static struct event_meta synthetic(void)
{
	struct event_meta m = { now(), 0, NO_NSID, true };

	return m;
}

/*
 * Appends { kind, flow (or expect), time[, portid][, nsid][, resync = true] }
 * for the object on the stack top.
 */
static void append_event(lua_State *L, int queue, const char *kind, struct event_meta m)
{
	lua_createtable(L, 0, 4);
	lua_insert(L, -2);
	lua_setfield(L, -2, strncmp(kind, "expect_", 7) == 0 ? "expect" : "flow");
	lua_pushstring(L, kind);
	lua_setfield(L, -2, "kind");
	lua_pushnumber(L, m.time);
	lua_setfield(L, -2, "time");
	if (m.portid) {
		lua_pushinteger(L, m.portid);
		lua_setfield(L, -2, "portid");
	}
	if (m.nsid != NO_NSID) {
		lua_pushinteger(L, m.nsid);
		lua_setfield(L, -2, "nsid");
	}
	if (m.synthetic) {
		lua_pushboolean(L, 1);
		lua_setfield(L, -2, "resync");
	}
	lua_rawseti(L, queue, (lua_Integer)lua_rawlen(L, queue) + 1);
}

/* Remember what the subscriber is told of the flow at idx, when resync needs it. */
static void note_seen(lua_State *L, struct ct_events *ev, int idx, bool destroyed)
{
	struct ct_entry e;

	if (!ev->seen)
		return;
	ct_flow_entry(L, idx, &e);
	if (ct_seen_record(ev->seen, &e, destroyed, ev->generation) == -ENOMEM)
		ev->pending_err = ENOMEM;
}

/*
 * Pushes the flow of nlh, a valid message, if it passes the C filter (else
 * pushes nothing and returns NULL). The filter reads the message's index,
 * or the flow's parse when the message is odd: the flow owns that parse
 * before anything can raise.
 */
static struct ct_flow *filtered_flow(lua_State *L, struct ct_events *ev, const struct nlmsghdr *nlh)
{
	struct ct_flow *flow;
	struct ct_entry e;

	ct_entry_index(&e, nlh);
	if (!e.odd)
		return ct_filter_match(&ev->filter, &e) ? ct_flow_new_indexed(L, -1, &e) : NULL;
	ct_flow_new_unparsed(L, -1, nlh);
	flow = ct_flow_check(L, -1);	/* parses it */
	if (!ct_filter_match(&ev->filter, CT_ENTRY_OF(flow->ct))) {
		lua_pop(L, 1);
		return NULL;
	}
	return flow;
}

/*
 * Make one message's flow and, if it passes the filter, append its event.
 * The flow holds the message, read through its index (flow.c), unless the
 * message is odd; the C filter and the resync view read the index too.
 * Lua runs only for the predicate, after the C filter. A malformed message
 * (EBADMSG, see nlvalidate.c) is an error for recv to report after the
 * events before it, never a silent gap in the stream.
 */
void ct_events_queue(lua_State *L, struct ct_events *ev, int self, int queue,
		     const struct nlmsghdr *nlh)
{
	const char *kind = ct_event_kind(nlh);
	struct ct_flow *flow;

	if (!kind)
		return;
	if (nlh->nlmsg_type >> 8 == NFNL_SUBSYS_CTNETLINK_EXP) {
		/* filters are written for flows: expectations all come through */
		int err = ct_expect_parse(nlh, ct_expect_new(L));

		if (err) {
			ev->pending_err = err;
			lua_pop(L, 1);
			return;
		}
		append_event(L, queue, kind, received(ev, nlh));
		return;
	}
	if (!ct_flow_msg_valid(nlh)) {
		ev->pending_err = EBADMSG;
		return;
	}
	lua_getiuservalue(L, self, CT_UV_LABELMAP);
	/* nothing here reads it: a loop that only counts events never indexes it */
	flow = !ev->filter.nterms ? ct_flow_new_unparsed(L, -1, nlh) : filtered_flow(L, ev, nlh);
	if (!flow) {
		lua_pop(L, 1);	/* the labelmap */
		return;
	}
	lua_remove(L, -2);
	if (lua_getiuservalue(L, self, CT_EV_UV_PREDICATE) != LUA_TNIL) {
		lua_pushvalue(L, -2);
		lua_call(L, 1, 1);
		if (!lua_toboolean(L, -1)) {
			lua_pop(L, 2);
			return;
		}
	}
	lua_pop(L, 1);
	note_seen(L, ev, -1, kind[0] == 'd');
	append_event(L, queue, kind, received(ev, nlh));
}

/* After an overrun: dump the table (with the same filter) to find what was lost. */
static void start_resync(lua_State *L, struct ct_events *ev, int self)
{
	int err;

	lua_getiuservalue(L, self, CT_EV_UV_FILTER);
	err = ct_dump_push(L, self, lua_gettop(L), 2, "resync", CT_MSG(IPCTNL_MSG_CT_GET));
	lua_setiuservalue(L, self, CT_EV_UV_RESYNC);
	lua_pop(L, 1);
	if (err) {
		ev->pending_err = err;
		return;
	}
	ev->generation++;
	ev->resync = RESYNC_DUMPING;
}

/*
 * One step of a resync: compare one dumped entry with the view (new or
 * update when it is news), or, once the dump is done, take out one entry
 * the dump did not find (destroy). Synthetic events carry resync = true.
 */
static void resync_step(lua_State *L, struct ct_events *ev, int self, int queue)
{
	static const char *const news[] = { [CT_SEEN_NEW] = "new", [CT_SEEN_CHANGED] = "update" };
	struct ct_entry e;
	int ret, change;

	if (ev->resync == RESYNC_SWEEPING) {
		struct nf_conntrack *gone;

		lua_pushnil(L);
		gone = ct_flow_alloc(L);
		lua_remove(L, -2);
		if (ct_seen_take_gone(ev->seen, ev->generation, gone))
			append_event(L, queue, "destroy", synthetic());
		else {
			lua_pop(L, 1);
			ev->resync = RESYNC_IDLE;
		}
		return;
	}
	lua_getiuservalue(L, self, CT_EV_UV_RESYNC);
	ret = ct_dump_next_flow(L, lua_gettop(L));
	if (ret <= 0) {
		lua_pop(L, 1);
		if (ret < 0) {	/* without the whole table, a sweep would invent destroys */
			ev->resync = RESYNC_IDLE;
			ev->pending_err = -ret;
		} else {
			ev->resync = RESYNC_SWEEPING;
		}
		return;
	}
	lua_remove(L, -2);
	ct_flow_entry(L, -1, &e);
	change = ct_seen_record(ev->seen, &e, false, ev->generation);
	if (change == CT_SEEN_NEW || change == CT_SEEN_CHANGED)
		append_event(L, queue, news[change], synthetic());
	else {
		lua_pop(L, 1);
		if (change < 0)
			ev->pending_err = -change;
	}
}

/*
 * One step of receiving for the object at index 1: the next received
 * message (*nlh), or a resync's step or an overrun queued at queue, or
 * DONE when the socket is empty or an error waits. *drained, false at the
 * start of a call, carries between its steps.
 */
enum ct_events_step ct_events_step(lua_State *L, struct ct_events *ev, int queue, bool *drained,
				   const struct nlmsghdr **nlh)
{
	int got;

	if (ev->pending_err)
		return CT_EV_DONE;
	if (ev->resync >= RESYNC_DUMPING) {
		resync_step(L, ev, 1, queue);
		return CT_EV_QUEUED;
	}
	*nlh = next_message(ev);
	if (*nlh)
		return CT_EV_MESSAGE;
	/* a receive that did not fill every slot found the queue empty:
	 * another would only say EAGAIN (a listener that keeps up wakes
	 * for a datagram or two, and each system call counts) */
	if (*drained && !ev->congested && ev->resync == RESYNC_IDLE)
		return CT_EV_DONE;
	got = fill(ev);
	*drained = got > 0 && got < CT_EVENT_SLOTS;
	/* ENOBUFS comes once per congestion (the kernel drops silently
	 * while it lasts, and it lasts until the queue empties), so the
	 * drop counter, read when the queue is empty after one, accounts
	 * for every drop. Without ENOBUFS it cannot have moved (and in
	 * reliable mode, NETLINK_NO_ENOBUFS, a failed delivery is sent
	 * again later: no loss, no ENOBUFS). */
	if (got == -ENOBUFS)
		ev->congested = true;
	if (got == -ENOBUFS || (got == 0 && ev->congested && socket_drops(ev) != ev->drops)) {
		if (got == 0)
			ev->congested = false;
		queue_overrun(L, ev, queue);
		if (ev->seen && ev->resync == RESYNC_IDLE)
			ev->resync = RESYNC_DRAINING;
	} else if (got == 0 && ev->congested) {
		ev->congested = false;	/* no drop after the ENOBUFS */
	} else if (got == 0 && ev->resync == RESYNC_DRAINING) {
		start_resync(L, ev, 1);
	} else if (got == 0) {
		return CT_EV_DONE;
	} else if (got < 0) {
		ev->pending_err = -got;
	}
	return CT_EV_QUEUED;
}

/*
 * ev:recv([max]) -> { event, ... } | nil, message, errno. Never blocks:
 * returns up to max (default 256) events, an empty table when none is
 * queued. Events wait in the object's queue until returned, so an error
 * raised by the predicate loses nothing: the next recv() returns them.
 */
static int events_recv(lua_State *L)
{
	struct ct_events *ev = ct_events_check(L, 1);
	lua_Integer max = luaL_optinteger(L, 2, DEFAULT_BATCH);
	bool drained = false;	/* by a receive of this call */
	int queue;

	luaL_argcheck(L, max > 0, 2, "must be positive");
	lua_settop(L, 2);
	lua_getiuservalue(L, 1, CT_EV_UV_QUEUE);
	queue = lua_gettop(L);
	while ((lua_Integer)lua_rawlen(L, queue) < max) {
		const struct nlmsghdr *nlh;
		enum ct_events_step step = ct_events_step(L, ev, queue, &drained, &nlh);

		if (step == CT_EV_DONE)
			break;
		if (step == CT_EV_MESSAGE)
			ct_events_queue(L, ev, 1, queue, nlh);
	}
	if (lua_rawlen(L, queue) == 0 && ev->pending_err) {
		int err = ev->pending_err;

		ev->pending_err = 0;
		return ct_fail(L, "recv", err);
	}
	lua_newtable(L);
	lua_setiuservalue(L, 1, CT_EV_UV_QUEUE);
	return 1;
}

/* ev:wait([seconds]) -> true when events are ready, false on timeout or a signal. */
/* 0 while received events wait in the object (poll would not wake), else none. */
static double own_timeout(const struct ct_events *ev)
{
	return ev->slot < ev->count || ev->pending_err || ev->resync != RESYNC_IDLE ? 0 : -1;
}

static int events_wait(lua_State *L)
{
	struct ct_events *ev = ct_events_check(L, 1);
	double seconds = luaL_optnumber(L, 2, -1);
	struct pollfd pfd = { .fd = mnl_socket_get_fd(ev->sock.nl), .events = POLLIN };
	int ready;

	if (own_timeout(ev) == 0) {
		lua_pushboolean(L, 1);
		return 1;
	}
	ready = poll(&pfd, 1, seconds < 0 ? -1 : (int)(seconds * 1000));
	if (ready < 0 && errno != EINTR)
		return ct_fail(L, "wait", errno);
	lua_pushboolean(L, ready > 0);
	return 1;
}

bool ct_events_pollable(lua_State *L, int idx, struct ct_pollable *p)
{
	struct ct_events *ev;

	if (!luaL_testudata(L, idx, CT_EVENTS_TYPE))
		return false;
	ev = ct_events_check(L, idx);
	p->fd = mnl_socket_get_fd(ev->sock.nl);
	p->timeout = own_timeout(ev);
	return true;
}

/* The cqueues/luv protocol: a descriptor to poll, for reading, and no timer. */
static int events_pollfd(lua_State *L)
{
	lua_pushinteger(L, mnl_socket_get_fd(ct_events_check(L, 1)->sock.nl));
	return 1;
}

static int events_events(lua_State *L)
{
	ct_events_check(L, 1);
	lua_pushliteral(L, "r");
	return 1;
}

static int events_timeout(lua_State *L)
{
	if (own_timeout(ct_events_check(L, 1)) == 0)
		lua_pushinteger(L, 0);
	else
		lua_pushnil(L);
	return 1;
}

/* ev:explain() -> { kernel = { field, ... }, c = { field, ... }, predicate = bool } */
static int events_explain(lua_State *L)
{
	ct_filter_explain(L, &ct_events_check(L, 1)->filter);
	return 1;
}

/* ev:bufsize() -> the receive buffer's size now, and its cap */
static int events_bufsize(lua_State *L)
{
	struct ct_events *ev = ct_events_check(L, 1);

	lua_pushinteger(L, ev->bufsize);
	lua_pushinteger(L, ev->bufsize_max);
	return 2;
}

struct listen_opts {
	unsigned int groups;
	lua_Integer bufsize, bufsize_max;
	bool reliable;
	bool kernel_filter;
	bool resync;
	bool all_netns;
};

static unsigned int parse_kinds(lua_State *L, int idx)
{
	unsigned int groups = 0;

	luaL_argcheck(L, lua_type(L, idx) == LUA_TTABLE, 2, "'events' must be a list of kinds");
	for (lua_Integer i = 1; lua_rawgeti(L, idx, i) != LUA_TNIL; i++) {
		groups |= groups_of_kinds[ct_check_choice(L, -1, 2, "event kind", NULL, kinds)];
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	luaL_argcheck(L, groups != 0, 2, "'events' names no kind");
	return groups;
}

/* The options of listen at 2; leaves the filter (or nil) on the stack top. */
static void parse_listen_opts(lua_State *L, struct listen_opts *o)
{
	static const char *const names[] = {
		"events", "filter", "bufsize", "bufsize_max", "reliable", "kernel_filter", "resync", "all_netns", NULL
	};

	o->groups = NF_NETLINK_CONNTRACK_NEW | NF_NETLINK_CONNTRACK_UPDATE |
		    NF_NETLINK_CONNTRACK_DESTROY;
	o->bufsize = DEFAULT_BUFSIZE;
	o->bufsize_max = DEFAULT_BUFSIZE_MAX;
	o->reliable = false;
	o->kernel_filter = true;
	o->resync = false;
	o->all_netns = false;
	if (lua_isnoneornil(L, 2)) {
		lua_pushnil(L);
		return;
	}
	ct_check_options(L, 2, 2, names);
	if (lua_getfield(L, 2, "events") != LUA_TNIL)
		o->groups = parse_kinds(L, lua_gettop(L));
	else
		lua_pop(L, 1);
	if (lua_getfield(L, 2, "bufsize") != LUA_TNIL)
		o->bufsize = ct_opt_integer(L, -1, 2, "bufsize");
	if (lua_getfield(L, 2, "bufsize_max") != LUA_TNIL)
		o->bufsize_max = ct_opt_integer(L, -1, 2, "bufsize_max");
	lua_getfield(L, 2, "reliable");
	o->reliable = lua_toboolean(L, -1);
	o->kernel_filter = lua_getfield(L, 2, "kernel_filter") == LUA_TNIL || lua_toboolean(L, -1);
	lua_getfield(L, 2, "resync");
	o->resync = lua_toboolean(L, -1);
	lua_getfield(L, 2, "all_netns");
	o->all_netns = lua_toboolean(L, -1);
	lua_pop(L, 6);
	luaL_argcheck(L, o->bufsize > 0 && o->bufsize <= INT32_MAX / 2, 2, "'bufsize' out of range");
	luaL_argcheck(L, o->bufsize_max >= o->bufsize && o->bufsize_max <= INT32_MAX / 2, 2,
		      "'bufsize_max' must be at least 'bufsize'");
	lua_getfield(L, 2, "filter");
}

/*
 * h:listen{ events = { "new", "update", "destroy" }, filter = {...},
 *           bufsize = N, bufsize_max = N, reliable = bool, kernel_filter = bool,
 *           resync = bool, all_netns = bool }
 *   -> events | nil, message, errno
 */
int ct_handle_listen(lua_State *L)
{
	struct ct_arg a = { L, 2, 3, true };
	struct listen_opts o;
	struct ct_events *ev;
	int filter, err, on = 1;

	ct_handle_check(L, 1);
	lua_settop(L, 2);
	lua_getiuservalue(L, 1, 1);	/* 3: the labelmap */
	parse_listen_opts(L, &o);
	filter = lua_gettop(L);
	if (!lua_isnil(L, filter) && !lua_istable(L, filter) && !lua_isfunction(L, filter))
		luaL_argerror(L, 2, lua_pushfstring(L, "'filter' must be a table, a function or nil, "
						    "got %s", luaL_typename(L, filter)));
	ev = lua_newuserdatauv(L, sizeof(*ev), CT_EV_UV_COUNT);
	memset(ev, 0, sizeof(*ev));
	luaL_setmetatable(L, CT_EVENTS_TYPE);
	ct_filter_compile(&a, filter, &ev->filter);
	lua_pushvalue(L, 3);
	lua_setiuservalue(L, -2, CT_UV_LABELMAP);
	lua_getiuservalue(L, 1, CT_UV_NETNS);
	lua_setiuservalue(L, -2, CT_UV_NETNS);
	ct_filter_push_predicate(L, filter);
	lua_setiuservalue(L, -2, CT_EV_UV_PREDICATE);
	lua_newtable(L);
	lua_setiuservalue(L, -2, CT_EV_UV_QUEUE);
	lua_pushvalue(L, filter);
	lua_setiuservalue(L, -2, CT_EV_UV_FILTER);

	ev->slots = malloc((size_t)CT_EVENT_SLOTS * SLOT_SIZE);
	if (!ev->slots)
		return ct_fail(L, "listen", ENOMEM);
	if (o.resync && !(ev->seen = ct_seen_new()))
		return ct_fail(L, "listen", ENOMEM);
	lua_getiuservalue(L, -1, CT_UV_NETNS);
	err = ct_socket_open_in(&ev->sock, ct_netns_fd(L, -1), o.groups, SOCK_NONBLOCK);
	lua_pop(L, 1);
	if (err)
		return ct_fail(L, "listen", err);
	ev->bufsize_max = (int)o.bufsize_max;
	set_bufsize(ev, (int)o.bufsize);
	if (o.all_netns) {
		/* events of every namespace that has an id here, tagged with it */
		if (mnl_socket_setsockopt(ev->sock.nl, NETLINK_LISTEN_ALL_NSID, &on, sizeof(on)) < 0)
			return ct_fail(L, "listen", errno);
		ev->all_netns = true;
	}
	prepare_slots(ev);
	if (o.reliable) {
		/* the kernel holds events back (destroys stay in the dying list)
		 * instead of dropping them when the buffer is full */
		if (mnl_socket_setsockopt(ev->sock.nl, NETLINK_BROADCAST_ERROR, &on, sizeof(on)) < 0 ||
		    mnl_socket_setsockopt(ev->sock.nl, NETLINK_NO_ENOBUFS, &on, sizeof(on)) < 0)
			return ct_fail(L, "listen", errno);
	}
	ev->drops = socket_drops(ev);
	if (o.kernel_filter)
		ct_bpf_attach(mnl_socket_get_fd(ev->sock.nl), &ev->filter);
	return 1;
}

void ct_events_open(lua_State *L)
{
	static const luaL_Reg meta[] = {
		{ "__gc", events_close },
		{ "__close", events_close },
		{ "__tostring", events_tostring },
		{ NULL, NULL }
	};
	static const luaL_Reg methods[] = {
		{ "recv", events_recv },
		{ "writer", ct_events_writer },
		{ "wait", events_wait },
		{ "pollfd", events_pollfd },
		{ "events", events_events },
		{ "timeout", events_timeout },
		{ "bufsize", events_bufsize },
		{ "explain", events_explain },
		{ "close", events_close },
		{ NULL, NULL }
	};

	luaL_newmetatable(L, CT_EVENTS_TYPE);
	luaL_setfuncs(L, meta, 0);
	luaL_newlib(L, methods);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
}
