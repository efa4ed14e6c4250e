//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package initiator

import (
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// pollWaitTime bounds a poll(2) wait before the read parks in Go's poller
// (where a read deadline can interrupt it).
const pollWaitTime = time.Millisecond

// rawReader reads a socket with read(2), waiting for data in poll(2) for
// up to pollWaitTime before it parks the goroutine in Go's poller (see
// sockReader).
type rawReader struct {
	// rc is nil when the connection is not a socket; readFn is rawRead
	// bound once, so a read allocates nothing.
	rc     syscall.RawConn
	readFn func(fd uintptr) bool
	buf    []byte
	n      int
	rerr   error
	polled bool
}

func (r *rawReader) init(nc net.Conn) {
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			r.rc = rc
			r.readFn = r.rawRead
		}
	}
}

// ok reports whether the fast path is available for this connection.
func (r *rawReader) ok() bool { return r.rc != nil }

// read reads from the socket, waiting in poll(2) for up to pollWaitTime
// when nothing is there yet, then in Go's poller.
func (r *rawReader) read(nc net.Conn, p []byte) (int, error) {
	r.buf, r.n, r.rerr, r.polled = p, 0, nil, false
	err := r.rc.Read(r.readFn)
	n, rerr := r.n, r.rerr
	r.buf, r.rerr = nil, nil
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: nc.LocalAddr(), Addr: nc.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}
	}
	if n <= 0 {
		return 0, io.EOF
	}
	return n, nil
}

// rawRead is read's step for RawConn.Read: false parks in Go's poller.
func (r *rawReader) rawRead(fd uintptr) bool {
	for {
		n, err := unix.Read(int(fd), r.buf)
		if err == unix.EINTR {
			continue
		}
		if err != unix.EAGAIN {
			r.n, r.rerr = n, err
			return true
		}
		if r.polled {
			return false
		}
		r.polled = true
		if !pollIn(int32(fd)) {
			return false
		}
	}
}
