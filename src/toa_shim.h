/* SPDX-License-Identifier: GPL-2.0 */
/*
 * toa.ko C shim interface: what src/toa_shim.c defines for the Rust code (mirrored in src/ffi.rs), and the
 * Rust callbacks it points the kernel at. Kernel-internal; applications use include/toa.h.
 */
#ifndef TOA_SHIM_H
#define TOA_SHIM_H

#include <linux/ftrace.h>
#include <linux/kprobes.h>
#include <linux/mutex.h>
#include <linux/netfilter.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>
#include <linux/proc_fs.h>
#include <linux/spinlock.h>
#include <linux/seq_file.h>
#include <net/net_namespace.h>
#include <net/sock.h>
#include <net/inet_common.h>
#include <net/inet_connection_sock.h>

/* Rust callbacks (src/hooks.rs, src/sockopt.rs, src/procfs.rs). */

int toa_listen_start_entry(struct kretprobe_instance *ri, struct pt_regs *regs);
int toa_listen_start_ret(struct kretprobe_instance *ri, struct pt_regs *regs);
void toa_sock_destruct_ftrace(unsigned long ip, unsigned long parent_ip, struct ftrace_ops *op,
			      struct ftrace_regs *fregs);
void toa_listen_stop_ftrace(unsigned long ip, unsigned long parent_ip, struct ftrace_ops *op,
			    struct ftrace_regs *fregs);
void toa_tcp_set_ulp_ftrace(unsigned long ip, unsigned long parent_ip, struct ftrace_ops *op,
			    struct ftrace_regs *fregs);
int toa_sockopt_get(struct sock *sk, int optval, void __user *user, int *len);
int toa_stats_net_init(struct net *net);
void toa_stats_net_pre_exit(struct net *net);
void toa_stats_net_exit(struct net *net);
int toa_net_init(struct net *net);
void toa_net_exit(struct net *net);
void *toa_table_seq_start(struct seq_file *seq, loff_t *pos);
void *toa_table_seq_next(struct seq_file *seq, void *v, loff_t *pos);
void toa_table_seq_stop(struct seq_file *seq, void *v);
int toa_table_seq_show(struct seq_file *seq, void *v);
int toa_table_open(struct inode *inode, struct file *file);
int toa_table_release(struct inode *inode, struct file *file);
unsigned int toa_uoa_hook_v4(void *priv, struct sk_buff *skb, const struct nf_hook_state *state);
unsigned int toa_uoa_hook_v6(void *priv, struct sk_buff *skb, const struct nf_hook_state *state);
int toa_uoa_sockopt_get(struct sock *sk, int optval, void __user *user, int *len);
int toa_uoa_net_init(struct net *net);
void toa_uoa_net_pre_exit(struct net *net);
void toa_uoa_net_exit(struct net *net);
void toa_uoa_sweep(struct work_struct *work);
void *toa_uoa_table_seq_start(struct seq_file *seq, loff_t *pos);
void *toa_uoa_table_seq_next(struct seq_file *seq, void *v, loff_t *pos);
void toa_uoa_table_seq_stop(struct seq_file *seq, void *v);
int toa_uoa_table_seq_show(struct seq_file *seq, void *v);

/* Words of the uoa_table walker's state (src/sys/proc.rs checks the state's size against it). */
#define TOA_UOA_WALKER_WORDS 16

/*
 * A namespace's toa state (net_generic storage of toa_stats_net_ops, read from Rust through src/sys/layout.rs):
 * its counters, published in `stats`, moved to `retired` by pre_exit, freed by exit; and its number of UOA
 * flow mappings (src/uoa/flows.rs).
 */
struct toa_net {
	u64 __percpu *stats;
	u64 __percpu *retired;
	long uoa_mappings;
};

/* Objects and parameters. */
extern bool toa_param_debug;
extern bool toa_param_nat64_getpeername;
extern bool toa_param_getsockname_vip;
extern struct kretprobe toa_krp_listen_start;
extern struct ftrace_ops toa_ftrace_sock_destruct;
extern struct ftrace_ops toa_ftrace_listen_stop;
extern struct ftrace_ops toa_ftrace_tcp_set_ulp;
extern struct nf_sockopt_ops toa_sockopt_ops;
extern const long toa_nr_getpeername;
extern const long toa_nr_getsockname;
extern const long toa_nr_accept;
extern const long toa_nr_accept4;
extern unsigned int toa_param_table_buckets;
extern struct pernet_operations toa_stats_net_ops;
extern struct pernet_operations toa_proc_net_ops;
extern unsigned int toa_net_id;
extern char *toa_param_trusted_sources;
extern const struct seq_operations toa_table_seq_ops;
extern const struct proc_ops toa_table_proc_ops;
extern bool toa_param_uoa;
extern unsigned int toa_param_uoa_timeout;
extern unsigned int toa_param_uoa_max_mappings;
extern const struct nf_hook_ops toa_uoa_nf_ops[2];
extern struct nf_sockopt_ops toa_uoa_sockopt_ops;
extern struct pernet_operations toa_uoa_net_ops;
extern struct xarray toa_uoa_nets;
extern struct mutex toa_uoa_nets_mutex;
extern struct delayed_work toa_uoa_sweep_work;
extern const unsigned int toa_uoa_iter_size;
extern const struct seq_operations toa_uoa_table_seq_ops;
extern const unsigned int toa_hz;

/* Wrappers and field reads. */
void *toa_kri_data(struct kretprobe_instance *ri);
unsigned long toa_regs_arg(struct pt_regs *regs, unsigned int n);
unsigned long toa_regs_ret(struct pt_regs *regs);
unsigned long toa_kretprobe_nmissed(const struct kretprobe *rp);
int toa_ftrace_recursion_trylock(unsigned long ip, unsigned long parent_ip);
void toa_ftrace_recursion_unlock(int bit);
unsigned long toa_fregs_arg(struct ftrace_regs *fregs, unsigned int n);
bool toa_in_task(void);
bool toa_current_is_kthread(void);
bool toa_in_compat_syscall(void);
long toa_syscall_nr(void);
void toa_syscall_args(unsigned long args[6]);
unsigned int toa_tcp_ehash_size(void);
int toa_alloc_bucket_locks(spinlock_t **locks, unsigned int *mask, unsigned int buckets);
spinlock_t *toa_bucket_lock(spinlock_t *locks, unsigned int i);
void toa_spin_lock_bh(spinlock_t *lock);
void toa_spin_unlock_bh(spinlock_t *lock);
struct kmem_cache *toa_kmem_cache_create(const char *name, unsigned int size, unsigned int align,
					 unsigned int freeptr_offset);
void *toa_kmem_cache_alloc_atomic(struct kmem_cache *cache);
void toa_rcu_read_lock(void);
bool toa_preemptible(void);
void toa_rcu_read_unlock(void);
u64 __percpu *toa_alloc_percpu(size_t size, size_t align);
void toa_percpu_inc(u64 __percpu *base, unsigned int idx);
u64 toa_percpu_read(u64 __percpu *base, unsigned int idx, int cpu);
int toa_next_possible_cpu(int prev);
unsigned int toa_nr_cpu_ids(void);
void toa_seq_puts(struct seq_file *seq, const char *s);
struct proc_dir_entry *toa_net_proc_dir(struct net *net);
struct net *toa_seq_single_net(struct seq_file *seq);
void *toa_pde_data(const struct inode *inode);
struct seq_file *toa_file_seq(const struct file *file);
struct net *toa_maybe_get_net(struct net *net);
void toa_put_net(struct net *net);
void *toa_seq_private(const struct seq_file *seq);
struct net *toa_sk_net(const struct sock *sk);
__be32 toa_sk_rcv_saddr(const struct sock *sk);
__be32 toa_sk_daddr(const struct sock *sk);
const struct in6_addr *toa_sk_v6_rcv_saddr(const struct sock *sk);
const struct in6_addr *toa_sk_v6_daddr(const struct sock *sk);
__u16 toa_sk_num(const struct sock *sk);
__be16 toa_sk_dport(const struct sock *sk);
bool toa_debug_ratelimit(void);
int toa_uoa_nets_store(unsigned long inum, struct net *net);
void toa_mutex_lock(struct mutex *m);
bool toa_schedule_delayed_work(struct delayed_work *dwork, unsigned long delay);
void *toa_uoa_walker(struct seq_file *seq);
struct net *toa_seq_file_net(struct seq_file *seq);
unsigned long toa_jiffies(void);
u32 toa_jhash2(const u32 *k, u32 words, u32 initval);
u32 toa_jhash_3words(u32 a, u32 b, u32 c, u32 initval);
unsigned int toa_skb_len_from_network(const struct sk_buff *skb);
int toa_skb_copy_from_network(const struct sk_buff *skb, void *to, unsigned int len);

/* Operation tables: the slots toa replaces, and their types. */
typedef void (*toa_opt_child_init_t)(struct sock *newsk, const struct sock *sk);
typedef struct sock *(*toa_syn_recv_sock_t)(const struct sock *sk, struct sk_buff *skb,
					     struct request_sock *req, struct dst_entry *dst,
					     struct request_sock *req_unhash, bool *own_req,
					     toa_opt_child_init_t opt_child_init);
typedef int (*toa_getname_t)(struct socket *sock, struct sockaddr *addr, int peer);
struct sock *toa_syn_recv_sock_v4(const struct sock *sk, struct sk_buff *skb, struct request_sock *req,
				  struct dst_entry *dst, struct request_sock *req_unhash, bool *own_req,
				  toa_opt_child_init_t opt_child_init);
struct sock *toa_syn_recv_sock_v6(const struct sock *sk, struct sk_buff *skb, struct request_sock *req,
				  struct dst_entry *dst, struct request_sock *req_unhash, bool *own_req,
				  toa_opt_child_init_t opt_child_init);
int toa_getname_v4(struct socket *sock, struct sockaddr *addr, int peer);
int toa_getname_v6(struct socket *sock, struct sockaddr *addr, int peer);
struct inet_connection_sock_af_ops *toa_af_ops_dup(const struct inet_connection_sock_af_ops *ops);
toa_syn_recv_sock_t toa_af_ops_syn_recv_sock(const struct inet_connection_sock_af_ops *ops);
void toa_af_ops_set_syn_recv_sock(struct inet_connection_sock_af_ops *ops, toa_syn_recv_sock_t f);
struct proto_ops *toa_proto_ops_dup(const struct proto_ops *ops);
void toa_kmemleak_not_leak(const void *ptr);
toa_getname_t toa_proto_ops_getname(const struct proto_ops *ops);
void toa_proto_ops_set_getname(struct proto_ops *ops, toa_getname_t f);
struct socket *toa_sk_socket(const struct sock *sk);
bool toa_sk_kern(const struct sock *sk);
void toa_lock_sock(struct sock *sk);
void toa_release_sock(struct sock *sk);
void toa_sock_hold(struct sock *sk);
void toa_sock_put(struct sock *sk);
unsigned int toa_lhash2_buckets(void);
spinlock_t *toa_lhash2_lock(unsigned int i);
struct hlist_nulls_node *toa_lhash2_first(unsigned int i);
struct sock *toa_nulls_node_sk(struct hlist_nulls_node *node);
struct hlist_nulls_node *toa_sk_nulls_next(const struct sock *sk);
void toa_spin_lock(spinlock_t *lock);
void toa_spin_unlock(spinlock_t *lock);
void toa_synchronize_rcu_tasks(void);

#endif /* TOA_SHIM_H */
