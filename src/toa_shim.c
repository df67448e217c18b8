// SPDX-License-Identifier: GPL-2.0
/*
 * toa.ko C shim.
 *
 * Linux 6.12's `kernel` crate has no bindings for kprobes, netfilter socket options, procfs, per-CPU data,
 * RCU, spinlock arrays or socket fields. This file only gives Rust what it cannot reach by itself:
 *   - the module parameters (Rust's module! takes none in 6.12),
 *   - the static registration objects (a kretprobe, ftrace_ops, nf_sockopt_ops, pernet_operations,
 *     proc_ops, seq_operations) whose callbacks are the Rust functions declared below, and the static
 *     copies of TCP's connection tables that Rust fills,
 *   - one-line wrappers over macros and static inline functions, and plain field reads.
 * Every decision is made in Rust: no function here branches or loops. The Rust side of each item is
 * documented in src/ffi.rs.
 */
#include <linux/module.h>
#include <linux/ftrace.h>
#include <linux/kprobes.h>
#include <linux/netfilter.h>
#include <linux/percpu.h>
#include <linux/proc_fs.h>
#include <linux/ptrace.h>
#include <linux/rcupdate.h>
#include <linux/spinlock.h>
#include <linux/seq_file.h>
#include <linux/seq_file_net.h>
#include <linux/slab.h>
#include <linux/sched.h>
#include <linux/sched/task_stack.h>	/* task_pt_regs() on arm64 needs task_stack_page() */
#include <linux/compat.h>
#include <linux/jhash.h>
#include <linux/jiffies.h>
#include <linux/mutex.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>
#include <linux/kmemleak.h>
#include <net/inet_connection_sock.h>
#include <net/inet_hashtables.h>
#include <net/tcp.h>
#include <net/transp_v6.h>
#include <net/inet_sock.h>
#include <net/ipv6.h>
#include <net/net_namespace.h>
#include <net/netns/generic.h>
#include <net/sock.h>
#include <asm/syscall.h>

#include "toa_shim.h"

#if !IS_ENABLED(CONFIG_IPV6) || !IS_ENABLED(CONFIG_KRETPROBES) || !IS_ENABLED(CONFIG_NETFILTER)
#error "toa needs CONFIG_IPV6, CONFIG_KRETPROBES and CONFIG_NETFILTER"
#endif
#if !IS_ENABLED(CONFIG_DYNAMIC_FTRACE_WITH_ARGS) && !IS_ENABLED(CONFIG_DYNAMIC_FTRACE_WITH_REGS)
#error "toa needs CONFIG_DYNAMIC_FTRACE with arguments (DYNAMIC_FTRACE_WITH_ARGS or _WITH_REGS)"
#endif


/* ---- Module parameters (read by Rust with READ_ONCE semantics; documented in README.md) ---- */

bool toa_param_debug;
module_param_named(debug, toa_param_debug, bool, 0644);
MODULE_PARM_DESC(debug, "Log one rate-limited line per TOA connection and per address rewrite (default: N)");

bool toa_param_nat64_getpeername;
module_param_named(nat64_getpeername, toa_param_nat64_getpeername, bool, 0644);
MODULE_PARM_DESC(nat64_getpeername,
		 "IP-option TOA/UOA design mode: on an AF_INET socket whose TOA carries an IPv6 client, getpeername()/accept() return "
		 "a sockaddr_in6 when the caller's buffer can hold one (default: N, use getsockopt 4096)");

char *toa_param_trusted_sources = "";
module_param_named(trusted_sources, toa_param_trusted_sources, charp, 0444);
MODULE_PARM_DESC(trusted_sources,
		 "Comma-separated IPv4/IPv6 prefixes of the load balancers allowed to send a TOA, e.g. "
		 "\"10.0.0.0/8,2001:db8::/32\"; a TOA from any other source is ignored and counted "
		 "(default: empty, every source is trusted, like existing TOA modules)");

bool toa_param_getsockname_vip = true;
module_param_named(getsockname_vip, toa_param_getsockname_vip, bool, 0644);
MODULE_PARM_DESC(getsockname_vip,
		 "getsockname() returns the VIP:vport an IP-option TOA carries (default: Y)");

/*
 * ---- Probes: the Rust handlers keep at most TOA_KRP_DATA_SIZE bytes per call instance (KRP_DATA_SIZE in
 * src/hooks.rs, which checks its call-data types against it) ----
 */

#define TOA_KRP_DATA_SIZE (8 * sizeof(void *))

/*
 * inet_csk_listen_start() returns with the socket in its listening hash: its return handler gives a new TCP
 * listener toa's operation tables (src/redirect.rs). It does not sleep; room for many concurrent listen()
 * calls, a miss is counted (missed_listen) and leaves that listener without TOA.
 */
struct kretprobe toa_krp_listen_start = {
	.kp.symbol_name = "inet_csk_listen_start",
	.entry_handler = toa_listen_start_entry,
	.handler = toa_listen_start_ret,
	.data_size = TOA_KRP_DATA_SIZE,
	.maxactive = 64,
};

/*
 * Every inet socket, TCP children included, ends in inet_sock_destruct() (inet6_sock_destruct calls it),
 * before its memory is freed. Hooked with an ftrace_ops of its own, not a kprobe: a kprobe is skipped
 * (a "miss") whenever it is hit while another kprobe's handler runs on that CPU, which happens when a
 * softirq destroys a socket on the exit of an interrupt that came in during toa's getname handler, and a
 * missed destruct would leave its entry behind. The callback runs in the context inet_sock_destruct()
 * runs in (process or softirq), never in a breakpoint's. It does its own recursion check, to count what
 * it could not handle, so the ops does not set FTRACE_OPS_FL_RECURSION: that flag asks ftrace to do the
 * check, through ftrace_ops_assist_func, which would drop a refused call silently (and cost a call more
 * on every socket destruction). The ops is filtered on that one function by src/probes.rs before it is
 * registered.
 */
#ifdef CONFIG_HAVE_DYNAMIC_FTRACE_WITH_ARGS
#define TOA_FTRACE_ARGS 0			/* every callback gets the arguments */
#else
#define TOA_FTRACE_ARGS FTRACE_OPS_FL_SAVE_REGS	/* only callbacks that ask for the registers */
#endif
struct ftrace_ops toa_ftrace_sock_destruct = {
	.func = toa_sock_destruct_ftrace,
	.flags = TOA_FTRACE_ARGS,
};

/*
 * A listener leaving the LISTEN state (close, shutdown, disconnect) and a ULP about to be attached to a TCP
 * socket (TCP_ULP: kTLS, ESP in TCP): both give the socket the kernel's tables back (src/redirect.rs). Same
 * ops flags as above.
 */
struct ftrace_ops toa_ftrace_listen_stop = {
	.func = toa_listen_stop_ftrace,
	.flags = TOA_FTRACE_ARGS,
};
struct ftrace_ops toa_ftrace_tcp_set_ulp = {
	.func = toa_tcp_set_ulp_ftrace,
	.flags = TOA_FTRACE_ARGS,
};
int toa_ftrace_recursion_trylock(unsigned long ip, unsigned long parent_ip)
{
	return ftrace_test_recursion_trylock(ip, parent_ip);
}
void toa_ftrace_recursion_unlock(int bit) { ftrace_test_recursion_unlock(bit); }
unsigned long toa_fregs_arg(struct ftrace_regs *fregs, unsigned int n) { return ftrace_regs_get_argument(fregs, n); }

void *toa_kri_data(struct kretprobe_instance *ri) { return ri->data; }
unsigned long toa_regs_arg(struct pt_regs *regs, unsigned int n) { return regs_get_kernel_argument(regs, n); }
unsigned long toa_regs_ret(struct pt_regs *regs) { return regs_return_value(regs); }
unsigned long toa_kretprobe_nmissed(const struct kretprobe *rp) { return rp->nmissed + rp->kp.nmissed; }

/* ---- getsockopt(IPPROTO_IP, TOA_SO_GET_LOOKUP = 4096): include/toa.h ---- */

struct nf_sockopt_ops toa_sockopt_ops = {
	.pf = PF_INET,
	.get_optmin = 4096,		/* TOA_BASE_CTL */
	.get_optmax = 4096 + 1,		/* TOA_SO_GET_MAX + 1: the range is non-inclusive */
	.get = toa_sockopt_get,
	.owner = THIS_MODULE,
};

/* The calling task's syscall, to know the size of the caller's sockaddr buffer (nat64_getpeername). */
bool toa_in_task(void) { return in_task(); }
bool toa_current_is_kthread(void) { return current->flags & PF_KTHREAD; }
bool toa_in_compat_syscall(void) { return in_compat_syscall(); }
long toa_syscall_nr(void) { return syscall_get_nr(current, task_pt_regs(current)); }
void toa_syscall_args(unsigned long args[6]) { syscall_get_arguments(current, task_pt_regs(current), args); }
const long toa_nr_getpeername = __NR_getpeername;
const long toa_nr_getsockname = __NR_getsockname;
const long toa_nr_accept = __NR_accept;
const long toa_nr_accept4 = __NR_accept4;

/* ---- Per-socket store (src/store.rs): a bucket array of its own, sized like TCP's established hash ---- */

unsigned int toa_param_table_buckets;
module_param_named(table_buckets, toa_param_table_buckets, uint, 0444);
MODULE_PARM_DESC(table_buckets,
		 "Buckets of toa's socket table: 0 (default) for as many as TCP's established hash table has "
		 "(\"TCP established hash table entries\" in dmesg), else a power of two from 256 to 16777216. "
		 "Shows the number in use once loaded");

/* TCP's established hash table (of the initial namespace: the one sized at boot, thash_entries). */
unsigned int toa_tcp_ehash_size(void) { return init_net.ipv4.tcp_death_row.hashinfo->ehash_mask + 1; }
/* Locks for the buckets, as TCP's ehash_locks: 32 per possible CPU, bucket b takes lock b & mask. */
int toa_alloc_bucket_locks(spinlock_t **locks, unsigned int *mask, unsigned int buckets)
{
	return alloc_bucket_spinlocks(locks, mask, buckets, 32, GFP_KERNEL);
}
spinlock_t *toa_bucket_lock(spinlock_t *locks, unsigned int i) { return &locks[i]; }
void toa_spin_lock_bh(spinlock_t *lock) { spin_lock_bh(lock); }
void toa_spin_unlock_bh(spinlock_t *lock) { spin_unlock_bh(lock); }
/* kmem_cache_create and kmem_cache_alloc are macros in 6.12. A cache of its own per entry type: exact-size
 * objects (no kmalloc rounding), shown by name in /proc/slabinfo, typesafe by RCU (src/store.rs), with the
 * free pointer inside the object at freeptr_offset (else SLUB appends it, 8 more bytes per object). */
struct kmem_cache *toa_kmem_cache_create(const char *name, unsigned int size, unsigned int align,
					 unsigned int freeptr_offset)
{
	struct kmem_cache_args args = {
		.align = align,
		.freeptr_offset = freeptr_offset,
		.use_freeptr_offset = true,
	};

	return kmem_cache_create(name, size, &args, SLAB_TYPESAFE_BY_RCU | SLAB_NO_MERGE);
}
void *toa_kmem_cache_alloc_atomic(struct kmem_cache *cache) { return kmem_cache_alloc(cache, GFP_ATOMIC); }
void toa_rcu_read_lock(void) { rcu_read_lock(); }
bool toa_preemptible(void) { return preemptible(); }
void toa_rcu_read_unlock(void) { rcu_read_unlock(); }

/* ---- UOA: UDP datagrams' IP option 31, the flow map, getsockopt 2048/2049 (src/uoa.rs, src/uoa/) ---- */

bool toa_param_uoa = true;
module_param_named(uoa, toa_param_uoa, bool, 0444);
MODULE_PARM_DESC(uoa,
		 "Serve UDP too (UOA): read the client address load balancers put in IP option 31 of UDP datagrams "
		 "and answer getsockopt(IPPROTO_IP, 2048 / 2049) (default: Y)");

unsigned int toa_param_uoa_timeout = 360;
module_param_named(uoa_timeout, toa_param_uoa_timeout, uint, 0444);
MODULE_PARM_DESC(uoa_timeout,
		 "Seconds a UDP flow's mapping lives without a datagram or a lookup, 1 to 43200 (default: 360, as "
		 "the public UOA modules)");

unsigned int toa_param_uoa_max_mappings = 262144;
module_param_named(uoa_max_mappings, toa_param_uoa_max_mappings, uint, 0444);
MODULE_PARM_DESC(uoa_max_mappings,
		 "Most UDP flow mappings per network namespace, 256 to 16777216; when full, new flows are not "
		 "mapped (counted in uoa_map_full) and existing ones are kept (default: 262144)");

/* After conntrack and NAT (NF_IP_PRI_NAT_SRC = 100): the addresses the receiving socket will see. */
const struct nf_hook_ops toa_uoa_nf_ops[2] = {
	{
		.hook = toa_uoa_hook_v4,
		.pf = NFPROTO_IPV4,
		.hooknum = NF_INET_LOCAL_IN,
		.priority = NF_IP_PRI_NAT_SRC + 1,
	},
	{
		.hook = toa_uoa_hook_v6,
		.pf = NFPROTO_IPV6,
		.hooknum = NF_INET_LOCAL_IN,
		.priority = NF_IP6_PRI_NAT_SRC + 1,
	},
};

struct nf_sockopt_ops toa_uoa_sockopt_ops = {
	.pf = PF_INET,
	.get_optmin = 2048,		/* UOA_SO_GET_LOOKUP */
	.get_optmax = 2049 + 1,		/* UOA_SO_GET_LOOKUP1 + 1: the range is non-inclusive */
	.get = toa_uoa_sockopt_get,
	.owner = THIS_MODULE,
};

struct pernet_operations toa_uoa_net_ops = {
	.init = toa_uoa_net_init,
	.pre_exit = toa_uoa_net_pre_exit,
	.exit = toa_uoa_net_exit,
};

/* The namespaces with UOA state, by ns.inum (what a flow records of its namespace). */
DEFINE_XARRAY(toa_uoa_nets);
int toa_uoa_nets_store(unsigned long inum, struct net *net)
{
	return xa_err(xa_store(&toa_uoa_nets, inum, net, GFP_KERNEL));
}
/* Held by the sweeper while it uses namespaces found in toa_uoa_nets, and by a namespace's exit around
 * its removal from it. */
DEFINE_MUTEX(toa_uoa_nets_mutex);
void toa_mutex_lock(struct mutex *m) { mutex_lock(m); }

/* The expiry sweeper: one work item for every namespace's flows, rescheduled by itself. */
DECLARE_DELAYED_WORK(toa_uoa_sweep_work, toa_uoa_sweep);
bool toa_schedule_delayed_work(struct delayed_work *dwork, unsigned long delay)
{
	return schedule_delayed_work(dwork, delay);
}

/* /proc/net/uoa_table: a seq_file_net state followed by the Rust walker's (src/uoa/procfs.rs). */
struct toa_uoa_iter {
	struct seq_net_private p;
	u64 walker[TOA_UOA_WALKER_WORDS];
};
const unsigned int toa_uoa_iter_size = sizeof(struct toa_uoa_iter);
void *toa_uoa_walker(struct seq_file *seq) { return ((struct toa_uoa_iter *)seq->private)->walker; }
struct net *toa_seq_file_net(struct seq_file *seq) { return seq_file_net(seq); }
const struct seq_operations toa_uoa_table_seq_ops = {
	.start = toa_uoa_table_seq_start,
	.next = toa_uoa_table_seq_next,
	.stop = toa_uoa_table_seq_stop,
	.show = toa_uoa_table_seq_show,
};

unsigned long toa_jiffies(void) { return jiffies; }
const unsigned int toa_hz = HZ;
u32 toa_jhash2(const u32 *k, u32 words, u32 initval) { return jhash2(k, words, initval); }
u32 toa_jhash_3words(u32 a, u32 b, u32 c, u32 initval) { return jhash_3words(a, b, c, initval); }
unsigned int toa_skb_len_from_network(const struct sk_buff *skb) { return skb->len - skb_network_offset(skb); }
int toa_skb_copy_from_network(const struct sk_buff *skb, void *to, unsigned int len)
{
	return skb_copy_bits(skb, skb_network_offset(skb), to, len);
}

/* ---- Per-CPU counters: an array of u64 per possible CPU ---- */

u64 __percpu *toa_alloc_percpu(size_t size, size_t align) { return __alloc_percpu(size, align); }
void toa_percpu_inc(u64 __percpu *base, unsigned int idx) { this_cpu_inc(base[idx]); }
u64 toa_percpu_read(u64 __percpu *base, unsigned int idx, int cpu) { return READ_ONCE(per_cpu_ptr(base, cpu)[idx]); }
int toa_next_possible_cpu(int prev) { return cpumask_next(prev, cpu_possible_mask); }
unsigned int toa_nr_cpu_ids(void) { return nr_cpu_ids; }

/* ---- Per-namespace counters (net_generic storage) and /proc/net files ---- */

unsigned int toa_net_id;

struct pernet_operations toa_stats_net_ops = {
	.init = toa_stats_net_init,
	.pre_exit = toa_stats_net_pre_exit,
	.exit = toa_stats_net_exit,
	.id = &toa_net_id,
	.size = sizeof(struct toa_net),
};


struct pernet_operations toa_proc_net_ops = {
	.init = toa_net_init,
	.exit = toa_net_exit,
};

const struct seq_operations toa_table_seq_ops = {
	.start = toa_table_seq_start,
	.next = toa_table_seq_next,
	.stop = toa_table_seq_stop,
	.show = toa_table_seq_show,
};

/*
 * /proc/net/toa_table is a seq_file with a private state of its own (`Private` in src/sys/proc.rs: a reference
 * on its namespace, and `TableIter` of src/procfs.rs, where the last read() stopped). The namespace is the file's
 * proc data, referenced while the file is open, as seq_open_net does; proc_create_net_data's own open would not
 * let Rust size the state.
 */
const struct proc_ops toa_table_proc_ops = {
	.proc_open = toa_table_open,
	.proc_read_iter = seq_read_iter,
	.proc_lseek = seq_lseek,
	.proc_release = toa_table_release,
};

void toa_seq_puts(struct seq_file *seq, const char *s) { seq_puts(seq, s); }
struct proc_dir_entry *toa_net_proc_dir(struct net *net) { return net->proc_net; }
struct net *toa_seq_single_net(struct seq_file *seq) { return seq_file_single_net(seq); }
void *toa_pde_data(const struct inode *inode) { return pde_data(inode); }
struct seq_file *toa_file_seq(const struct file *file) { return file->private_data; }
struct net *toa_maybe_get_net(struct net *net) { return maybe_get_net(net); }
void toa_put_net(struct net *net) { put_net(net); }
void *toa_seq_private(const struct seq_file *seq) { return seq->private; }

/* ---- Socket and skb field reads ---- */

struct net *toa_sk_net(const struct sock *sk) { return sock_net(sk); }
__be32 toa_sk_rcv_saddr(const struct sock *sk) { return READ_ONCE(sk->sk_rcv_saddr); }
__be32 toa_sk_daddr(const struct sock *sk) { return READ_ONCE(sk->sk_daddr); }
const struct in6_addr *toa_sk_v6_rcv_saddr(const struct sock *sk) { return &sk->sk_v6_rcv_saddr; }
const struct in6_addr *toa_sk_v6_daddr(const struct sock *sk) { return &sk->sk_v6_daddr; }
__u16 toa_sk_num(const struct sock *sk) { return READ_ONCE(sk->sk_num); }
__be16 toa_sk_dport(const struct sock *sk) { return READ_ONCE(sk->sk_dport); }

/*
 * ---- Operation tables (src/sys/ops.rs; the unload protocol is in src/redirect.rs) ----
 *
 * toa's copies of TCP's per-family tables, given to listening sockets: the connection table
 * (icsk_af_ops) and the socket-call table (sock->ops). Both are allocated: sockets can inherit
 * either and outlive the module.
 */
struct inet_connection_sock_af_ops *toa_af_ops_dup(const struct inet_connection_sock_af_ops *ops)
{
	return kmemdup(ops, sizeof(*ops), GFP_KERNEL);
}
toa_syn_recv_sock_t toa_af_ops_syn_recv_sock(const struct inet_connection_sock_af_ops *ops)
{
	return READ_ONCE(ops->syn_recv_sock);
}
void toa_af_ops_set_syn_recv_sock(struct inet_connection_sock_af_ops *ops, toa_syn_recv_sock_t f)
{
	WRITE_ONCE(ops->syn_recv_sock, f);
}
struct proto_ops *toa_proto_ops_dup(const struct proto_ops *ops) { return kmemdup(ops, sizeof(*ops), GFP_KERNEL); }
void toa_kmemleak_not_leak(const void *ptr) { kmemleak_not_leak(ptr); }
toa_getname_t toa_proto_ops_getname(const struct proto_ops *ops) { return READ_ONCE(ops->getname); }
void toa_proto_ops_set_getname(struct proto_ops *ops, toa_getname_t f) { WRITE_ONCE(ops->getname, f); }
struct socket *toa_sk_socket(const struct sock *sk) { return READ_ONCE(sk->sk_socket); }
bool toa_sk_kern(const struct sock *sk) { return sk->sk_kern_sock; }
void toa_lock_sock(struct sock *sk) { lock_sock(sk); }
void toa_release_sock(struct sock *sk) { release_sock(sk); }
void toa_sock_hold(struct sock *sk) { sock_hold(sk); }
void toa_sock_put(struct sock *sk) { sock_put(sk); }
/* TCP's listening hash: one for all namespaces (a namespace's own hashinfo shares it). */
unsigned int toa_lhash2_buckets(void) { return init_net.ipv4.tcp_death_row.hashinfo->lhash2_mask + 1; }
spinlock_t *toa_lhash2_lock(unsigned int i) { return &init_net.ipv4.tcp_death_row.hashinfo->lhash2[i].lock; }
struct hlist_nulls_node *toa_lhash2_first(unsigned int i)
{
	return init_net.ipv4.tcp_death_row.hashinfo->lhash2[i].nulls_head.first;
}
struct sock *toa_nulls_node_sk(struct hlist_nulls_node *node) { return hlist_nulls_entry(node, struct sock, sk_nulls_node); }
struct hlist_nulls_node *toa_sk_nulls_next(const struct sock *sk) { return sk->sk_nulls_node.next; }
void toa_spin_lock(spinlock_t *lock) { spin_lock(lock); }
void toa_spin_unlock(spinlock_t *lock) { spin_unlock(lock); }
void toa_synchronize_rcu_tasks(void) { synchronize_rcu_tasks(); }

/* ---- Rate-limited debug lines ---- */

static DEFINE_RATELIMIT_STATE(toa_debug_rs, DEFAULT_RATELIMIT_INTERVAL, DEFAULT_RATELIMIT_BURST);
bool toa_debug_ratelimit(void) { return __ratelimit(&toa_debug_rs); }
