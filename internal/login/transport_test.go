package login

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/gosan/iscsi/pdu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// servePipe runs tt behind the far end of a net.Pipe, reading and writing
// real framed PDUs.
func servePipe(t *testing.T, tt *testTarget) (net.Conn, func()) {
	a, b := net.Pipe()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := pdu.NewReader(b, 0)
		w := pdu.NewWriter(b)
		for {
			raw, err := r.ReadPDU(nil)
			if err != nil {
				return
			}
			m, err := pdu.Decode(raw)
			if err != nil {
				t.Errorf("target: %v", err)
				return
			}
			if err := tt.SendPDU(context.Background(), m); err != nil {
				t.Errorf("target: %v", err)
				return
			}
			for len(tt.queue) > 0 {
				q := tt.queue[0]
				tt.queue = tt.queue[1:]
				w.Queue(q[:pdu.BHSLen], q[pdu.BHSLen:(*pdu.BHS)(q).DataSegmentLength()+pdu.BHSLen])
				if err := w.Flush(); err != nil {
					return
				}
			}
		}
	}()
	return a, func() { a.Close(); b.Close(); wg.Wait() }
}

func TestLoginOverConnTransport(t *testing.T) {
	tt := chapTarget(t, true)
	tt.declareMRDSL = "262144"
	conn, stop := servePipe(t, tt)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ct := NewConnTransport(conn)
	res, err := Login(ctx, ct, chapConfig(true))
	require.NoError(t, err)
	assert.Equal(t, uint32(262144), res.Negotiated.MaxXmitDataSegmentLength)
	assert.Equal(t, uint16(7), res.TSIH)
	assert.NotNil(t, ct.Reader())
	assert.NotNil(t, ct.Writer())
}

func TestConnTransportContext(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ct := NewConnTransport(a)

	// Cancellation interrupts a blocked read.
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	start := time.Now()
	_, err := ct.RecvPDU(ctx)
	require.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(start), 2*time.Second)

	// A deadline interrupts a blocked write (nobody reads b).
	ctx, cancel2 := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel2()
	err = ct.SendPDU(ctx, &pdu.LoginRequest{Immediate: true})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)

	// An already-cancelled context fails before any I/O.
	_, err = ct.RecvPDU(ctx)
	require.True(t, errors.Is(err, context.DeadlineExceeded))

	// The deadline is cleared afterwards: a later read works.
	go func() {
		w := pdu.NewWriter(b)
		w.WriteMessage(&pdu.LoginResponse{ITT: 5})
	}()
	raw, err := ct.RecvPDU(context.Background())
	require.NoError(t, err)
	assert.Equal(t, uint32(5), (*pdu.BHS)(raw).ITT())
}

func TestConnTransportLimitsLoginSegments(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ct := NewConnTransport(a)
	go func() {
		w := pdu.NewWriter(b)
		w.WriteMessage(&pdu.LoginResponse{Data: make([]byte, 9000)})
	}()
	_, err := ct.RecvPDU(context.Background())
	var tooLarge *pdu.DataSegmentTooLargeError
	require.ErrorAs(t, err, &tooLarge)
}
