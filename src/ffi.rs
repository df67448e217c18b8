// SPDX-License-Identifier: GPL-2.0

//! Declarations of the C shim (`src/toa_shim.c`) and of the exported kernel functions toa calls.
//!
//! Linux 6.12's `kernel` crate has no bindings for kprobes, ftrace, netfilter socket options, procfs, per-CPU data,
//! RCU, spinlock arrays or socket fields, so the kernel structures toa touches are opaque here: Rust hands
//! pointers back to C accessors, except for the few members the hot paths read in place, whose offsets
//! `src/sys/layout.rs` gets from the kernel's headers at build time. The safe wrappers built on these live in
//! `probes.rs`, `percpu.rs`, `procfs.rs`, `store.rs` and `hooks.rs`; nothing else calls into this module.

use core::ffi::{c_char, c_int, c_long, c_uint, c_ulong, c_void, CStr};
use core::marker::{PhantomData, PhantomPinned};

macro_rules! opaque {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[repr(C)]
        pub(crate) struct $name {
            _private: [u8; 0],
            _marker: PhantomData<(*mut u8, PhantomPinned)>,
        }
    )*};
}

opaque! {
    /// `struct sock`.
    Sock;
    /// `struct socket`.
    Socket;
    /// `struct sk_buff`.
    SkBuff;
    /// `struct pt_regs`: the registers of a probed call.
    PtRegs;
    /// `struct kretprobe`.
    Kretprobe;
    /// `struct kretprobe_instance`: one probed call in flight.
    KretprobeInstance;
    /// `struct ftrace_ops`: a function-entry callback.
    FtraceOps;
    /// `struct ftrace_regs`: the registers (arguments) of a traced call.
    FtraceRegs;
    /// `struct nf_sockopt_ops`.
    NfSockoptOps;
    /// `struct pernet_operations`.
    PernetOperations;
    /// `struct net`: a network namespace.
    Net;
    /// `struct proc_dir_entry`.
    ProcDirEntry;
    /// `struct seq_file`.
    SeqFile;
    /// `struct seq_operations`.
    SeqOperations;
    /// `struct proc_ops`.
    ProcOps;
    /// `struct inode`.
    Inode;
    /// `struct file`.
    File;
    /// `spinlock_t`.
    SpinLock;
    /// `struct kmem_cache`: a slab cache.
    KmemCache;
    /// `struct nf_hook_ops`: a netfilter hook.
    NfHookOps;
    /// `struct nf_hook_state`: where a packet is in netfilter (hook, namespace, devices).
    NfHookState;
    /// `struct xarray`.
    XArray;
    /// `struct mutex`.
    Mutex;
    /// `struct delayed_work`.
    DelayedWork;
    /// `struct work_struct`.
    WorkStruct;
    /// `struct inet_connection_sock_af_ops`: a connection-oriented socket's per-family operations.
    AfOps;
    /// `struct proto_ops`: a socket's calls (`bind`, `accept`, `getname`...).
    ProtoOps;
    /// `struct hlist_nulls_node`: a link of a nulls-terminated hash chain.
    HlistNullsNode;
    /// `struct request_sock`: a connection request (handshake in progress).
    RequestSock;
    /// `struct dst_entry`: a route.
    DstEntry;
}

/// `inet_connection_sock_af_ops.syn_recv_sock`: creates the child socket of a listener `sk` from the
/// packet `skb` that completes the handshake of `req`; sets `*own_req` when the child is the one
/// hashed. `opt_child_init` (MPTCP's, or null) initialises the child before it is hashed.
pub(crate) type SynRecvSockFn = unsafe extern "C" fn(
    sk: *const Sock,
    skb: *mut SkBuff,
    req: *mut RequestSock,
    dst: *mut DstEntry,
    req_unhash: *mut RequestSock,
    own_req: *mut bool,
    opt_child_init: *const c_void,
) -> *mut Sock;

/// `proto_ops.getname`: writes the socket's local (`peer == 0`) or peer (`peer != 0`; 2 from `accept()`)
/// address at `addr`; returns its length or a negative errno.
pub(crate) type GetnameFn =
    unsafe extern "C" fn(sock: *mut Socket, addr: *mut u8, peer: c_int) -> c_int;

/// `NF_ACCEPT` (`include/uapi/linux/netfilter.h`): let the packet go on.
pub(crate) const NF_ACCEPT: u32 = 1;
/// `IPPROTO_UDP`.
pub(crate) const IPPROTO_UDP: u8 = 17;

/// `SEQ_START_TOKEN` of `include/linux/seq_file.h`.
// `((void *)1)` in C, an address: not the dangling `c_void` pointer clippy takes it for (its
// manual_dangling_ptr, active with 7.2's MSRV 1.85).
#[allow(clippy::manual_dangling_ptr)]
pub(crate) const SEQ_START_TOKEN: *mut c_void = 1 as *mut c_void;
/// `AF_INET` (`include/linux/socket.h`).
pub(crate) const AF_INET: u16 = 2;
/// `AF_INET6` (`include/linux/socket.h`).
pub(crate) const AF_INET6: u16 = 10;
/// `TCP_SYN_SENT`, `TCP_CLOSE` and `TCP_LISTEN` of `include/net/tcp_states.h`.
pub(crate) const TCP_SYN_SENT: u8 = 2;
/// See [`TCP_SYN_SENT`].
pub(crate) const TCP_CLOSE: u8 = 7;
/// See [`TCP_SYN_SENT`].
pub(crate) const TCP_LISTEN: u8 = 10;

/// `s` as the `const char *` the declarations below take.
///
/// The kernel's clippy configuration (`.clippy.toml`, from 7.2 at least) disallows `CStr::as_ptr` and
/// `CStr::from_ptr` because the kernel's `c_char` (`kernel::ffi`) is `u8` while `core`'s `CStr` works with
/// `core::ffi::c_char`; these declarations take `core::ffi::c_char`, so the types match.
#[allow(clippy::disallowed_methods)]
#[inline(always)]
pub(crate) fn c_str_ptr(s: &CStr) -> *const c_char {
    s.as_ptr()
}

/// The C string at `p` (`CStr::from_ptr`; see [`c_str_ptr`] for why it is wrapped).
///
/// # Safety
///
/// As for `CStr::from_ptr`: `p` is a NUL-terminated string that lives, unchanged, for `'a`.
#[allow(clippy::disallowed_methods)]
#[inline(always)]
pub(crate) unsafe fn c_str_from_ptr<'a>(p: *const c_char) -> &'a CStr {
    // SAFETY: per the function's contract.
    unsafe { CStr::from_ptr(p) }
}

extern "C" {
    // ---- module parameters (src/toa_shim.c)
    pub(crate) static mut toa_param_debug: bool;
    pub(crate) static toa_net_id: c_uint;
    pub(crate) static mut toa_param_nat64_getpeername: bool;
    pub(crate) static mut toa_param_getsockname_vip: bool;
    pub(crate) static mut toa_param_trusted_sources: *const c_char;

    // ---- probes
    pub(crate) static mut toa_krp_listen_start: Kretprobe;
    pub(crate) static mut toa_ftrace_sock_destruct: FtraceOps;
    pub(crate) static mut toa_ftrace_listen_stop: FtraceOps;
    pub(crate) static mut toa_ftrace_tcp_set_ulp: FtraceOps;
    pub(crate) fn toa_kri_data(ri: *mut KretprobeInstance) -> *mut c_void;
    pub(crate) fn toa_regs_arg(regs: *mut PtRegs, n: c_uint) -> c_ulong;
    pub(crate) fn toa_regs_ret(regs: *mut PtRegs) -> c_ulong;
    pub(crate) fn toa_kretprobe_nmissed(rp: *const Kretprobe) -> c_ulong;
    pub(crate) fn register_kretprobe(rp: *mut Kretprobe) -> c_int;
    pub(crate) fn unregister_kretprobe(rp: *mut Kretprobe);
    pub(crate) fn ftrace_set_filter(
        ops: *mut FtraceOps,
        buf: *mut u8,
        len: c_int,
        reset: c_int,
    ) -> c_int;
    pub(crate) fn ftrace_free_filter(ops: *mut FtraceOps);
    pub(crate) fn register_ftrace_function(ops: *mut FtraceOps) -> c_int;
    pub(crate) fn unregister_ftrace_function(ops: *mut FtraceOps) -> c_int;
    pub(crate) fn toa_ftrace_recursion_trylock(ip: c_ulong, parent_ip: c_ulong) -> c_int;
    pub(crate) fn toa_ftrace_recursion_unlock(bit: c_int);
    pub(crate) fn toa_fregs_arg(fregs: *mut FtraceRegs, n: c_uint) -> c_ulong;

    // ---- operation tables
    pub(crate) fn toa_af_ops_dup(ops: *const AfOps) -> *mut AfOps;
    pub(crate) fn toa_af_ops_syn_recv_sock(ops: *const AfOps) -> SynRecvSockFn;
    pub(crate) fn toa_af_ops_set_syn_recv_sock(ops: *mut AfOps, f: SynRecvSockFn);
    pub(crate) fn toa_proto_ops_dup(ops: *const ProtoOps) -> *mut ProtoOps;
    pub(crate) fn toa_kmemleak_not_leak(ptr: *const c_void);
    pub(crate) fn toa_proto_ops_getname(ops: *const ProtoOps) -> GetnameFn;
    pub(crate) fn toa_proto_ops_set_getname(ops: *mut ProtoOps, f: GetnameFn);
    pub(crate) fn toa_sk_socket(sk: *const Sock) -> *mut Socket;
    pub(crate) fn toa_sk_kern(sk: *const Sock) -> bool;
    pub(crate) fn toa_lock_sock(sk: *mut Sock);
    pub(crate) fn toa_release_sock(sk: *mut Sock);
    pub(crate) fn toa_sock_hold(sk: *mut Sock);
    pub(crate) fn toa_sock_put(sk: *mut Sock);
    pub(crate) fn toa_lhash2_buckets() -> c_uint;
    pub(crate) fn toa_lhash2_lock(i: c_uint) -> *mut SpinLock;
    pub(crate) fn toa_lhash2_first(i: c_uint) -> *mut HlistNullsNode;
    pub(crate) fn toa_nulls_node_sk(node: *mut HlistNullsNode) -> *mut Sock;
    pub(crate) fn toa_sk_nulls_next(sk: *const Sock) -> *mut HlistNullsNode;
    pub(crate) fn toa_spin_lock(lock: *mut SpinLock);
    pub(crate) fn toa_spin_unlock(lock: *mut SpinLock);
    pub(crate) fn toa_synchronize_rcu_tasks();
    pub(crate) fn msleep(msecs: c_uint);
    pub(crate) fn kfree(ptr: *const c_void);
    pub(crate) static mut init_net: Net;
    pub(crate) fn sock_create_kern(
        net: *mut Net,
        family: c_int,
        ty: c_int,
        protocol: c_int,
        res: *mut *mut Socket,
    ) -> c_int;
    pub(crate) fn sock_release(sock: *mut Socket);

    // ---- getsockopt
    pub(crate) static mut toa_sockopt_ops: NfSockoptOps;
    pub(crate) fn nf_register_sockopt(reg: *mut NfSockoptOps) -> c_int;
    pub(crate) fn nf_unregister_sockopt(reg: *mut NfSockoptOps);
    pub(crate) fn toa_in_task() -> bool;
    pub(crate) fn toa_current_is_kthread() -> bool;
    pub(crate) fn toa_in_compat_syscall() -> bool;
    pub(crate) fn toa_syscall_nr() -> c_long;
    pub(crate) fn toa_syscall_args(args: *mut [c_ulong; 6]);
    pub(crate) static toa_nr_getpeername: c_long;
    pub(crate) static toa_nr_getsockname: c_long;
    pub(crate) static toa_nr_accept: c_long;
    pub(crate) static toa_nr_accept4: c_long;
    pub(crate) fn copy_from_user_nofault(
        dst: *mut c_void,
        src: *const c_void,
        size: usize,
    ) -> c_long;

    // ---- store
    pub(crate) static mut toa_param_table_buckets: c_uint;
    pub(crate) fn toa_tcp_ehash_size() -> c_uint;
    pub(crate) fn toa_alloc_bucket_locks(
        locks: *mut *mut SpinLock,
        mask: *mut c_uint,
        buckets: c_uint,
    ) -> c_int;
    pub(crate) fn free_bucket_spinlocks(locks: *mut SpinLock);
    pub(crate) fn toa_bucket_lock(locks: *mut SpinLock, i: c_uint) -> *mut SpinLock;
    pub(crate) fn toa_spin_lock_bh(lock: *mut SpinLock);
    pub(crate) fn toa_spin_unlock_bh(lock: *mut SpinLock);
    pub(crate) fn toa_kmem_cache_create(
        name: *const c_char,
        size: c_uint,
        align: c_uint,
        freeptr_offset: c_uint,
    ) -> *mut KmemCache;
    pub(crate) fn toa_kmem_cache_alloc_atomic(cache: *mut KmemCache) -> *mut c_void;
    pub(crate) fn kmem_cache_free(cache: *mut KmemCache, obj: *mut c_void);
    pub(crate) fn kmem_cache_destroy(cache: *mut KmemCache);
    pub(crate) fn toa_rcu_read_lock();
    pub(crate) fn toa_preemptible() -> bool;
    pub(crate) fn toa_rcu_read_unlock();
    pub(crate) fn synchronize_rcu();

    // ---- per-CPU counters
    pub(crate) fn toa_alloc_percpu(size: usize, align: usize) -> *mut u64;
    pub(crate) fn free_percpu(ptr: *mut u64);
    pub(crate) fn toa_percpu_inc(base: *mut u64, idx: c_uint);
    pub(crate) fn toa_percpu_read(base: *mut u64, idx: c_uint, cpu: c_int) -> u64;
    pub(crate) fn toa_next_possible_cpu(prev: c_int) -> c_int;
    pub(crate) fn toa_nr_cpu_ids() -> c_uint;

    // ---- procfs and network namespaces
    pub(crate) static mut toa_stats_net_ops: PernetOperations;
    pub(crate) static mut toa_proc_net_ops: PernetOperations;
    pub(crate) fn toa_seq_single_net(seq: *mut SeqFile) -> *mut Net;
    pub(crate) static toa_table_seq_ops: SeqOperations;
    pub(crate) static toa_table_proc_ops: ProcOps;
    pub(crate) fn register_pernet_subsys(ops: *mut PernetOperations) -> c_int;
    pub(crate) fn unregister_pernet_subsys(ops: *mut PernetOperations);
    pub(crate) fn toa_net_proc_dir(net: *mut Net) -> *mut ProcDirEntry;
    pub(crate) fn toa_pde_data(inode: *const Inode) -> *mut c_void;
    pub(crate) fn toa_file_seq(file: *const File) -> *mut SeqFile;
    pub(crate) fn toa_maybe_get_net(net: *mut Net) -> *mut Net;
    pub(crate) fn toa_put_net(net: *mut Net);
    pub(crate) fn toa_seq_private(seq: *const SeqFile) -> *mut c_void;
    pub(crate) fn __seq_open_private(
        file: *mut File,
        ops: *const SeqOperations,
        size: c_int,
    ) -> *mut c_void;
    pub(crate) fn seq_release_private(inode: *mut Inode, file: *mut File) -> c_int;
    pub(crate) fn proc_create_data(
        name: *const c_char,
        mode: u16,
        parent: *mut ProcDirEntry,
        ops: *const ProcOps,
        data: *mut c_void,
    ) -> *mut ProcDirEntry;
    pub(crate) fn proc_create_net_single(
        name: *const c_char,
        mode: u16,
        parent: *mut ProcDirEntry,
        show: unsafe extern "C" fn(seq: *mut SeqFile, v: *mut c_void) -> c_int,
        data: *mut c_void,
    ) -> *mut ProcDirEntry;
    pub(crate) fn remove_proc_entry(name: *const c_char, parent: *mut ProcDirEntry);
    pub(crate) fn seq_printf(seq: *mut SeqFile, fmt: *const c_char, ...);
    pub(crate) fn toa_seq_puts(seq: *mut SeqFile, s: *const c_char);

    // ---- sockets and packets
    pub(crate) fn toa_sk_net(sk: *const Sock) -> *mut Net;
    pub(crate) fn toa_sk_rcv_saddr(sk: *const Sock) -> u32;
    pub(crate) fn toa_sk_daddr(sk: *const Sock) -> u32;
    pub(crate) fn toa_sk_v6_rcv_saddr(sk: *const Sock) -> *const [u8; 16];
    pub(crate) fn toa_sk_v6_daddr(sk: *const Sock) -> *const [u8; 16];
    pub(crate) fn toa_sk_num(sk: *const Sock) -> u16;
    pub(crate) fn toa_sk_dport(sk: *const Sock) -> u16;

    // ---- UOA (src/uoa.rs, src/uoa/)
    pub(crate) static mut toa_param_uoa: bool;
    pub(crate) static mut toa_param_uoa_timeout: c_uint;
    pub(crate) static mut toa_param_uoa_max_mappings: c_uint;
    pub(crate) static toa_uoa_nf_ops: [NfHookOps; 2];
    pub(crate) static mut toa_uoa_sockopt_ops: NfSockoptOps;
    pub(crate) static mut toa_uoa_net_ops: PernetOperations;
    pub(crate) static mut toa_uoa_nets: XArray;
    pub(crate) static mut toa_uoa_nets_mutex: Mutex;
    pub(crate) static mut toa_uoa_sweep_work: DelayedWork;
    pub(crate) static toa_uoa_iter_size: c_uint;
    pub(crate) static toa_uoa_table_seq_ops: SeqOperations;
    pub(crate) static toa_hz: c_uint;
    pub(crate) fn nf_register_net_hooks(net: *mut Net, reg: *const NfHookOps, n: c_uint) -> c_int;
    pub(crate) fn nf_unregister_net_hooks(net: *mut Net, reg: *const NfHookOps, n: c_uint);
    pub(crate) fn toa_uoa_nets_store(inum: c_ulong, net: *mut Net) -> c_int;
    pub(crate) fn xa_load(xa: *mut XArray, index: c_ulong) -> *mut c_void;
    pub(crate) fn xa_erase(xa: *mut XArray, index: c_ulong) -> *mut c_void;
    pub(crate) fn toa_mutex_lock(m: *mut Mutex);
    pub(crate) fn mutex_unlock(m: *mut Mutex);
    pub(crate) fn toa_schedule_delayed_work(dwork: *mut DelayedWork, delay: c_ulong) -> bool;
    pub(crate) fn cancel_delayed_work_sync(dwork: *mut DelayedWork) -> bool;
    pub(crate) fn toa_uoa_walker(seq: *mut SeqFile) -> *mut c_void;
    pub(crate) fn toa_seq_file_net(seq: *mut SeqFile) -> *mut Net;
    pub(crate) fn proc_create_net_data(
        name: *const c_char,
        mode: u16,
        parent: *mut ProcDirEntry,
        ops: *const SeqOperations,
        state_size: c_uint,
        data: *mut c_void,
    ) -> *mut ProcDirEntry;
    pub(crate) fn toa_jiffies() -> c_ulong;
    pub(crate) fn toa_jhash2(k: *const u32, words: u32, initval: u32) -> u32;
    pub(crate) fn toa_jhash_3words(a: u32, b: u32, c: u32, initval: u32) -> u32;
    pub(crate) fn get_random_u32() -> u32;
    pub(crate) fn toa_skb_len_from_network(skb: *const SkBuff) -> c_uint;
    pub(crate) fn toa_skb_copy_from_network(
        skb: *const SkBuff,
        to: *mut c_void,
        len: c_uint,
    ) -> c_int;

    // ---- logging
    pub(crate) fn toa_debug_ratelimit() -> bool;
}
