// SPDX-License-Identifier: GPL-2.0
/*
 * Where the kernel keeps the fields toa's hot paths read directly from Rust, for the kernel toa is built
 * against: the offset and the size of each. Kbuild compiles this file to assembly only (it is never linked)
 * and src/Kbuild turns its "->NAME VALUE" markers into Rust constants (src/toa_offsets.rs, generated), the
 * kernel's own asm-offsets mechanism (include/linux/kbuild.h). src/sys/layout.rs checks every size.
 */
#include <linux/kbuild.h>
#include <linux/net.h>
#include <linux/netfilter.h>
#include <linux/skbuff.h>
#include <net/inet_connection_sock.h>
#include <net/net_namespace.h>
#include <net/netns/generic.h>
#include <net/sock.h>

#include "toa_shim.h"

/* The offset of a member and its size, as NAME and NAME_SIZE. */
#define FIELD(sym, str, mem)					\
	OFFSET(sym, str, mem);					\
	DEFINE(sym##_SIZE, sizeof_field(struct str, mem))

void toa_offsets(void);
void toa_offsets(void)
{
	FIELD(SOCKET_SK, socket, sk);
	FIELD(SOCKET_OPS, socket, ops);

	FIELD(SK_FAMILY, sock, sk_family);
	FIELD(SK_STATE, sock, sk_state);
	FIELD(SK_PORTPAIR, sock, sk_portpair);
	FIELD(SK_PROTOCOL, sock, sk_protocol);
#ifdef CONFIG_NET_NS
	DEFINE(NET_NS, 1);
	FIELD(SK_NET, sock, sk_net.net);
#else
	/* Every socket is in init_net: src/sys/sock.rs asks the shim. */
	DEFINE(NET_NS, 0);
	DEFINE(SK_NET, 0);
	DEFINE(SK_NET_SIZE, sizeof(void *));
#endif
	FIELD(ICSK_AF_OPS, inet_connection_sock, icsk_af_ops);

	FIELD(NET_GEN, net, gen);
	FIELD(NET_INUM, net, ns.inum);
	OFFSET(NET_GENERIC_PTR, net_generic, ptr);
	FIELD(TOA_NET_STATS, toa_net, stats);
	FIELD(TOA_NET_RETIRED, toa_net, retired);
	FIELD(TOA_NET_UOA_MAPPINGS, toa_net, uoa_mappings);

	FIELD(NF_HOOK_STATE_NET, nf_hook_state, net);

	FIELD(SKB_HEAD, sk_buff, head);
	FIELD(SKB_NETWORK_HEADER, sk_buff, network_header);
	FIELD(SKB_TRANSPORT_HEADER, sk_buff, transport_header);
	FIELD(SKB_TAIL, sk_buff, tail);
#ifdef NET_SKBUFF_DATA_USES_OFFSET
	DEFINE(SKB_DATA_USES_OFFSET, 1);
#else
	DEFINE(SKB_DATA_USES_OFFSET, 0);
#endif
}
