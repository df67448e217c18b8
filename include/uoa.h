/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * uoa.h - UDP API of the toa kernel module (UOA: UDP Option of Address).
 *
 * A layer-4 load balancer that SNATs (or NAT64s) UDP traffic carries the real client, and the virtual
 * address (VIP) the client sent to, in an IP option of the flow's first datagrams: IPv4 option 31 or IPv6
 * destination option 31 (the IP-option TOA/UOA design), or DPVS's IPv4 option 31 (client only). toa.ko
 * keeps one mapping per flow, as the receiving socket sees it:
 *
 *	(LB address, LB port) -> (local address, local port)  =>  client address, client port, VIP, vport
 *
 * and a UDP server asks for it with the source recvfrom() reported:
 *
 *	struct sockaddr_in lb;			// filled by recvfrom()
 *	struct uoa_param_map map = {
 *		.af = AF_INET,			// host order; htons(AF_INET) is accepted too
 *		.sport = lb.sin_port,
 *		.dport = htons(local_port),	// the socket's own port
 *	};
 *	memcpy(&map.saddr, &lb.sin_addr, 4);	// daddr left zero: any local address
 *	socklen_t len = sizeof(map);
 *	if (getsockopt(fd, IPPROTO_IP, UOA_SO_GET_LOOKUP, &map, &len) == 0)
 *		... map.real_saddr (4 bytes for IPv4), ntohs(map.real_sport) ...
 *
 * UOA_SO_GET_LOOKUP1 (v1) answers with the client, the VIP and the client's family (union
 * uoa_sockopt_param). Both work on AF_INET and AF_INET6 UDP sockets, level IPPROTO_IP. On a dual-stack
 * AF_INET6 socket, an IPv4 flow may be named with the ::ffff:a.b.c.d addresses recvfrom() reports there.
 *
 * Input, both versions: saddr:sport = the load balancer's address and port (what recvfrom() reported),
 * daddr:dport = the local address and port the datagram was sent to; daddr all zero = any local address.
 * Ports and addresses in network byte order.
 *
 * Errors (errno):
 *   EINVAL        len < sizeof(struct uoa_param_map) (56) for v0, < sizeof(union uoa_sockopt_param) (40)
 *                 for v1
 *   EAFNOSUPPORT  unknown af (v0) or type (v1); v0 with af = AF_INET for a flow whose client is IPv6
 *                 (v0 has no room for the client's family: ask with af = AF_INET6, or use v1)
 *   EACCES        dport is not the calling socket's own local port: a socket answers for the flows
 *                 addressed to it, not for other services' flows
 *   ENOENT        no live mapping for the flow in the socket's network namespace (never carried an option,
 *                 expired, untrusted source, or the flow belongs to another namespace)
 *   ENOPROTOOPT   not a UDP socket, or toa.ko is not loaded (or loaded with uoa=0)
 *   EFAULT        the buffer is not readable and writable
 * On success sizeof(the structure) bytes are written (never more than len) and len is set to it. A
 * successful lookup also keeps the mapping alive (its idle time restarts).
 */
#ifndef _UOA_H
#define _UOA_H

#ifdef __KERNEL__
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/types.h>
#else
#include <netinet/in.h>
#include <stdint.h>
#endif

/* UOA socket options (level IPPROTO_IP), as DPVS's and ByteDance's uoa.ko. */
enum {
	UOA_SO_BASE		= 2048,
	/* set */
	UOA_SO_SET_MAX		= UOA_SO_BASE,
	/* get */
	UOA_SO_GET_LOOKUP	= UOA_SO_BASE,		/* v0: struct uoa_param_map */
	UOA_SO_GET_LOOKUP1	= UOA_SO_GET_LOOKUP + 1,	/* v1: union uoa_sockopt_param */
	UOA_SO_GET_MAX		= UOA_SO_GET_LOOKUP1,
};

/* An IPv4 address in the first 4 bytes, or an IPv6 address. */
union inet_addr {
	struct in_addr in;
	struct in6_addr in6;
};

/*
 * v0 (UOA_SO_GET_LOOKUP), 56 bytes, packed. af is AF_INET or AF_INET6, in host order (what every public
 * application passes) or network order (the historical declaration). Output: real_saddr (IPv4 in the
 * first 4 bytes, the rest zero; with af = AF_INET6 an IPv4 client is given as ::ffff:a.b.c.d) and
 * real_sport (network order).
 */
struct uoa_param_map {
	/* input */
	uint16_t af;
	union inet_addr saddr;
	union inet_addr daddr;
	uint16_t sport;
	uint16_t dport;
	/* output */
	union inet_addr real_saddr;
	uint16_t real_sport;
} __attribute__((__packed__));

/* v1 address family: ByteDance's values; AF_INET and AF_INET6 are accepted as input too. */
enum {
	UOA_IP_TYPE_V4 = 0,
	UOA_IP_TYPE_V6 = 1,
};

union two_addr {
	struct {
		unsigned char saddr[4];
		unsigned char daddr[4];
	} ipv4;
	struct {
		unsigned char saddr[16];
		unsigned char daddr[16];
	} ipv6;
};

/*
 * v1 (UOA_SO_GET_LOOKUP1), 40 bytes. Input: type (UOA_IP_TYPE_* or AF_*, host order), sport, dport,
 * addrs.saddr (LB), addrs.daddr (local, zero = any). Output: type = the client's family (UOA_IP_TYPE_*),
 * sport = client port, dport = vport, addrs.saddr = client address, addrs.daddr = VIP (all zero, with
 * dport 0, when the option carried no VIP: DPVS's layout).
 */
struct four_tuple {
	unsigned int type;
	uint16_t sport, dport;
	union two_addr addrs;
};

union uoa_sockopt_param {
	struct four_tuple input;
	struct four_tuple output;
};

#ifndef __cplusplus
_Static_assert(sizeof(struct uoa_param_map) == 56, "struct uoa_param_map is 56 bytes");
_Static_assert(sizeof(union uoa_sockopt_param) == 40, "union uoa_sockopt_param is 40 bytes");
#else
static_assert(sizeof(struct uoa_param_map) == 56, "struct uoa_param_map is 56 bytes");
static_assert(sizeof(union uoa_sockopt_param) == 40, "union uoa_sockopt_param is 40 bytes");
#endif

#endif /* _UOA_H */
