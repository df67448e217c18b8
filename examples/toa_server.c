// SPDX-License-Identifier: GPL-2.0
/*
 * toa_server: a TCP server that prints the real client of each connection, built from the samples of
 * Tencent Cloud CLB ("NAT64 CLB used in a hybrid cloud") and Huawei Cloud ELB: first
 * getsockopt(TOA_SO_GET_LOOKUP) for a NAT64 (IPv6) client, then getpeername() for an IPv4 one.
 *
 *   toa_server PORT [COUNT]     serve COUNT connections (default: forever) on 0.0.0.0:PORT
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "toa.h"

static void serve(int client_fd)
{
	/* From the samples: getsockopt first, getpeername as the fallback. */
	struct toa_nat64_peer client_addr_nat64;
	char from[40];
	socklen_t len = sizeof(struct toa_nat64_peer);
	int ret;

	ret = getsockopt(client_fd, IPPROTO_IP, TOA_SO_GET_LOOKUP, &client_addr_nat64, &len);
	if (ret == 0) {
		inet_ntop(AF_INET6, &(client_addr_nat64.saddr), from, sizeof(from));
		printf("real client [%s]:%d\n", from, ntohs(client_addr_nat64.sport));
	} else {
		struct sockaddr v4addr;

		len = sizeof(struct sockaddr);
		if (getpeername(client_fd, &v4addr, &len) == 0) {
			inet_ntop(AF_INET, &(((struct sockaddr_in *)&v4addr)->sin_addr), from, sizeof(from));
			printf("real client v4 [%s]:%d\n", from, ntohs(((struct sockaddr_in *)&v4addr)->sin_port));
		}
	}
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct sockaddr_in sockaddr;
	struct sockaddr_in caddr;
	socklen_t length = sizeof(caddr);
	int one = 1, count, listenfd;
	char buf[512];

	if (argc < 2) {
		fprintf(stderr, "usage: %s PORT [COUNT]\n", argv[0]);
		return 2;
	}
	count = argc > 2 ? atoi(argv[2]) : -1;
	memset(&sockaddr, 0, sizeof(sockaddr));
	sockaddr.sin_family = AF_INET;
	sockaddr.sin_addr.s_addr = htonl(INADDR_ANY);
	sockaddr.sin_port = htons(atoi(argv[1]));
	listenfd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(listenfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(listenfd, (struct sockaddr *)&sockaddr, sizeof(sockaddr)) < 0 || listen(listenfd, 16) < 0) {
		perror("bind/listen");
		return 1;
	}
	while (count != 0) {
		int connfd = accept(listenfd, (struct sockaddr *)&caddr, &length);

		if (connfd < 0) {
			perror("accept");
			return 1;
		}
		serve(connfd);
		while (read(connfd, buf, sizeof(buf)) > 0)
			;
		close(connfd);
		if (count > 0)
			count--;
	}
	close(listenfd);
	return 0;
}
