package initiator

// A scripted iSCSI target for the hostile-input tests: it plays the login
// (answering every offer by echoing it, so the login is valid by default)
// over a net.Pipe handed to the initiator through WithDialer, and lets a
// test change any Login Response, or take over the connection after login.

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosan/iscsi/pdu"
)

// hostileDialer hands the initiator one end of a net.Pipe per dial and runs
// serve on the other end.
type hostileDialer struct {
	serve func(nc net.Conn)
	// tcp: connect over loopback TCP (so the session's full feature phase
	// runs on the socket type it uses in production: pollConn on Linux)
	// instead of net.Pipe.
	tcp   bool
	wg    sync.WaitGroup
	mu    sync.Mutex
	peers []net.Conn
	dials int
}

func (d *hostileDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var ic, tc net.Conn
	if d.tcp {
		var err error
		if ic, tc, err = tcpPair(); err != nil {
			return nil, err
		}
	} else {
		ic, tc = net.Pipe()
	}
	d.mu.Lock()
	d.peers = append(d.peers, tc)
	d.dials++
	d.mu.Unlock()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer tc.Close()
		d.serve(tc)
	}()
	return ic, nil
}

// close ends every peer and waits for the serve goroutines.
func (d *hostileDialer) close() {
	d.mu.Lock()
	for _, c := range d.peers {
		_ = c.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
}

// initiator-side declaratives, never echoed by a target.
var hostileInitiatorDeclaratives = map[string]bool{
	"InitiatorName": true, "InitiatorAlias": true, "TargetName": true,
	"SessionType": true, "MaxRecvDataSegmentLength": true,
}

// loginPeer is the target side of one scripted connection.
type loginPeer struct {
	nc     net.Conn
	r      *pdu.Reader
	w      *pdu.Writer
	statSN uint32
	// reqKeys collects the keys of every Login Request received.
	reqKeys [][]pdu.KV
	// declaredMRDSL says whether our MaxRecvDataSegmentLength went out.
	declaredMRDSL bool
}

func newLoginPeer(nc net.Conn) *loginPeer {
	r := pdu.NewReader(nc, 64<<10)
	r.SetMaxDataSegmentLength(1 << 20)
	return &loginPeer{nc: nc, r: r, w: pdu.NewWriter(nc), statSN: 100}
}

// defaultResponse is the answer of a well-behaved target to req.
func (p *loginPeer) defaultResponse(req *pdu.LoginRequest, kvs []pdu.KV) *pdu.LoginResponse {
	resp := &pdu.LoginResponse{
		CSG: req.CSG, ISID: req.ISID, ITT: req.ITT,
		StatSN: p.statSN, ExpCmdSN: req.CmdSN, MaxCmdSN: req.CmdSN + 31,
	}
	p.statSN++
	if req.Continue {
		return resp
	}
	if req.Transit {
		resp.Transit = true
		resp.NSG = req.NSG
		if req.NSG == pdu.FullFeaturePhase {
			resp.TSIH = 7
		}
	}
	var out []pdu.KV
	for _, kv := range kvs {
		if hostileInitiatorDeclaratives[kv.Key] || kv.Value == pdu.NotUnderstood || strings.HasPrefix(kv.Key, "CHAP_") {
			continue
		}
		v := kv.Value
		if i := strings.IndexByte(v, ','); i >= 0 { // a list: pick the first
			v = v[:i]
		}
		out = append(out, pdu.KV{Key: kv.Key, Value: v})
	}
	if req.CSG == pdu.LoginOperationalNegotiation && !p.declaredMRDSL {
		p.declaredMRDSL = true
		out = append(out, pdu.KV{Key: "MaxRecvDataSegmentLength", Value: "8192"})
	}
	resp.Data = pdu.AppendText(nil, out...)
	return resp
}

// loginHook sees the nth Login Request and the default response, which it
// may change. It returns false to close the connection instead of
// answering.
type loginHook func(p *loginPeer, n int, req *pdu.LoginRequest, kvs []pdu.KV, resp *pdu.LoginResponse) bool

// serveLogin answers Login Requests until the full feature phase. It
// returns false if the connection ended or the hook stopped it first.
func (p *loginPeer) serveLogin(hook loginHook) bool {
	for n := 0; ; n++ {
		raw, err := p.r.ReadPDU(nil)
		if err != nil {
			return false
		}
		m, err := pdu.Decode(raw)
		if err != nil {
			return false
		}
		req, ok := m.(*pdu.LoginRequest)
		if !ok {
			return false
		}
		kvs, _ := pdu.ParseText(req.Data)
		p.reqKeys = append(p.reqKeys, kvs)
		resp := p.defaultResponse(req, kvs)
		if hook != nil && !hook(p, n, req, kvs, resp) {
			return false
		}
		if err := p.w.WriteMessage(resp); err != nil {
			return false
		}
		if resp.Transit && resp.NSG == pdu.FullFeaturePhase && resp.StatusClass == 0 {
			return true
		}
	}
}

// serveFFP answers Logout and NOP-Out (ping) requests and ignores
// everything else until the connection ends.
func (p *loginPeer) serveFFP() {
	for {
		raw, err := p.r.ReadPDU(nil)
		if err != nil {
			return
		}
		h := (*pdu.BHS)(raw[:pdu.BHSLen])
		switch h.Opcode() {
		case pdu.OpLogoutRequest:
			var r pdu.BHS
			r[0] = byte(pdu.OpLogoutResponse)
			r[1] = 0x80
			r.SetITT(h.ITT())
			putWord(r[:], 24, p.statSN)
			p.statSN++
			putWord(r[:], 28, h.CmdSN())
			putWord(r[:], 32, h.CmdSN()+31)
			p.w.Queue(r[:], nil)
			_ = p.w.Flush()
		case pdu.OpNOPOut:
			if h.ITT() == idleITT {
				continue
			}
			var r pdu.BHS
			r[0] = byte(pdu.OpNOPIn)
			r[1] = 0x80
			r.SetITT(h.ITT())
			putWord(r[:], 20, idleITT)
			putWord(r[:], 24, p.statSN)
			p.statSN++
			putWord(r[:], 28, h.CmdSN())
			putWord(r[:], 32, h.CmdSN()+31)
			p.w.Queue(r[:], nil)
			_ = p.w.Flush()
		}
	}
}

// kvValue returns the value of key in kvs.
func kvValue(kvs []pdu.KV, key string) (string, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}

// hostileOpts are the options every hostile test dials with: short
// timeouts so that nothing can hang a test, and no keepalive unless asked.
func hostileOpts(d Dialer, extra ...Option) []Option {
	return append([]Option{
		WithDialer(d),
		WithInitiatorName("iqn.2026-01.test.hostile:initiator"),
		WithLoginTimeout(2 * time.Second),
		WithLogoutTimeout(300 * time.Millisecond),
		WithTMFTimeout(300 * time.Millisecond),
		WithNOP(0, 0),
		WithReplacementTimeout(0), // a hostile peer fails the session; recovery is tested apart
	}, extra...)
}

// isTimeout reports whether err says a deadline passed (the context's or
// the socket's).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// sentinelBuf returns a buffer of n bytes filled with a pattern, with
// guard bytes of the same pattern on both sides inside backing.
func sentinelBuf(n int) (backing, p []byte) {
	const guard = 4096
	backing = make([]byte, guard+n+guard)
	for i := range backing {
		backing[i] = hostileSentinel
	}
	return backing, backing[guard : guard+n]
}

const hostileSentinel = 0xa5

// requireGuards fails if anything outside p (the middle of backing) changed.
func requireGuards(t testing.TB, backing []byte, n int) {
	t.Helper()
	const guard = 4096
	for i, b := range backing[:guard] {
		if b != hostileSentinel {
			t.Fatalf("byte %d before the caller's buffer written", i-guard)
		}
	}
	for i, b := range backing[guard+n:] {
		if b != hostileSentinel {
			t.Fatalf("byte %d after the caller's buffer written", i)
		}
	}
}

// allSentinel reports whether b holds only the sentinel pattern.
func allSentinel(b []byte) bool {
	for _, c := range b {
		if c != hostileSentinel {
			return false
		}
	}
	return true
}

// tcpPair returns the two ends of a loopback TCP connection: the dialled
// one first.
func tcpPair() (net.Conn, net.Conn, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	type acc struct {
		c   net.Conn
		err error
	}
	ch := make(chan acc, 1)
	go func() {
		c, err := ln.Accept()
		ch <- acc{c, err}
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	a := <-ch
	if err != nil || a.err != nil {
		if cc != nil {
			cc.Close()
		}
		if a.c != nil {
			a.c.Close()
		}
		return nil, nil, errors.Join(err, a.err)
	}
	return cc, a.c, nil
}
