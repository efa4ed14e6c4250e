package initiator

import (
	"context"
	"net"
	"time"

	"github.com/gosan/iscsi/pdu"
)

// tcpTransport carries login and text PDUs over a fresh connection (the
// login.Transport interface). After login its Reader and Writer serve the
// full feature phase.
type tcpTransport struct {
	nc net.Conn
	r  *pdu.Reader
	w  *pdu.Writer
}

func newTransport(nc net.Conn, bufSize int) *tcpTransport {
	t := &tcpTransport{nc: nc, r: pdu.NewReader(nc, bufSize), w: pdu.NewWriter(nc)}
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
