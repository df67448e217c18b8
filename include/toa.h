/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * toa.h - user API of the toa kernel module (TCP Option Address).
 *
 * With toa.ko loaded, accept() and getpeername() of a connection that arrived through a layer-4 load
 * balancer return the real client address the balancer put in a TCP option, without code changes:
 *   - AF_INET socket, IPv4 client: sockaddr_in with the client address and port;
 *   - AF_INET6 socket, IPv4 client: sockaddr_in6 with ::ffff:a.b.c.d and the client port;
 *   - AF_INET6 socket, IPv6 client: sockaddr_in6 with the client address and port.
 * An AF_INET socket whose client is IPv6 (NAT64 load balancers) keeps the balancer's address in
 * getpeername(); ask for the client with:
 *
 *	struct toa_nat64_peer peer;
 *	socklen_t len = sizeof(peer);
 *	if (getsockopt(fd, IPPROTO_IP, TOA_SO_GET_LOOKUP, &peer, &len) == 0)
 *		... peer.saddr, ntohs(peer.sport) ...
 *
 * getsockopt(IPPROTO_IP, TOA_SO_GET_LOOKUP) errors (errno):
 *   EINVAL        len < sizeof(struct toa_nat64_peer) (20)
 *   ENOTCONN      the socket has no peer (listening, closed, connecting)
 *   ENOENT        the connection carried no TOA            (counts getname_toa_empty)
 *   EAFNOSUPPORT  the TOA holds an IPv4 client: use getpeername() (counts getname_toa_mismatch)
 *   EFAULT        the buffer is not writable
 *   ENOPROTOOPT   toa.ko is not loaded
 * On success, 20 bytes are written and len is set to 20. This is the API of Tencent Cloud CLB and
 * Huawei Cloud ELB's TOA modules: their samples compile against this header unchanged.
 */
#ifndef _TOA_H
#define _TOA_H

#ifdef __KERNEL__
#include <linux/in6.h>
#include <linux/types.h>
#else
#include <netinet/in.h>
#include <stdint.h>
#endif

/* toa socket options (level IPPROTO_IP). */
enum {
	TOA_BASE_CTL		= 4096,
	/* set */
	TOA_SO_SET_MAX		= TOA_BASE_CTL,
	/* get */
	TOA_SO_GET_LOOKUP	= TOA_BASE_CTL,
	TOA_SO_GET_MAX		= TOA_SO_GET_LOOKUP,
};

/* The client of a NAT64 connection: address and port, both in network byte order. sizeof == 20. */
struct toa_nat64_peer {
	struct in6_addr saddr;
	uint16_t sport;
};

#endif /* _TOA_H */
