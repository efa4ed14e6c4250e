package initiator

import (
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pollConn is a connection's TCP socket in full feature phase, taken out of
// Go's network poller: reads and writes are non-blocking system calls, and
// a goroutine that has to wait does so in ppoll(2) on the socket and on an
// eventfd that deadlines and Close use to interrupt it, as libiscsi's or
// open-iscsi's event loops wait in poll(2).
//
// Why: a socket in Go's poller is in the runtime's epoll set, and an idle P
// keeps an OS thread blocked in epoll_pwait on that set. Every segment that
// arrives wakes that thread (the socket is registered edge-triggered) even
// when the goroutine that will read it is running or waiting in ppoll, so
// each response cost one more thread switch. Measured at queue depth 1
// against tgtd: 0.85 epoll_pwait wake-ups per I/O.
//
// The cost is an OS thread per waiting reader or writer (a blocked system
// call holds its thread, not its P): an idle session keeps one thread in
// ppoll.
//
// At most one goroutine reads (the reader role) and one writes (the
// flusher) at a time; Close and the deadline setters may be called from any
// goroutine.
type pollConn struct {
	fd    int
	laddr net.Addr
	raddr net.Addr

	// state counts the read and write calls in progress; closedBit is set
	// by Close. The fd is closed when both are true of no call.
	state     atomic.Int64
	closeOnce sync.Once

	rd, wd atomic.Int64 // deadlines in UnixNano; 0 none
	rwake  int          // eventfd: Close or SetReadDeadline happened
	wwake  int          // eventfd: Close or SetWriteDeadline happened
	iov    []unix.Iovec // reused by the writer
}

const closedBit = 1 << 40

// takeSocket replaces a TCP connection by a pollConn on the same socket: it
// duplicates the descriptor and closes the original, which removes it from
// Go's poller. ok is false (nc untouched) when nc is not a *net.TCPConn or
// a step fails.
func takeSocket(nc net.Conn) (_ net.Conn, ok bool) {
	tc, isTCP := nc.(*net.TCPConn)
	if !isTCP {
		return nc, false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nc, false
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) {
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil || derr != nil {
		return nc, false
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nc, false
	}
	rw, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nc, false
	}
	ww, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		unix.Close(rw)
		return nc, false
	}
	pc := &pollConn{fd: fd, laddr: nc.LocalAddr(), raddr: nc.RemoteAddr(), rwake: rw, wwake: ww, iov: make([]unix.Iovec, 0, 64)}
	_ = nc.Close() // the socket lives on in fd
	return pc, true
}

// begin registers a read or write call; false after Close.
func (p *pollConn) begin() bool {
	for {
		v := p.state.Load()
		if v&closedBit != 0 {
			return false
		}
		if p.state.CompareAndSwap(v, v+1) {
			return true
		}
	}
}

// end ends a call registered by begin.
func (p *pollConn) end() {
	if p.state.Add(-1) == closedBit {
		p.closeFDs()
	}
}

func (p *pollConn) closeFDs() {
	p.closeOnce.Do(func() {
		unix.Close(p.fd)
		unix.Close(p.rwake)
		unix.Close(p.wwake)
	})
}

// Close interrupts the calls in progress (they return net.ErrClosed) and
// closes the socket once they have returned.
func (p *pollConn) Close() error {
	for {
		v := p.state.Load()
		if v&closedBit != 0 {
			return p.opErr("close", net.ErrClosed)
		}
		// Close counts as a call while it kicks, so the fds stay open.
		if p.state.CompareAndSwap(v, (v|closedBit)+1) {
			break
		}
	}
	p.kick(p.rwake)
	p.kick(p.wwake)
	p.end()
	return nil
}

// kick wakes a goroutine waiting in ppoll on the eventfd. The caller
// holds a call registration (so the fds are open).
func (p *pollConn) kick(efd int) {
	one := [8]byte{1}
	_, _ = unix.Write(efd, one[:])
}

func (p *pollConn) setDeadline(d *atomic.Int64, efd int, t time.Time) error {
	if !p.begin() {
		return p.opErr("set deadline", net.ErrClosed)
	}
	defer p.end()
	v := int64(0)
	if !t.IsZero() {
		v = t.UnixNano()
		if v <= 0 {
			v = 1
		}
	}
	// A waiter computed its ppoll timeout from the old deadline: it must
	// be woken when the new one is earlier; a later or no deadline it
	// finds when that timeout ends.
	if old := d.Swap(v); v != 0 && (old == 0 || v < old) {
		p.kick(efd)
	}
	return nil
}

func (p *pollConn) SetReadDeadline(t time.Time) error  { return p.setDeadline(&p.rd, p.rwake, t) }
func (p *pollConn) SetWriteDeadline(t time.Time) error { return p.setDeadline(&p.wd, p.wwake, t) }
func (p *pollConn) SetDeadline(t time.Time) error {
	if err := p.SetReadDeadline(t); err != nil {
		return err
	}
	return p.SetWriteDeadline(t)
}

func (p *pollConn) LocalAddr() net.Addr  { return p.laddr }
func (p *pollConn) RemoteAddr() net.Addr { return p.raddr }

func (p *pollConn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: p.laddr, Addr: p.raddr, Err: err}
}

// wait waits in ppoll until the socket has the event, the eventfd is
// kicked (then drained), or the deadline passes (os.ErrDeadlineExceeded).
func (p *pollConn) wait(events int16, d *atomic.Int64, efd int) error {
	fds := [2]unix.PollFd{{Fd: int32(p.fd), Events: events}, {Fd: int32(efd), Events: unix.POLLIN}}
	for {
		if p.state.Load()&closedBit != 0 {
			return net.ErrClosed
		}
		var ts *unix.Timespec
		var tsv unix.Timespec
		if dl := d.Load(); dl != 0 {
			left := dl - time.Now().UnixNano()
			if left <= 0 {
				return os.ErrDeadlineExceeded
			}
			tsv = unix.NsecToTimespec(left)
			ts = &tsv
		}
		_, err := unix.Ppoll(fds[:], ts, nil)
		if err != nil && err != unix.EINTR {
			return os.NewSyscallError("ppoll", err)
		}
		if fds[1].Revents != 0 {
			var drain [8]byte
			_, _ = unix.Read(efd, drain[:])
			fds[1].Revents = 0
			continue // re-check closed and the deadline
		}
		if fds[0].Revents != 0 {
			return nil
		}
	}
}

// Read reads what the socket has, waiting in ppoll when it has nothing.
func (p *pollConn) Read(b []byte) (int, error) {
	if !p.begin() {
		return 0, p.opErr("read", net.ErrClosed)
	}
	defer p.end()
	if len(b) == 0 {
		return 0, nil
	}
	for {
		if dl := p.rd.Load(); dl != 0 && dl <= time.Now().UnixNano() {
			return 0, p.opErr("read", os.ErrDeadlineExceeded)
		}
		n, err := unix.Read(p.fd, b)
		switch {
		case err == nil && n > 0:
			return n, nil
		case err == nil:
			return 0, io.EOF
		case err == unix.EINTR:
			continue
		case err != unix.EAGAIN:
			return 0, p.opErr("read", os.NewSyscallError("read", err))
		}
		if err := p.wait(unix.POLLIN, &p.rd, p.rwake); err != nil {
			return 0, p.opErr("read", err)
		}
	}
}

// Write writes all of b.
func (p *pollConn) Write(b []byte) (int, error) {
	n, err := p.WriteBuffers([][]byte{b})
	return int(n), err
}

// maxIovecs is IOV_MAX on Linux.
const maxIovecs = 1024

// WriteBuffers writes all of bufs with writev(2), as few calls as the
// socket allows (pdu.Writer uses it for a batch of PDUs).
func (p *pollConn) WriteBuffers(bufs [][]byte) (int64, error) {
	if !p.begin() {
		return 0, p.opErr("write", net.ErrClosed)
	}
	defer p.end()
	iov := p.iov[:0]
	for _, b := range bufs {
		if len(b) > 0 {
			iov = append(iov, unix.Iovec{Base: &b[0], Len: uint64(len(b))})
		}
	}
	p.iov = iov
	defer clear(p.iov) // drop references to the caller's buffers
	var total int64
	for len(iov) > 0 {
		if dl := p.wd.Load(); dl != 0 && dl <= time.Now().UnixNano() {
			return total, p.opErr("write", os.ErrDeadlineExceeded)
		}
		k := min(len(iov), maxIovecs)
		r, _, e := unix.Syscall(unix.SYS_WRITEV, uintptr(p.fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(k))
		if e != 0 {
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				if err := p.wait(unix.POLLOUT, &p.wd, p.wwake); err != nil {
					return total, p.opErr("write", err)
				}
				continue
			}
			return total, p.opErr("write", os.NewSyscallError("writev", e))
		}
		n := uint64(r)
		total += int64(n)
		for len(iov) > 0 && n >= iov[0].Len {
			n -= iov[0].Len
			iov = iov[1:]
		}
		if n > 0 {
			iov[0].Base = (*byte)(unsafe.Add(unsafe.Pointer(iov[0].Base), n))
			iov[0].Len -= n
		}
	}
	return total, nil
}
