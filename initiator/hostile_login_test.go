package initiator

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/pdu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const hostileIQN = "iqn.2026-01.test.hostile:disk"

// waitPeers waits for the scripted peers to end by themselves (the
// initiator closed its side); it fails after d.
func waitPeers(t *testing.T, d *hostileDialer, within time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(within):
		d.close()
		t.Fatalf("the initiator left the connection open after the login failed")
	}
}

func TestHostileLoginScriptIsValid(t *testing.T) {
	before := goroutines()
	var gotKeys [][]pdu.KV
	d := &hostileDialer{serve: func(nc net.Conn) {
		p := newLoginPeer(nc)
		if p.serveLogin(nil) {
			gotKeys = p.reqKeys
			p.serveFFP()
		}
	}}
	s, err := Dial(context.Background(), "hostile:3260", hostileIQN, hostileOpts(d)...)
	require.NoError(t, err, "the unmodified script must be a valid target")
	assert.Equal(t, uint16(7), s.TSIH())
	require.NoError(t, s.Ping(context.Background()))
	require.NoError(t, s.Close())
	d.close()
	require.NotEmpty(t, gotKeys)
	checkNoLeak(t, before)
}

func TestHostileLoginResponses(t *testing.T) {
	big := func(n int) string { return strings.Repeat("a", n) }
	// opStage matches the first Login Request of the operational stage.
	type state struct{ ops int }
	cases := []struct {
		name string
		hook func(st *state) loginHook
		// check the outcome; err is Dial's error
		check func(t *testing.T, err error, p *loginPeer)
	}{
		{
			name: "unknown-key-midway-answered-NotUnderstood",
			hook: func(st *state) loginHook {
				return func(p *loginPeer, n int, req *pdu.LoginRequest, kvs []pdu.KV, resp *pdu.LoginResponse) bool {
					if req.CSG == pdu.LoginOperationalNegotiation {
						st.ops++
						if st.ops == 1 {
							resp.Transit, resp.NSG = false, 0
							resp.Data = append(resp.Data, pdu.AppendText(nil, pdu.KV{Key: "X-org.example.hostile", Value: "1"}, pdu.KV{Key: "UnknownKey", Value: "abc"})...)
						}
					}
					return true
				}
			},
			check: func(t *testing.T, err error, p *loginPeer) {
				require.NoError(t, err, "unknown keys are answered NotUnderstood, not fatal (RFC 7143 6.2)")
				last := p.reqKeys[len(p.reqKeys)-1]
				v, _ := kvValue(last, "X-org.example.hostile")
				assert.Equal(t, pdu.NotUnderstood, v)
				v, _ = kvValue(last, "UnknownKey")
				assert.Equal(t, pdu.NotUnderstood, v)
			},
		},
		{
			name: "unknown-key-in-final-response",
			hook: func(st *state) loginHook {
				return func(p *loginPeer, n int, req *pdu.LoginRequest, kvs []pdu.KV, resp *pdu.LoginResponse) bool {
					if resp.NSG == pdu.FullFeaturePhase {
						resp.Data = append(resp.Data, pdu.AppendText(nil, pdu.KV{Key: "X-org.example.hostile", Value: "1"})...)
					}
					return true
				}
			},
			check: func(t *testing.T, err error, p *loginPeer) { require.NoError(t, err) },
		},
		{
			name: "huge-value-of-known-key",
			hook: func(st *state) loginHook {
				return func(p *loginPeer, n int, req *pdu.LoginRequest, kvs []pdu.KV, resp *pdu.LoginResponse) bool {
					if req.CSG == pdu.LoginOperationalNegotiation {
						resp.Data = append(resp.Data, pdu.AppendText(nil, pdu.KV{Key: "TargetAlias", Value: big(4000)})...)
					}
					return true
				}
			},
			check: func(t *testing.T, err error, p *loginPeer) {
				require.ErrorIs(t, err, iscsi.ErrLoginProtocol)
			},
		},
		{
			name: "value-over-8KiB-across-continued-responses",
			hook: func(st *state) loginHook {
				text := pdu.AppendText(nil, pdu.KV{Key: "X-big", Value: big(12000)})
				return func(p *loginPeer, n int, req *pdu.LoginRequest, kvs []pdu.KV, resp *pdu.LoginResponse) bool {
					if req.CSG != pdu.LoginOperationalNegotiation {
						return true
					}
					st.ops++
					resp.Transit, resp.NSG = false, 0
					switch st.ops {
					case 1:
						resp.Continue = true
						resp.Data = text[:8000]
					case 2:
						resp.Data = text[8000:]
					}
					return true
				}
			},
			check: func(t *testing.T, err error, p *loginPeer) {
				require.ErrorIs(t, err, iscsi.ErrTextTooLarge)
			},
		},
		{
			name: "continued-text-over-64KiB",
			hook: func(st *state) loginHook {
				item := pdu.AppendText(nil, pdu.KV{Key: "X-pad", Value: big(8000)})
				return func(p *loginPeer, n int, req *pdu.LoginRequest, kvs []pdu.KV, resp *pdu.LoginResponse) bool {
					if req.CSG == pdu.LoginOperationalNegotiation {
						resp.Transit, resp.NSG, resp.Continue = false, 0, true
						resp.Data = item
					}
					return true
				}
			},
			check: func(t *testing.T, err error, p *loginPeer) {
				require.ErrorIs(t, err, iscsi.ErrTextTooLarge)
				assert.LessOrEqual(t, len(p.reqKeys), 12, "stopped at the 64 KiB text bound")
			},
		},
		{
			name: "data-segment-over-8192",
			hook: func(st *state) loginHook {
				return func(p *loginPeer, n int, req *pdu.LoginRequest, kvs []pdu.KV, resp *pdu.LoginResponse) bool {
					resp.Data = append(resp.Data, pdu.AppendText(nil, pdu.KV{Key: "X-pad", Value: big(9000)})...)
					return true
				}
			},
			check: func(t *testing.T, err error, p *loginPeer) {
				var tl *pdu.DataSegmentTooLargeError
				require.ErrorAs(t, err, &tl)
			},
		},
		{
			name: "data-segment-length-lie-16MiB",
			hook: func(st *state) loginHook {
				return func(p *loginPeer, n int, req *pdu.LoginRequest, kvs []pdu.KV, resp *pdu.LoginResponse) bool {
					hdr := resp.AppendHeader(nil)
					(*pdu.BHS)(hdr[:48]).SetDataSegmentLength(pdu.MaxDataSegmentLength)
					_, _ = p.nc.Write(hdr[:48])
					_, _ = p.nc.Write(make([]byte, 64<<10))
					return false
				}
			},
			check: func(t *testing.T, err error, p *loginPeer) {
				var tl *pdu.DataSegmentTooLargeError
				require.ErrorAs(t, err, &tl)
			},
		},
		{
			name: "key-repeated-in-one-response",
			hook: func(st *state) loginHook {
				return func(p *loginPeer, n int, req *pdu.LoginRequest, kvs []pdu.KV, resp *pdu.LoginResponse) bool {
					if req.CSG == pdu.LoginOperationalNegotiation {
						resp.Data = append(resp.Data, pdu.AppendText(nil, pdu.KV{Key: "HeaderDigest", Value: "None"})...)
					}
					return true
				}
			},
			check: func(t *testing.T, err error, p *loginPeer) { require.ErrorIs(t, err, iscsi.ErrLoginProtocol) },
		},
		{
			name: "key-repeated-across-responses",
			hook: func(st *state) loginHook {
				return func(p *loginPeer, n int, req *pdu.LoginRequest, kvs []pdu.KV, resp *pdu.LoginResponse) bool {
					if req.CSG == pdu.LoginOperationalNegotiation {
						st.ops++
						if st.ops == 1 {
							resp.Transit, resp.NSG = false, 0
						} else {
							resp.Data = append(resp.Data, pdu.AppendText(nil, pdu.KV{Key: "MaxBurstLength", Value: "65536"})...)
						}
					}
					return true
				}
			},
			check: func(t *testing.T, err error, p *loginPeer) { require.ErrorIs(t, err, iscsi.ErrLoginProtocol) },
		},
		{
			name: "never-completes-operational",
			hook: func(st *state) loginHook {
				return func(p *loginPeer, n int, req *pdu.LoginRequest, kvs []pdu.KV, resp *pdu.LoginResponse) bool {
					if req.CSG == pdu.LoginOperationalNegotiation {
						st.ops++
						resp.Transit, resp.NSG = false, 0
						if st.ops > 1 {
							resp.Data = nil
						}
					}
					return true
				}
			},
			check: func(t *testing.T, err error, p *loginPeer) {
				require.ErrorIs(t, err, iscsi.ErrNoProgress)
				assert.LessOrEqual(t, len(p.reqKeys), 20)
			},
		},
		{
			name: "never-completes-security",
			hook: func(st *state) loginHook {
				return func(p *loginPeer, n int, req *pdu.LoginRequest, kvs []pdu.KV, resp *pdu.LoginResponse) bool {
					resp.Transit, resp.NSG = false, 0
					if n > 0 {
						resp.Data = nil
					}
					return true
				}
			},
			check: func(t *testing.T, err error, p *loginPeer) {
				require.ErrorIs(t, err, iscsi.ErrNoProgress)
				assert.LessOrEqual(t, len(p.reqKeys), 20)
			},
		},
		{
			name: "never-completes-empty-continuations",
			hook: func(st *state) loginHook {
				return func(p *loginPeer, n int, req *pdu.LoginRequest, kvs []pdu.KV, resp *pdu.LoginResponse) bool {
					resp.Transit, resp.NSG, resp.Continue, resp.Data = false, 0, true, nil
					return true
				}
			},
			check: func(t *testing.T, err error, p *loginPeer) {
				require.ErrorIs(t, err, iscsi.ErrNoProgress)
				assert.LessOrEqual(t, len(p.reqKeys), 70)
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := goroutines()
			st := &state{}
			var peer *loginPeer
			d := &hostileDialer{serve: func(nc net.Conn) {
				peer = newLoginPeer(nc)
				if peer.serveLogin(tc.hook(st)) {
					peer.serveFFP()
				}
			}}
			var ms0, ms1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms0)
			start := time.Now()
			s, err := Dial(context.Background(), "hostile", hostileIQN, hostileOpts(d)...)
			elapsed := time.Since(start)
			runtime.ReadMemStats(&ms1)
			if s != nil {
				require.NoError(t, s.Close())
			} else {
				waitPeers(t, d, 2*time.Second)
			}
			d.close()
			tc.check(t, err, peer)
			assert.Less(t, elapsed, 2*time.Second, "login must end quickly")
			assert.Less(t, ms1.TotalAlloc-ms0.TotalAlloc, uint64(4<<20), "allocated during the login")
			if err != nil {
				assert.Equal(t, 1, d.dials, "a protocol failure must not be retried")
			}
			checkNoLeak(t, before)
		})
	}
}

// A target that accepts the connection and never says anything: Dial ends
// at the context deadline, or at the login timeout.
func TestHostileLoginNeverAnswered(t *testing.T) {
	for _, tc := range []struct {
		name string
		ctx  time.Duration
		opt  Option
	}{
		{"ctx-deadline", 300 * time.Millisecond, WithLoginTimeout(time.Minute)},
		{"login-timeout", time.Minute, WithLoginTimeout(300 * time.Millisecond)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := goroutines()
			// Reads (so the initiator's writes complete) and never answers.
			d := &hostileDialer{serve: func(nc net.Conn) {
				buf := make([]byte, 4096)
				for {
					if _, err := nc.Read(buf); err != nil {
						return
					}
				}
			}}
			ctx, cancel := context.WithTimeout(context.Background(), tc.ctx)
			defer cancel()
			start := time.Now()
			s, err := Dial(ctx, "hostile", hostileIQN, append(hostileOpts(d), tc.opt)...)
			elapsed := time.Since(start)
			require.Nil(t, s)
			require.Error(t, err)
			assert.True(t, isTimeout(err), "want a timeout error, got %v", err)
			assert.Less(t, elapsed, 1500*time.Millisecond)
			assert.GreaterOrEqual(t, elapsed, 250*time.Millisecond)
			waitPeers(t, d, 2*time.Second)
			checkNoLeak(t, before)
		})
	}
}

// The same for discovery.
func TestHostileDiscoverNeverAnswered(t *testing.T) {
	before := goroutines()
	d := &hostileDialer{serve: func(nc net.Conn) {
		buf := make([]byte, 4096)
		for {
			if _, err := nc.Read(buf); err != nil {
				return
			}
		}
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	found, err := Discover(ctx, "hostile", hostileOpts(d)...)
	elapsed := time.Since(start)
	require.Nil(t, found)
	require.Error(t, err)
	assert.True(t, isTimeout(err), "want a timeout error, got %v", err)
	assert.Less(t, elapsed, 1500*time.Millisecond)
	waitPeers(t, d, 2*time.Second)
	checkNoLeak(t, before)
}

// discoveryPeer logs in a discovery session and answers every Text
// Request with answer.
func discoveryPeer(answer func(p *loginPeer, req *pdu.TextRequest, n int) bool) func(nc net.Conn) {
	return func(nc net.Conn) {
		p := newLoginPeer(nc)
		if !p.serveLogin(nil) {
			return
		}
		for n := 0; ; n++ {
			raw, err := p.r.ReadPDU(nil)
			if err != nil {
				return
			}
			m, err := pdu.Decode(raw)
			if err != nil {
				return
			}
			req, ok := m.(*pdu.TextRequest)
			if !ok {
				continue
			}
			if !answer(p, req, n) {
				return
			}
		}
	}
}

// A SendTargets answer of megabytes: Discover fails with iscsi.ErrTextTooLarge,
// quickly, without holding more than a bounded amount of memory.
func TestHostileSendTargetsMegabytes(t *testing.T) {
	entry := pdu.AppendText(nil, pdu.KV{Key: "TargetName", Value: "iqn.2026-01.test.hostile:" + strings.Repeat("t", 190)},
		pdu.KV{Key: "TargetAddress", Value: "192.0.2.1:3260,1"})
	seg := make([]byte, 0, 256<<10)
	for len(seg)+len(entry) <= cap(seg) {
		seg = append(seg, entry...)
	}
	for _, tc := range []struct {
		name  string
		reply func(p *loginPeer, req *pdu.TextRequest, n int) bool
		check func(t *testing.T, err error)
		sent  *int
	}{
		{
			name: "continued-256KiB-segments",
			reply: func(p *loginPeer, req *pdu.TextRequest, n int) bool {
				resp := &pdu.TextResponse{Continue: true, ITT: req.ITT, TTT: 0x1234, StatSN: p.statSN, ExpCmdSN: req.CmdSN + 1, MaxCmdSN: req.CmdSN + 32, Data: seg}
				p.statSN++
				return p.w.WriteMessage(resp) == nil && n < 64 // at most 16 MiB
			},
			check: func(t *testing.T, err error) { require.ErrorIs(t, err, iscsi.ErrTextTooLarge) },
		},
		{
			name: "one-segment-claiming-16MiB",
			reply: func(p *loginPeer, req *pdu.TextRequest, n int) bool {
				resp := &pdu.TextResponse{Final: true, ITT: req.ITT, TTT: pdu.ReservedTag, StatSN: p.statSN, ExpCmdSN: req.CmdSN + 1, MaxCmdSN: req.CmdSN + 32}
				hdr := resp.AppendHeader(nil)
				(*pdu.BHS)(hdr[:48]).SetDataSegmentLength(pdu.MaxDataSegmentLength)
				if _, err := p.nc.Write(hdr[:48]); err != nil {
					return false
				}
				for range 64 {
					if _, err := p.nc.Write(seg); err != nil {
						return false
					}
				}
				return false
			},
			check: func(t *testing.T, err error) {
				var tl *pdu.DataSegmentTooLargeError
				require.ErrorAs(t, err, &tl)
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := goroutines()
			d := &hostileDialer{serve: discoveryPeer(tc.reply)}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var ms0, ms1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms0)
			start := time.Now()
			found, err := Discover(ctx, "hostile", hostileOpts(d)...)
			elapsed := time.Since(start)
			runtime.ReadMemStats(&ms1)
			heapAfter := ms1.HeapAlloc
			d.close()
			require.Nil(t, found)
			tc.check(t, err)
			assert.Less(t, elapsed, 3*time.Second)
			// Live heap right after Discover returned (no GC in between)
			// and everything allocated during it: both bounded although
			// the target offered 16 MiB.
			assert.Less(t, int64(heapAfter)-int64(ms0.HeapAlloc), int64(8<<20), "heap growth")
			assert.Less(t, ms1.TotalAlloc-ms0.TotalAlloc, uint64(8<<20), "allocated during Discover")
			runtime.GC()
			runtime.ReadMemStats(&ms1)
			assert.Less(t, int64(ms1.HeapAlloc)-int64(ms0.HeapAlloc), int64(4<<20), "heap growth after GC")
			checkNoLeak(t, before)
		})
	}
}

var _ = errors.New
