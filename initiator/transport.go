package initiator

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gosan/iscsi/pdu"
)

// tcpTransport carries login and text PDUs over a fresh connection (the
// login.Transport interface). After login its Reader and Writer serve the
// full feature phase.
type tcpTransport struct {
	nc net.Conn
	sr *sockReader
	r  *pdu.Reader
	w  *pdu.Writer
}

func newTransport(nc net.Conn, bufSize int) *tcpTransport {
	sr := newSockReader(nc)
	t := &tcpTransport{nc: nc, sr: sr, r: pdu.NewReader(sr, bufSize), w: pdu.NewWriter(nc)}
	t.r.SetMaxDataSegmentLength(8192) // the login limit (RFC 7143 section 6.1)
	return t
}

func (t *tcpTransport) deadline(ctx context.Context) {
	if d, ok := ctx.Deadline(); ok {
		_ = t.nc.SetDeadline(d)
	} else {
		_ = t.nc.SetDeadline(time.Time{})
	}
}

// SendPDU writes one PDU.
func (t *tcpTransport) SendPDU(ctx context.Context, m pdu.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t.deadline(ctx)
	return t.w.WriteMessage(m)
}

// RecvPDU reads one whole PDU (BHS + AHS + data).
func (t *tcpTransport) RecvPDU(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t.deadline(ctx)
	return t.r.ReadPDU(nil)
}

// sockReader sits between a connection's PDU reader (its buffer) and the
// socket. In full feature phase (ffp) a read deadline is only ever set to
// interrupt a reading caller whose context ended (see conn.watch); such an
// interruption must not tear a PDU apart, so it reaches the PDU reader only
// when no byte of the next PDU has been consumed (boundary, set by the
// reader before each PDU). Inside a PDU the deadline is cleared and the
// read resumed; the interrupted caller notices at the next boundary.
//
// With pollWait set (a caller reads the response of the only command in
// flight), a read that would block first waits for the socket in poll(2),
// up to pollWaitTime, as a C initiator would. Parking the goroutine in
// Go's network poller instead idles every P of the process each time, so
// the runtime's sysmon thread goes to deep sleep and the next system call
// wakes it again: two extra thread switches per command.
//
// Only the goroutine that holds the connection's reader role uses it.
type sockReader struct {
	nc       net.Conn
	ffp      bool
	boundary bool
	pollWait bool

	// raw reads (pollWait): rc is nil when nc is not a socket; readFn is
	// rawRead bound once, so a read allocates nothing.
	rc     syscall.RawConn
	readFn func(fd uintptr) bool
	buf    []byte
	n      int
	rerr   error
	polled bool
}

// pollWaitTime bounds a poll(2) wait before the read parks in Go's poller
// (where a read deadline can interrupt it).
const pollWaitTime = time.Millisecond

func newSockReader(nc net.Conn) *sockReader {
	r := &sockReader{nc: nc}
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			r.rc = rc
			r.readFn = r.rawRead
		}
	}
	return r
}

func (r *sockReader) Read(p []byte) (int, error) {
	for {
		var n int
		var err error
		if r.pollWait && r.rc != nil && len(p) > 0 {
			n, err = r.pollRead(p)
		} else {
			n, err = r.nc.Read(p)
		}
		if n > 0 {
			r.boundary = false
		}
		if err == nil || n > 0 || !r.ffp || r.boundary || !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
		if derr := r.nc.SetReadDeadline(time.Time{}); derr != nil {
			return n, err
		}
	}
}

// pollRead reads from the socket, waiting in poll(2) for up to
// pollWaitTime when nothing is there yet, then in Go's poller.
func (r *sockReader) pollRead(p []byte) (int, error) {
	r.buf, r.n, r.rerr, r.polled = p, 0, nil, false
	err := r.rc.Read(r.readFn)
	n, rerr := r.n, r.rerr
	r.buf, r.rerr = nil, nil
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: r.nc.LocalAddr(), Addr: r.nc.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}
	}
	if n <= 0 {
		return 0, io.EOF
	}
	return n, nil
}

// rawRead is pollRead's step for RawConn.Read: false parks in Go's poller.
func (r *sockReader) rawRead(fd uintptr) bool {
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
		pfd := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		ts := unix.NsecToTimespec(int64(pollWaitTime))
		k, perr := unix.Ppoll(pfd[:], &ts, nil)
		if perr == unix.EINTR {
			continue
		}
		if perr != nil || k == 0 {
			return false
		}
	}
}
