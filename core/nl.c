/*
 * Netlink sockets: libmnl owns the socket and the receive loop; we only
 * frame requests and hand each datagram to mnl_cb_run, which checks the
 * sequence number and port id and turns NLMSG_ERROR into errno.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "ct.h"

#include <errno.h>
#include <string.h>
#include <linux/netfilter/nfnetlink.h>

/* Open a ctnetlink socket subscribed to groups (0 for requests); flags as for socket(2). */
int ct_socket_open(struct ct_socket *s, unsigned int groups, int flags)
{
	int on = 1;

	s->nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC | flags);
	if (!s->nl)
		return errno;
	if (mnl_socket_bind(s->nl, groups, MNL_SOCKET_AUTOPID) < 0) {
		int err = errno;

		ct_socket_close(s);
		return err;
	}
	/* error ACKs then carry only the header of the failed request, which
	 * keeps the ACKs of a pipelined batch small in the receive buffer */
	mnl_socket_setsockopt(s->nl, NETLINK_CAP_ACK, &on, sizeof(on));
	s->portid = mnl_socket_get_portid(s->nl);
	s->seq = 0;
	return 0;
}

void ct_socket_close(struct ct_socket *s)
{
	if (s->nl) {
		mnl_socket_close(s->nl);
		s->nl = NULL;
	}
}

/*
 * Start a request in buf, which has CT_REQUEST_MAX bytes. They are zeroed
 * first: libmnl 1.0.4 leaves attribute padding as it finds it, and the
 * kernel should not be sent stale bytes.
 */
struct nlmsghdr *ct_request_header(void *buf, uint16_t type, uint16_t flags,
				   uint8_t family, unsigned int seq)
{
	struct nlmsghdr *nlh;
	struct nfgenmsg *nfh;

	memset(buf, 0, CT_REQUEST_MAX);
	nlh = mnl_nlmsg_put_header(buf);

	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = (uint16_t)(NLM_F_REQUEST | flags);
	nlh->nlmsg_seq = seq;
	nfh = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfh));
	nfh->nfgen_family = family;
	nfh->version = NFNETLINK_V0;
	nfh->res_id = 0;
	return nlh;
}

/* Send a datagram of requests; a signal does not fail it. Returns 0 or errno. */
int ct_socket_send(struct ct_socket *s, const void *buf, size_t len)
{
	while (mnl_socket_sendto(s->nl, buf, len) < 0) {
		if (errno != EINTR)
			return errno;
	}
	return 0;
}

int ct_socket_recv(struct ct_socket *s, void *buf, size_t size, size_t *len)
{
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(s->nl, buf, size);

		if (n >= 0) {
			*len = (size_t)n;
			return 0;
		}
		if (errno != EINTR)
			return errno;
	}
}

/*
 * Whether a whole message of at most len bytes starts at nlh. Used instead
 * of mnl_nlmsg_ok, which in libmnl 1.0.4 compares nlmsg_len as an int: a
 * length of 2^31 or more passes it, and stepping over that message loops
 * forever (a length of 0xffffffff aligns to 0) or leaves the buffer.
 */
bool ct_nlmsg_ok(const struct nlmsghdr *nlh, size_t len)
{
	return len >= sizeof(*nlh) && nlh->nlmsg_len >= sizeof(*nlh) && nlh->nlmsg_len <= len;
}

/* Whether every message of a received datagram is whole: mnl_cb_run walks
 * it with mnl_nlmsg_ok, so a datagram is checked before it gets there. */
bool ct_datagram_ok(const void *buf, size_t len)
{
	const char *p = buf;

	while (len >= sizeof(struct nlmsghdr)) {
		const struct nlmsghdr *nlh = (const struct nlmsghdr *)p;
		size_t step;

		if (!ct_nlmsg_ok(nlh, len))
			return false;
		step = NLMSG_ALIGN(nlh->nlmsg_len);
		if (step >= len)
			break;
		p += step;
		len -= step;
	}
	return true;
}

/*
 * Parse a conntrack message into ct. Returns 0, EBADMSG for a message that
 * libnetfilter_conntrack must not see (nlvalidate.c), or ENOMEM: once the
 * message is valid, an allocation is all that can fail.
 */
int ct_parse_flow(const struct nlmsghdr *nlh, struct nf_conntrack *ct)
{
	if (!ct_flow_msg_valid(nlh))
		return EBADMSG;
	return nfct_nlmsg_parse(nlh, ct) < 0 ? ENOMEM : 0;
}

/* mnl callback: parse a conntrack message into the nf_conntrack at data. */
int ct_parse_cb(const struct nlmsghdr *nlh, void *data)
{
	int err = ct_parse_flow(nlh, data);

	errno = err;
	return err ? MNL_CB_ERROR : MNL_CB_OK;
}

/*
 * The errno of a failed mnl_cb_run. libmnl sets it to the negated error of
 * the kernel's NLMSG_ERROR, which a malformed message can make negative
 * (INT_MIN even, which cannot be negated back): such an error reads as
 * EPROTO.
 */
int ct_run_errno(void)
{
	return errno > 0 ? errno : EPROTO;
}

/*
 * Send one request and run cb on each reply until the kernel's ACK (or the
 * end of a dump). Returns 0 or an errno value. cb must not call Lua.
 */
int ct_socket_talk(struct ct_socket *s, struct nlmsghdr *nlh, void *buf, size_t bufsize,
		   mnl_cb_t cb, void *data)
{
	unsigned int seq = nlh->nlmsg_seq;
	int err = ct_socket_send(s, nlh, nlh->nlmsg_len);

	if (err)
		return err;
	for (;;) {
		size_t len = 0;
		int ret;

		err = ct_socket_recv(s, buf, bufsize, &len);
		if (err)
			return err;
		if (!ct_datagram_ok(buf, len))
			return EPROTO;
		if (len >= sizeof(*nlh) && ((struct nlmsghdr *)buf)->nlmsg_seq != seq)
			continue;	/* a late reply to an abandoned request */
		ret = mnl_cb_run(buf, len, seq, s->portid, cb, data);
		if (ret < 0)
			return ct_run_errno();
		if (ret == MNL_CB_STOP)
			return 0;
	}
}
