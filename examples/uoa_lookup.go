// SPDX-License-Identifier: GPL-2.0

// uoa_lookup: the real client of a UDP datagram that came through a layer-4 load balancer, asked from
// toa.ko with getsockopt UOA_SO_GET_LOOKUP1 (v1, union uoa_sockopt_param of include/uoa.h) on the
// socket's descriptor: the syscall package has no getsockopt that passes input, so it is a raw syscall.
//
//	go run uoa_lookup.go PORT   # serve one datagram on [::]:PORT (IPv4 and IPv6), print its client
package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

const uoaSoGetLookup1 = 2049

// uoaParam is union uoa_sockopt_param (40 bytes). An IPv4 address takes the first 4 bytes of Saddr
// (and Daddr the next 4): with Daddr zero (any local address) one layout serves both families.
type uoaParam struct {
	Type         uint32
	Sport, Dport [2]byte // network byte order
	Saddr, Daddr [16]byte
}

// uoaLookup returns the client of the flow from peer (what ReadFromUDP returned) to conn. conn is an
// AF_INET6 socket (Go's default for ":port"), where an IPv4 peer is ::ffff:a.b.c.d.
func uoaLookup(conn *net.UDPConn, peer *net.UDPAddr) (net.IP, int, error) {
	p := uoaParam{Type: syscall.AF_INET6}
	binary.BigEndian.PutUint16(p.Sport[:], uint16(peer.Port))
	binary.BigEndian.PutUint16(p.Dport[:], uint16(conn.LocalAddr().(*net.UDPAddr).Port))
	copy(p.Saddr[:], peer.IP.To16())
	size := uint32(unsafe.Sizeof(p))
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, 0, err
	}
	var errno syscall.Errno
	err = raw.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_IP, uoaSoGetLookup1,
			uintptr(unsafe.Pointer(&p)), uintptr(unsafe.Pointer(&size)), 0)
	})
	if err != nil {
		return nil, 0, err
	}
	if errno != 0 {
		return nil, 0, errno
	}
	ip := net.IP(p.Saddr[:4]) // UOA_IP_TYPE_V4
	if p.Type == 1 {          // UOA_IP_TYPE_V6
		ip = net.IP(p.Saddr[:])
	}
	return ip, int(binary.BigEndian.Uint16(p.Sport[:])), nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: uoa_lookup PORT")
		os.Exit(2)
	}
	port, err := strconv.Atoi(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{Port: port})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("ready: udp port %d\n", port)
	buf := make([]byte, 2048)
	_, peer, err := conn.ReadFromUDP(buf)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ip, cport, err := uoaLookup(conn, peer)
	if err != nil {
		fmt.Printf("datagram from %s: no client (%v)\n", peer, err)
		os.Exit(1)
	}
	fmt.Printf("datagram from %s: client %s port %d\n", peer, ip, cport)
}
