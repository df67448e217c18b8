#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The real client of a UDP datagram that came through a layer-4 load balancer, asked from toa.ko.

socket.getsockopt() cannot pass input to the kernel, and the lookup needs some (which flow): call libc's
getsockopt through ctypes with union uoa_sockopt_param (UOA_SO_GET_LOOKUP1, include/uoa.h).

    python3 uoa_lookup.py PORT    # serve one datagram on [::]:PORT (IPv4 and IPv6), print its client
"""
import ctypes
import os
import socket
import sys

UOA_SO_GET_LOOKUP1 = 2049
UOA_IP_TYPE_V6 = 1


class UoaParam(ctypes.Structure):
    """union uoa_sockopt_param (40 bytes). IPv4 addresses take the first 4 bytes of saddr (and daddr
    the next 4): with daddr zero (any local address) one layout serves both families."""

    _fields_ = [
        ("type", ctypes.c_uint),
        ("sport", ctypes.c_uint16),  # network byte order
        ("dport", ctypes.c_uint16),
        ("saddr", ctypes.c_ubyte * 16),
        ("daddr", ctypes.c_ubyte * 16),
    ]


libc = ctypes.CDLL(None, use_errno=True)


def uoa_lookup(sock, peer_addr):
    """(client_ip, client_port) of the flow from peer_addr (what recvfrom() returned) to sock."""
    family = sock.family  # an AF_INET6 socket names an IPv4 peer ::ffff:a.b.c.d, as recvfrom() does
    p = UoaParam(type=family, sport=socket.htons(peer_addr[1]), dport=socket.htons(sock.getsockname()[1]))
    lb = socket.inet_pton(family, peer_addr[0])
    ctypes.memmove(p.saddr, lb, len(lb))
    size = ctypes.c_uint32(ctypes.sizeof(p))  # socklen_t
    ret = libc.getsockopt(sock.fileno(), socket.IPPROTO_IP, UOA_SO_GET_LOOKUP1, ctypes.byref(p), ctypes.byref(size))
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    if p.type == UOA_IP_TYPE_V6:
        ip = socket.inet_ntop(socket.AF_INET6, bytes(p.saddr))
    else:
        ip = socket.inet_ntop(socket.AF_INET, bytes(p.saddr[:4]))
    return ip, socket.ntohs(p.sport)


if __name__ == "__main__":
    port = int(sys.argv[1])
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    print(f"ready: udp port {port}", flush=True)
    data, peer = s.recvfrom(2048)
    try:
        ip, cport = uoa_lookup(s, peer)
        print(f"datagram from {peer[0]} port {peer[1]}: client {ip} port {cport}", flush=True)
    except OSError as e:
        print(f"datagram from {peer[0]} port {peer[1]}: no client ({e.strerror})", flush=True)
        sys.exit(1)
