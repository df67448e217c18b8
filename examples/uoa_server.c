// SPDX-License-Identifier: GPL-2.0
/*
 * uoa_server: a UDP echo server that prints the real client of each datagram, asked from toa.ko with
 * getsockopt UOA_SO_GET_LOOKUP (v0: the client) and UOA_SO_GET_LOOKUP1 (v1: the client, its family and the
 * VIP it sent to). See include/uoa.h.
 *
 *   uoa_server PORT [COUNT]     serve COUNT datagrams (default: forever) on [::]:PORT, IPv4 and IPv6
 *
 * The socket is dual-stack: recvfrom() reports an IPv4 load balancer as ::ffff:a.b.c.d, and the lookups
 * name the flow that way (af / type AF_INET6). An AF_INET socket would pass AF_INET and the 4-byte address.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "uoa.h"

/* Prints "prefix ip:port" ("[ip]:port" for IPv6); addr is 4 or 16 bytes by family. */
static void print_endpoint(const char *prefix, int family, const void *addr, uint16_t port_be)
{
	char ip[INET6_ADDRSTRLEN];

	inet_ntop(family, addr, ip, sizeof(ip));
	printf(family == AF_INET6 ? "%s[%s]:%u" : "%s%s:%u", prefix, ip, ntohs(port_be));
}

/* v0: the client of the flow from lb to our port. */
static void lookup_v0(int fd, const struct sockaddr_in6 *lb, uint16_t port)
{
	struct uoa_param_map map;
	struct in6_addr client;
	socklen_t len = sizeof(map);

	memset(&map, 0, sizeof(map));
	map.af = AF_INET6;
	memcpy(&map.saddr, &lb->sin6_addr, sizeof(lb->sin6_addr));
	map.sport = lb->sin6_port;
	map.dport = htons(port); /* daddr left zero: any local address */
	if (getsockopt(fd, IPPROTO_IP, UOA_SO_GET_LOOKUP, &map, &len) < 0) {
		printf("v0 lookup: %s\n", strerror(errno));
		return;
	}
	memcpy(&client, &map.real_saddr, sizeof(client)); /* ::ffff:a.b.c.d for an IPv4 client */
	print_endpoint("v0 client ", AF_INET6, &client, map.real_sport);
	printf("\n");
}

/* v1: the client, its family and the VIP of the flow from lb to our port. */
static void lookup_v1(int fd, const struct sockaddr_in6 *lb, uint16_t port)
{
	union uoa_sockopt_param p;
	socklen_t len = sizeof(p);
	int family;

	memset(&p, 0, sizeof(p));
	p.input.type = AF_INET6;
	p.input.sport = lb->sin6_port;
	p.input.dport = htons(port);
	memcpy(p.input.addrs.ipv6.saddr, &lb->sin6_addr, 16);
	if (getsockopt(fd, IPPROTO_IP, UOA_SO_GET_LOOKUP1, &p, &len) < 0) {
		printf("v1 lookup: %s\n", strerror(errno));
		return;
	}
	family = p.output.type == UOA_IP_TYPE_V6 ? AF_INET6 : AF_INET;
	if (family == AF_INET6) {
		print_endpoint("v1 client ", family, p.output.addrs.ipv6.saddr, p.output.sport);
		print_endpoint(" vip ", family, p.output.addrs.ipv6.daddr, p.output.dport);
	} else {
		print_endpoint("v1 client ", family, p.output.addrs.ipv4.saddr, p.output.sport);
		if (p.output.dport == 0) /* DPVS's layout carries no VIP */
			printf(" vip none");
		else
			print_endpoint(" vip ", family, p.output.addrs.ipv4.daddr, p.output.dport);
	}
	printf("\n");
}

int main(int argc, char **argv)
{
	struct sockaddr_in6 addr, lb;
	int zero = 0, count, fd;
	uint16_t port;
	char buf[2048];

	if (argc < 2) {
		fprintf(stderr, "usage: %s PORT [COUNT]\n", argv[0]);
		return 2;
	}
	port = (uint16_t)atoi(argv[1]);
	count = argc > 2 ? atoi(argv[2]) : -1;
	memset(&addr, 0, sizeof(addr));
	addr.sin6_family = AF_INET6;
	addr.sin6_addr = in6addr_any;
	addr.sin6_port = htons(port);
	fd = socket(AF_INET6, SOCK_DGRAM, 0);
	if (fd < 0 || setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0 ||
	    bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		perror("socket/bind");
		return 1;
	}
	printf("ready: udp port %u\n", port);
	fflush(stdout);
	while (count != 0) {
		socklen_t len = sizeof(lb);
		ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&lb, &len);

		if (n < 0) {
			perror("recvfrom");
			return 1;
		}
		print_endpoint("datagram from ", AF_INET6, &lb.sin6_addr, lb.sin6_port);
		printf(": %zd bytes\n", n);
		lookup_v0(fd, &lb, port);
		lookup_v1(fd, &lb, port);
		fflush(stdout);
		sendto(fd, buf, n, 0, (struct sockaddr *)&lb, len); /* the echo goes back through the LB */
		if (count > 0)
			count--;
	}
	close(fd);
	return 0;
}
