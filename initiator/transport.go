package initiator

import (
	"context"
	"errors"
	"net"
	"os"
	"time"

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

// useConn moves the transport to nc, the same socket in another wrapper
// (takeSocket): bytes the PDU reader buffered stay buffered.
func (t *tcpTransport) useConn(nc net.Conn) {
	t.nc = nc
	t.sr.nc = nc
	t.sr.raw = rawReader{}
	t.sr.raw.init(nc)
	t.w = pdu.NewWriter(nc)
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
// A pollConn (Linux, pollconn_linux.go) always waits in ppoll(2) itself.
// On a connection in Go's poller, with pollWait set (a caller reads the
// response of the only command in flight), a read that would block first
// waits for the socket in poll(2),
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

	// raw is the poll(2) fast path for pollWait where the OS has one
	// (sockreader_poll.go); elsewhere (sockreader_other.go) reads always
	// park in Go's poller.
	raw rawReader
}

func newSockReader(nc net.Conn) *sockReader {
	r := &sockReader{nc: nc}
	r.raw.init(nc)
	return r
}

func (r *sockReader) Read(p []byte) (int, error) {
	for {
		var n int
		var err error
		if r.pollWait && r.raw.ok() && len(p) > 0 {
			n, err = r.raw.read(r.nc, p)
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
