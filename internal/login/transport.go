package login

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/gosan/iscsi/pdu"
)

// Transport carries Login and Text PDUs. Over TCP it is a pdu.Reader and
// pdu.Writer (NewConnTransport); in the kernel binding it is netlink
// SEND_PDU / RECV_PDU. Both methods must honour ctx.
type Transport interface {
	SendPDU(ctx context.Context, m pdu.Message) error
	// RecvPDU returns one whole PDU: BHS + AHS + data segment (padding
	// and digests removed). The engine does not keep the slice past the
	// next call.
	RecvPDU(ctx context.Context) ([]byte, error)
}

// ConnTransport is a Transport over a net.Conn. It starts in login mode:
// no digests, incoming data segments limited to 8192 bytes (RFC 7143 login
// limit). After login, call SetDigests and SetMaxRecvDataSegmentLength
// before using it for Text exchanges, or take Reader and Writer over:
// the Reader may already hold bytes that follow the last login PDU.
//
// SendPDU and RecvPDU may be called concurrently with each other, but
// not each with itself. If either fails because ctx ended, the stream may
// be out of step: close the connection.
type ConnTransport struct {
	conn net.Conn
	rmu  sync.Mutex
	r    *pdu.Reader
	wmu  sync.Mutex
	w    *pdu.Writer
}

// NewConnTransport wraps conn.
func NewConnTransport(conn net.Conn) *ConnTransport {
	t := &ConnTransport{conn: conn, r: pdu.NewReader(conn, 64<<10), w: pdu.NewWriter(conn)}
	t.r.SetMaxDataSegmentLength(DefaultMaxRecvDataSegmentLength)
	return t
}

// SetDigests enables CRC32C header/data digests in both directions.
func (t *ConnTransport) SetDigests(header, data bool) {
	t.rmu.Lock()
	t.r.SetDigests(header, data)
	t.rmu.Unlock()
	t.wmu.Lock()
	t.w.SetDigests(header, data)
	t.wmu.Unlock()
}

// SetMaxRecvDataSegmentLength sets the largest incoming data segment (our
// declared MaxRecvDataSegmentLength after login).
func (t *ConnTransport) SetMaxRecvDataSegmentLength(n int) {
	t.rmu.Lock()
	t.r.SetMaxDataSegmentLength(n)
	t.rmu.Unlock()
}

// Reader returns the underlying pdu.Reader (for the full feature phase).
func (t *ConnTransport) Reader() *pdu.Reader { return t.r }

// Writer returns the underlying pdu.Writer (for the full feature phase).
func (t *ConnTransport) Writer() *pdu.Writer { return t.w }

// SendPDU writes m (digests added as configured).
func (t *ConnTransport) SendPDU(ctx context.Context, m pdu.Message) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	return withDeadline(ctx, t.conn.SetWriteDeadline, func() error { return t.w.WriteMessage(m) })
}

// RecvPDU reads one PDU into a fresh slice.
func (t *ConnTransport) RecvPDU(ctx context.Context) ([]byte, error) {
	t.rmu.Lock()
	defer t.rmu.Unlock()
	var b []byte
	err := withDeadline(ctx, t.conn.SetReadDeadline, func() error {
		var err error
		b, err = t.r.ReadPDU(nil)
		return err
	})
	return b, err
}

// withDeadline runs op with the connection deadline following ctx: its
// deadline, and an immediate deadline when ctx is cancelled.
func withDeadline(ctx context.Context, set func(time.Time) error, op func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dl, hasDL := ctx.Deadline()
	if err := set(dl); err != nil {
		return err
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		set(time.Unix(1, 0))
		close(fired)
	})
	err := op()
	if !stop() {
		<-fired // make sure the past deadline is not set after the reset below
	}
	set(time.Time{})
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("%w: %w", cerr, err)
		}
		if hasDL && errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
		}
	}
	return err
}
