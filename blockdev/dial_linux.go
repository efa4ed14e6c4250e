package blockdev

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/internal/iscsinl"
	"github.com/gosan/iscsi/pdu"
)

// Dialing: the portal as the kernel shows it, the TCP socket handed to the
// kernel, and the login transport over SEND_PDU/RECV_PDU.

// resolvePortal turns host[:port] into a TCP address (port 3260 default).
func resolvePortal(ctx context.Context, portal string) (*net.TCPAddr, error) {
	host, port, err := net.SplitHostPort(portal)
	if err != nil {
		host, port = strings.Trim(portal, "[]"), strconv.Itoa(iscsi.DefaultPort)
	}
	if host == "" {
		return nil, fmt.Errorf("blockdev: portal %q has no host", portal)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return nil, fmt.Errorf("blockdev: portal %q: bad port", portal)
	}
	if ip := net.ParseIP(host); ip != nil {
		return &net.TCPAddr{IP: ip, Port: int(p)}, nil
	}
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return nil, fmt.Errorf("blockdev: resolving portal %q: %w", portal, err)
	}
	return &net.TCPAddr{IP: ips[0], Port: int(p)}, nil
}

// portalString is addr as the kernel shows it: IPv4 without the
// v4-in-v6 prefix, IPv6 in brackets.
func portalString(addr *net.TCPAddr) string {
	ip := addr.IP
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(addr.Port))
}

// dialTCP connects a non-blocking TCP socket from userspace as iscsid
// does (SO_BINDTODEVICE when netdev is set, TCP_NODELAY), bounded by ctx.
// It returns the raw descriptor: it is handed to the kernel, never used by
// the Go runtime's poller.
func dialTCP(ctx context.Context, addr *net.TCPAddr, netdev string) (int, error) {
	var sa unix.Sockaddr
	family := unix.AF_INET
	if ip4 := addr.IP.To4(); ip4 != nil {
		s := &unix.SockaddrInet4{Port: addr.Port}
		copy(s.Addr[:], ip4)
		sa = s
	} else {
		family = unix.AF_INET6
		s := &unix.SockaddrInet6{Port: addr.Port}
		copy(s.Addr[:], addr.IP.To16())
		if addr.Zone != "" {
			if ifi, err := net.InterfaceByName(addr.Zone); err == nil {
				s.ZoneId = uint32(ifi.Index)
			}
		}
		sa = s
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	if netdev != "" {
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, netdev); err != nil {
			return -1, fmt.Errorf("SO_BINDTODEVICE %s: %w", netdev, err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		return -1, fmt.Errorf("TCP_NODELAY: %w", err)
	}
	err = unix.Connect(fd, sa)
	if err != nil && !errors.Is(err, unix.EINPROGRESS) {
		return -1, fmt.Errorf("connect %s: %w", addr, err)
	}
	for err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return -1, fmt.Errorf("connect %s: %w", addr, cerr)
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, perr := unix.Poll(pfd, 50)
		if perr != nil && !errors.Is(perr, unix.EINTR) {
			return -1, fmt.Errorf("poll: %w", perr)
		}
		if n <= 0 {
			continue
		}
		soerr, gerr := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if gerr != nil {
			return -1, fmt.Errorf("SO_ERROR: %w", gerr)
		}
		if soerr != 0 {
			return -1, fmt.Errorf("connect %s: %w", addr, syscall.Errno(soerr))
		}
		err = nil
	}
	ok = true
	return fd, nil
}

// kernelTransport runs the login engine over SEND_PDU/RECV_PDU. The kernel
// assigns the ITT (and CmdSN) of every PDU userspace sends
// (__iscsi_conn_send_pdu) and passes responses up unchanged, so responses
// carry the kernel's ITT: it is put back to the one the engine used.
type kernelTransport struct {
	t   *iscsinl.PDUTransport
	itt uint32
}

func (kt *kernelTransport) SendPDU(ctx context.Context, m pdu.Message) error {
	b := m.Encode(nil)
	if len(b) >= pdu.BHSLen {
		kt.itt = binary.BigEndian.Uint32(b[16:20])
	}
	return kt.t.SendRaw(ctx, b)
}

func (kt *kernelTransport) RecvPDU(ctx context.Context) ([]byte, error) {
	p, err := kt.t.RecvPDU(ctx)
	if err != nil {
		return nil, err
	}
	restoreITT(p, kt.itt)
	return p, nil
}

// restoreITT puts itt into a Login, Text or Logout Response.
func restoreITT(p []byte, itt uint32) {
	if len(p) < pdu.BHSLen {
		return
	}
	h := (*pdu.BHS)(p[:pdu.BHSLen])
	switch h.Opcode() {
	case pdu.OpLoginResponse, pdu.OpTextResponse, pdu.OpLogoutResponse:
		h.SetITT(itt)
	}
}
