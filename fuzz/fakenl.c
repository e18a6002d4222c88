/*
 * A fake kernel at libmnl's socket boundary (see harness.h): the module's
 * sockets are AF_UNIX datagram socket pairs; requests are swallowed and
 * answered with the fuzzer's records.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <libmnl/libmnl.h>

struct mnl_socket {
	int fd;			/* the module's end */
	int peer;		/* the kernel's end */
	unsigned int portid;
};

static const uint8_t *feed;
static size_t feed_size, feed_pos;
static int open_sockets;
static unsigned int next_portid = 0x1000;

void fakenl_reset(const uint8_t *data, size_t size)
{
	feed = data;
	feed_size = size;
	feed_pos = 0;
	next_portid = 0x1000;
}

int fakenl_open_sockets(void)
{
	return open_sockets;
}

/* Sends the next reply of the feed to s, its messages matched to seq. */
static void answer(struct mnl_socket *s, unsigned int seq)
{
	while (feed_pos + 3 <= feed_size) {
		uint8_t flags = feed[feed_pos];
		size_t len = (size_t)feed[feed_pos + 1] | (size_t)feed[feed_pos + 2] << 8;
		uint8_t *dgram;

		feed_pos += 3;
		if (len > feed_size - feed_pos)
			len = feed_size - feed_pos;
		/* a copy of exactly len bytes: reads past it are the module's bug */
		dgram = malloc(len ? len : 1);
		if (!dgram)
			abort();
		memcpy(dgram, feed + feed_pos, len);
		feed_pos += len;
		for (size_t off = 0; off + sizeof(struct nlmsghdr) <= len;) {
			struct nlmsghdr nlh;

			memcpy(&nlh, dgram + off, sizeof(nlh));
			nlh.nlmsg_seq ^= seq;
			nlh.nlmsg_pid ^= s->portid;
			memcpy(dgram + off, &nlh, sizeof(nlh));
			if (nlh.nlmsg_len < sizeof(nlh) || nlh.nlmsg_len > len - off)
				break;
			off += ((size_t)nlh.nlmsg_len + 3) & ~(size_t)3;
		}
		/* a full queue drops the rest, as a kernel under pressure would */
		(void)send(s->peer, dgram, len, MSG_DONTWAIT);
		free(dgram);
		if (flags & FAKENL_END)
			break;
	}
}

struct mnl_socket *mnl_socket_open2(int bus, int flags)
{
	struct mnl_socket *s = calloc(1, sizeof(*s));
	int fds[2];

	(void)bus;
	if (!s)
		return NULL;
	/* non-blocking whatever the caller asked: a blocking receive with
	 * nothing left to answer would hang the fuzzer, and EAGAIN is an
	 * error the module must handle anyway */
	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | (flags & SOCK_CLOEXEC), 0, fds) < 0) {
		free(s);
		return NULL;
	}
	s->fd = fds[0];
	s->peer = fds[1];
	s->portid = next_portid++;
	open_sockets++;
	return s;
}

struct mnl_socket *mnl_socket_open(int bus)
{
	return mnl_socket_open2(bus, 0);
}

int mnl_socket_bind(struct mnl_socket *s, unsigned int groups, pid_t pid)
{
	(void)pid;
	if (groups)	/* a subscription: the events are the next reply */
		answer(s, 0);
	return 0;
}

int mnl_socket_close(struct mnl_socket *s)
{
	close(s->fd);
	close(s->peer);
	free(s);
	open_sockets--;
	return 0;
}

int mnl_socket_get_fd(const struct mnl_socket *s)
{
	return s->fd;
}

unsigned int mnl_socket_get_portid(const struct mnl_socket *s)
{
	return s->portid;
}

int mnl_socket_setsockopt(const struct mnl_socket *s, int type, void *buf, socklen_t len)
{
	(void)s;
	(void)type;
	(void)buf;
	(void)len;
	return 0;
}

ssize_t mnl_socket_sendto(const struct mnl_socket *s, const void *buf, size_t len)
{
	struct nlmsghdr nlh;

	if (len < sizeof(nlh)) {
		errno = EINVAL;
		return -1;
	}
	memcpy(&nlh, buf, sizeof(nlh));
	answer((struct mnl_socket *)s, nlh.nlmsg_seq);
	return (ssize_t)len;
}

/* As libmnl: a truncated datagram is ENOSPC. */
ssize_t mnl_socket_recvfrom(const struct mnl_socket *s, void *buf, size_t size)
{
	struct iovec iov = { buf, size };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n = recvmsg(s->fd, &msg, 0);

	if (n >= 0 && (msg.msg_flags & MSG_TRUNC)) {
		errno = ENOSPC;
		return -1;
	}
	return n;
}

/*
 * libnetfilter_conntrack 1.0.9 calls __abi_breakage() (through its PLT, so
 * this definition wins) when an attribute of a message it parses fails
 * validation, e.g. a u32 attribute of 2 bytes: it prints "ctnetlink kernel
 * ABI is broken, contact your vendor." and exit()s the whole process. The
 * module checks every message first (core/nlvalidate.c) and never hands
 * such a message over, so reaching this is a bug: a crash, which the
 * fuzzers report with the input that got here.
 */
void __abi_breakage(const char *file, int line, const char *reason);

void __abi_breakage(const char *file, int line, const char *reason)
{
	fprintf(stderr, "finding: libnetfilter_conntrack's abi_breakage (exit in production) "
		"at %s:%d: %s\n", file, line, reason);
	abort();
}
