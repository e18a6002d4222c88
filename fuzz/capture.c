/*
 * Seeds for the netlink fuzzers: an LD_PRELOAD shim that records what a
 * process receives on its netlink sockets, in the fuzzers' record format
 * (harness.h), one file per reply in $CT_CAPTURE_DIR. Sequence
 * numbers and port ids are XORed as the fake kernel XORs them back.
 * Files are named N-PID-FD, N the process's count of requests sent when
 * the reply's request went out (0: none, as for events), so the names sort
 * in the order a fuzzer's fake kernel hands the replies out.
 * Used by fuzz/seeds.sh inside `unshare -rn`.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <linux/netlink.h>

#define MAX_FD 1024

static unsigned int last_seq[MAX_FD], replies[MAX_FD], requests;

static int is_netlink(int fd, unsigned int *portid)
{
	struct sockaddr_nl addr;
	socklen_t len = sizeof(addr);

	if (fd < 0 || fd >= MAX_FD || getsockname(fd, (struct sockaddr *)&addr, &len) < 0 ||
	    addr.nl_family != AF_NETLINK)
		return 0;
	*portid = addr.nl_pid;
	return 1;
}

static void record(int fd, unsigned int portid, const void *data, size_t len)
{
	const char *dir = getenv("CT_CAPTURE_DIR");
	char path[4096], *copy;
	unsigned char head[3] = { 0, (unsigned char)(len & 0xff), (unsigned char)(len >> 8) };
	FILE *f;

	if (!dir || len > 0xffff || !(copy = malloc(len ? len : 1)))
		return;
	memcpy(copy, data, len);
	for (size_t off = 0; off + sizeof(struct nlmsghdr) <= len;) {
		struct nlmsghdr *nlh = (struct nlmsghdr *)(copy + off);

		nlh->nlmsg_seq ^= last_seq[fd];
		nlh->nlmsg_pid ^= portid;
		if (nlh->nlmsg_len < sizeof(*nlh) || nlh->nlmsg_len > len - off)
			break;
		off += NLMSG_ALIGN(nlh->nlmsg_len);
	}
	snprintf(path, sizeof(path), "%s/%06u-%ld-%d", dir, replies[fd], (long)getpid(), fd);
	f = fopen(path, "ab");
	if (f) {
		fwrite(head, 1, 3, f);
		fwrite(copy, 1, len, f);
		fclose(f);
	}
	free(copy);
}

ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to,
	       socklen_t tolen)
{
	static ssize_t (*real)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
	unsigned int portid;

	if (!real)
		real = (ssize_t (*)(int, const void *, size_t, int, const struct sockaddr *,
				    socklen_t))dlsym(RTLD_NEXT, "sendto");
	if (len >= sizeof(struct nlmsghdr) && is_netlink(fd, &portid)) {
		last_seq[fd] = ((const struct nlmsghdr *)buf)->nlmsg_seq;
		replies[fd] = ++requests;
	}
	return real(fd, buf, len, flags, to, tolen);
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	static ssize_t (*real)(int, struct msghdr *, int);
	ssize_t n;
	unsigned int portid;

	if (!real)
		real = (ssize_t (*)(int, struct msghdr *, int))dlsym(RTLD_NEXT, "recvmsg");
	n = real(fd, msg, flags);
	if (n > 0 && msg->msg_iovlen >= 1 && is_netlink(fd, &portid))
		record(fd, portid, msg->msg_iov[0].iov_base, (size_t)n);
	return n;
}

int recvmmsg(int fd, struct mmsghdr *msgs, unsigned int vlen, int flags, struct timespec *timeout)
{
	static int (*real)(int, struct mmsghdr *, unsigned int, int, struct timespec *);
	unsigned int portid;
	int n;

	if (!real)
		real = (int (*)(int, struct mmsghdr *, unsigned int, int, struct timespec *))
			dlsym(RTLD_NEXT, "recvmmsg");
	n = real(fd, msgs, vlen, flags, timeout);
	if (n > 0 && is_netlink(fd, &portid))
		for (int i = 0; i < n; i++)
			record(fd, portid, msgs[i].msg_hdr.msg_iov[0].iov_base, msgs[i].msg_len);
	return n;
}
