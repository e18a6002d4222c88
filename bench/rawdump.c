/*
 * rawdump: the floor under any conntrack dump. It sends one
 * IPCTNL_MSG_CT_GET dump request (both families) and receives the
 * datagrams until NLMSG_DONE, counting the entries without parsing them.
 * Prints the number of entries; exits 1 on any error.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/netlink.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>

/* the kernel fills at most 32 KiB per dump datagram; room for more */
static char buf[65536];

int main(void)
{
	struct {
		struct nlmsghdr nlh;
		struct nfgenmsg nfg;
	} req = {
		.nlh = {
			.nlmsg_len = sizeof(req),
			.nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
			.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP,
			.nlmsg_seq = 1,
		},
		.nfg = { .nfgen_family = AF_UNSPEC, .version = NFNETLINK_V0 },
	};
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	unsigned long entries = 0, datagrams = 0;
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);

	if (fd < 0 || sendto(fd, &req, sizeof(req), 0, (struct sockaddr *)&kernel,
			     sizeof(kernel)) < 0) {
		perror("rawdump");
		return 1;
	}
	for (;;) {
		ssize_t len = recv(fd, buf, sizeof(buf), 0);
		const struct nlmsghdr *nlh = (const struct nlmsghdr *)buf;

		if (len < 0) {
			if (errno == EINTR)
				continue;
			perror("rawdump");
			return 1;
		}
		datagrams++;
		for (; NLMSG_OK(nlh, (size_t)len); nlh = NLMSG_NEXT(nlh, len)) {
			if (nlh->nlmsg_type == NLMSG_DONE) {
				printf("%lu\n", entries);
				fprintf(stderr, "%lu entries in %lu datagrams\n", entries, datagrams);
				return 0;
			}
			if (nlh->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(nlh);

				fprintf(stderr, "rawdump: %s\n", strerror(-e->error));
				return 1;
			}
			entries++;
		}
	}
}
