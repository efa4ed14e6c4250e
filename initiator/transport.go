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
	sr := &sockReader{nc: nc}
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
// Only the goroutine that holds the connection's reader role uses it.
type sockReader struct {
	nc       net.Conn
	ffp      bool
	boundary bool
}

func (r *sockReader) Read(p []byte) (int, error) {
	for {
		n, err := r.nc.Read(p)
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
