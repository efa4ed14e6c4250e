package initiator

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/initiator/iscsitest"
	"github.com/gosan/iscsi/pdu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	hInitSecret   = "initiator-secret-7f3a9c"
	hTargetSecret = "target-secret-e41b02d5"
)

func hostileServer(t *testing.T, chap *iscsitest.CHAPConfig) *iscsitest.Server {
	return iscsitest.NewTestServer(t, iscsitest.Config{
		Targets: []iscsitest.Target{{
			Name: hostileIQN,
			LUNs: []iscsitest.LUN{{Number: 1, Blocks: 2048, BlockSize: 512}},
			CHAP: chap,
		}},
		NoUnitAttention: true,
	})
}

// A DataSegmentLength above our MaxRecvDataSegmentLength fails the
// connection as soon as the header is read: nothing is allocated or read
// for the segment, whatever the opcode.
func TestHostileDataSegmentLengthAboveNegotiated(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   pdu.Opcode
		dsl  int
		run  func(ctx context.Context, s *Session, l *LUN) error
	}{
		{"data-in-one-over", pdu.OpDataIn, 8192 + 4, func(ctx context.Context, s *Session, l *LUN) error {
			_, err := l.ReadAtContext(ctx, make([]byte, 16384), 0)
			return err
		}},
		{"data-in-16MiB", pdu.OpDataIn, pdu.MaxDataSegmentLength, func(ctx context.Context, s *Session, l *LUN) error {
			_, err := l.ReadAtContext(ctx, make([]byte, 16384), 0)
			return err
		}},
		{"scsi-response-16MiB", pdu.OpSCSIResponse, pdu.MaxDataSegmentLength, func(ctx context.Context, s *Session, l *LUN) error {
			_, err := l.Execute(ctx, []byte{0, 0, 0, 0, 0, 0}, nil, nil)
			return err
		}},
		{"nop-in-one-over", pdu.OpNOPIn, 8192 + 4, func(ctx context.Context, s *Session, l *LUN) error {
			return s.Ping(ctx)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := goroutines()
			srv := hostileServer(t, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s, err := Dial(ctx, srv.Addr(), hostileIQN, WithMaxRecvDataSegmentLength(8192), WithNOP(0, 0),
				WithTMFTimeout(300*time.Millisecond), WithLogoutTimeout(300*time.Millisecond), WithReplacementTimeout(0))
			require.NoError(t, err)
			l, err := s.LUN(ctx, 1)
			require.NoError(t, err)
			var armed atomic.Bool
			armed.Store(true)
			srv.Faults().MutateOutgoing(func(hdr, data []byte) []byte {
				if pdu.Opcode(hdr[0]&0x3f) == tc.op && armed.CompareAndSwap(true, false) {
					(*pdu.BHS)(hdr[:48]).SetDataSegmentLength(tc.dsl)
				}
				return data
			})
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			start := time.Now()
			err = tc.run(ctx, s, l)
			elapsed := time.Since(start)
			runtime.ReadMemStats(&ms1)
			var tl *pdu.DataSegmentTooLargeError
			require.ErrorAs(t, err, &tl)
			_, isConn := errAs[*ConnectionError](err)
			assert.True(t, isConn, "want a ConnectionError, got %T %v", err, err)
			require.Error(t, s.Err())
			assert.Less(t, elapsed, 2*time.Second)
			assert.Less(t, ms1.TotalAlloc-ms0.TotalAlloc, uint64(2<<20), "allocated for a segment that was refused")
			require.NoError(t, s.Close())
			srv.Faults().MutateOutgoing(nil)
			require.NoError(t, srv.Close())
			checkNoLeak(t, before)
		})
	}
}

// Reflection: the target sends back our own iscsi.CHAP challenge as its
// challenge, or our own iscsi.CHAP response as its proof. Either is refused,
// without a retry and without a secret in the error.
func TestHostileCHAPReflection(t *testing.T) {
	for _, tc := range []struct {
		name    string
		reflect func(kvs []pdu.KV) []pdu.KV
		want    []error // any of
	}{
		{"challenge-reflected", func(kvs []pdu.KV) []pdu.KV {
			c, _ := kvValue(kvs, "CHAP_C")
			return []pdu.KV{{Key: "CHAP_C", Value: c}}
		}, []error{iscsi.ErrCHAPReflection, iscsi.ErrLoginProtocol}},
		{"response-reflected", func(kvs []pdu.KV) []pdu.KV {
			r, _ := kvValue(kvs, "CHAP_R")
			return []pdu.KV{{Key: "CHAP_N", Value: "t"}, {Key: "CHAP_R", Value: r}}
		}, []error{iscsi.ErrMutualAuth}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := goroutines()
			var sawOurs bool
			hook := func(p *loginPeer, n int, req *pdu.LoginRequest, kvs []pdu.KV, resp *pdu.LoginResponse) bool {
				if req.CSG != pdu.SecurityNegotiation {
					return true
				}
				resp.Transit, resp.NSG = false, 0
				switch n {
				case 0:
					resp.Data = pdu.AppendText(nil, pdu.KV{Key: "AuthMethod", Value: "CHAP"})
				case 1:
					resp.Data = pdu.AppendText(nil, pdu.KV{Key: "CHAP_A", Value: "5"}, pdu.KV{Key: "CHAP_I", Value: "9"},
						pdu.KV{Key: "CHAP_C", Value: "0x00112233445566778899aabbccddeeff"})
				default:
					_, sawOurs = kvValue(kvs, "CHAP_C")
					if req.Transit {
						resp.Transit, resp.NSG = true, req.NSG
					}
					resp.Data = pdu.AppendText(nil, tc.reflect(kvs)...)
				}
				return true
			}
			d := &hostileDialer{serve: func(nc net.Conn) {
				p := newLoginPeer(nc)
				if p.serveLogin(hook) {
					p.serveFFP()
				}
			}}
			chap := iscsi.CHAP{User: "u", Secret: hInitSecret, TargetUser: "t", TargetSecret: hTargetSecret, Algorithms: []iscsi.CHAPAlgorithm{iscsi.CHAPMD5}}
			s, err := Dial(context.Background(), "hostile", hostileIQN, hostileOpts(d, WithCHAP(chap))...)
			require.Nil(t, s)
			require.Error(t, err)
			require.True(t, sawOurs, "the script must have seen our challenge")
			matched := false
			for _, w := range tc.want {
				matched = matched || errors.Is(err, w)
			}
			assert.True(t, matched, "want one of %v, got %v", tc.want, err)
			assert.Equal(t, 1, d.dials)
			assert.NotContains(t, err.Error(), hInitSecret)
			assert.NotContains(t, err.Error(), hTargetSecret)
			waitPeers(t, d, 2*time.Second)
			checkNoLeak(t, before)
		})
	}
}

// Mutual iscsi.CHAP against a target that does not know our target secret: the
// login fails with iscsi.ErrMutualAuth and the error shows no secret.
func TestHostileMutualCHAPWrongTargetSecret(t *testing.T) {
	before := goroutines()
	srv := hostileServer(t, &iscsitest.CHAPConfig{
		User: "u", Secret: hInitSecret, TargetUser: "t", TargetSecret: "not-the-" + hTargetSecret,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	chap := iscsi.CHAP{User: "u", Secret: hInitSecret, TargetUser: "t", TargetSecret: hTargetSecret}
	start := time.Now()
	s, err := Dial(ctx, srv.Addr(), hostileIQN, WithCHAP(chap), WithLogger(log))
	require.Nil(t, s)
	require.ErrorIs(t, err, iscsi.ErrMutualAuth)
	assert.Less(t, time.Since(start), 2*time.Second)
	for _, secret := range []string{hInitSecret, hTargetSecret, "not-the-" + hTargetSecret} {
		assert.NotContains(t, err.Error(), secret)
		assert.NotContains(t, logBuf.String(), secret)
	}
	require.NoError(t, srv.Close())
	checkNoLeak(t, before)
}

// wireRecorder is a Dialer that keeps every byte of every connection.
type wireRecorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
	d   net.Dialer
}

type wireConn struct {
	net.Conn
	r *wireRecorder
}

func (c *wireConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.r.mu.Lock()
	c.r.buf.Write(b[:n])
	c.r.mu.Unlock()
	return n, err
}

func (c *wireConn) Write(b []byte) (int, error) {
	c.r.mu.Lock()
	c.r.buf.Write(b)
	c.r.mu.Unlock()
	return c.Conn.Write(b)
}

func (r *wireRecorder) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	nc, err := r.d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &wireConn{Conn: nc, r: r}, nil
}

// values returns every value of key=... in the recorded bytes.
func (r *wireRecorder) values(key string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	b := r.buf.Bytes()
	for {
		i := bytes.Index(b, []byte(key+"="))
		if i < 0 {
			return out
		}
		b = b[i+len(key)+1:]
		j := bytes.IndexByte(b, 0)
		if j < 0 {
			j = len(b)
		}
		out = append(out, string(b[:j]))
	}
}

// Debug logs of a whole mutual-CHAP session (login, I/O, logout) contain
// neither secret nor any iscsi.CHAP challenge or response value.
func TestHostileCHAPSecretsNeverLogged(t *testing.T) {
	before := goroutines()
	srv := hostileServer(t, &iscsitest.CHAPConfig{
		User: "u", Secret: hInitSecret, TargetUser: "t", TargetSecret: hTargetSecret,
	})
	var logMu sync.Mutex
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&lockedWriter{mu: &logMu, w: &logBuf}, &slog.HandlerOptions{Level: slog.LevelDebug, AddSource: true}))
	rec := &wireRecorder{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	chap := iscsi.CHAP{User: "u", Secret: hInitSecret, TargetUser: "t", TargetSecret: hTargetSecret}
	s, err := Dial(ctx, srv.Addr(), hostileIQN, WithCHAP(chap), WithLogger(log), WithDialer(rec))
	require.NoError(t, err)
	l, err := s.LUN(ctx, 1)
	require.NoError(t, err)
	data := fill(8192, 0x3c)
	_, err = l.WriteAtContext(ctx, data, 4096)
	require.NoError(t, err)
	got := make([]byte, 8192)
	_, err = l.ReadAtContext(ctx, got, 4096)
	require.NoError(t, err)
	require.Equal(t, data, got)
	require.NoError(t, s.Ping(ctx))
	require.NoError(t, s.Close())
	require.NoError(t, srv.Close())

	logMu.Lock()
	logs := logBuf.String()
	logMu.Unlock()
	require.Contains(t, logs, "CHAP_N=", "the debug log must show the iscsi.CHAP exchange (else this test proves nothing)")
	secretish := []string{hInitSecret, hTargetSecret}
	for _, k := range []string{"CHAP_C", "CHAP_R"} {
		vals := rec.values(k)
		require.Len(t, vals, 2, "%s values on the wire (mutual CHAP: one each way)", k)
		for _, v := range vals {
			body := strings.TrimPrefix(strings.TrimPrefix(v, "0x"), "0X")
			require.GreaterOrEqual(t, len(body), 16)
			secretish = append(secretish, v, strings.ToLower(body), strings.ToUpper(body))
		}
	}
	for _, s := range secretish {
		assert.NotContains(t, logs, s, "debug log leaks a secret or iscsi.CHAP value")
	}
	checkNoLeak(t, before)
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(b)
}
