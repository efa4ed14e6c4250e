package initiator

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/initiator/iscsitest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// extraPortal serves srv on a second listener, as a target with two
// portals does; closing it makes that portal unreachable.
type extraPortal struct {
	ln net.Listener
	wg sync.WaitGroup
}

func newExtraPortal(t *testing.T, srv *iscsitest.Server) *extraPortal {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &extraPortal{ln: ln}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				srv.ServeConn(nc)
			}()
		}
	}()
	t.Cleanup(p.close)
	return p
}

func (p *extraPortal) addr() string { return p.ln.Addr().String() }

func (p *extraPortal) close() { _ = p.ln.Close() }

// deadPortal returns a loopback address nothing listens on.
func deadPortal(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func portalOf(t *testing.T, addr string) Portal {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	n, err := strconv.Atoi(p)
	require.NoError(t, err)
	return Portal{Address: h, Port: n, GroupTag: 1}
}

// The portal in use goes away for good while writes are in flight: the
// session reconnects to the target's other portal (given by WithPortals,
// as Discover lists it) and nothing is lost.
func TestRecoveryFailsOverToAnotherPortal(t *testing.T) {
	before := goroutines()
	srv, err := iscsitest.NewServer(iscsitest.Config{Targets: []iscsitest.Target{{
		Name: recTestIQN,
		LUNs: []iscsitest.LUN{{Number: 1, Blocks: 32768, BlockSize: 512}},
	}}})
	require.NoError(t, err)
	first := newExtraPortal(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	states := &stateLog{}
	s, err := Dial(ctx, first.addr(), recTestIQN, WithLogger(testLogger(t)), WithLoginTimeout(time.Second),
		WithPortals(srv.Addr()), WithStateFunc(states.fn), WithReplacementTimeout(20*time.Second))
	require.NoError(t, err)
	require.Equal(t, first.addr(), s.Portal())
	l, err := s.LUN(ctx, 1)
	require.NoError(t, err)

	const region = 4 << 20
	w := startWorkload(t, l, 4, region, false)
	w.waitProgress(t, 50, 10*time.Second)
	first.close() // the portal is gone: reconnecting there is refused
	srv.DropConnections()
	require.Eventually(t, func() bool { return s.Stats().Reconnects >= 1 }, 15*time.Second, 5*time.Millisecond,
		"no reconnection to the second portal")
	assert.Equal(t, srv.Addr(), s.Portal(), "the session moved to the other portal")
	w.waitProgress(t, 50, 10*time.Second)
	w.finish(t, lunData(t, srv, region))
	st := s.Stats()
	assert.GreaterOrEqual(t, st.ReconnectAttempts, uint64(2), "the dead portal was tried first")
	assert.Equal(t, []State{StateConnected, StateRecovering, StateConnected}, states.list())
	require.NoError(t, s.Close())
	require.NoError(t, srv.Close())
	first.wg.Wait()
	checkNoLeak(t, before)
}

// DialTarget skips a portal nobody answers on, logs in on the next one and
// keeps both for recovery.
func TestDialTargetSkipsDeadPortal(t *testing.T) {
	srv := iscsitest.NewTestServer(t, iscsitest.Config{Targets: []iscsitest.Target{{
		Name: recTestIQN,
		LUNs: []iscsitest.LUN{{Number: 1, Blocks: 2048, BlockSize: 512}},
	}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dead := deadPortal(t)
	tg := Target{TargetName: recTestIQN, Portals: []Portal{portalOf(t, dead), portalOf(t, srv.Addr())}}
	s, err := DialTarget(ctx, tg, WithLogger(testLogger(t)), WithLoginTimeout(time.Second))
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, srv.Addr(), s.Portal())
	assert.Equal(t, []string{srv.Addr(), dead}, s.portals, "reconnection order: the portal in use, then the others")
	l, err := s.LUN(ctx, 1)
	require.NoError(t, err)
	buf := make([]byte, 4096)
	_, err = l.ReadAt(buf, 0)
	require.NoError(t, err)
}

// DialTarget stops at a login the target refuses: every portal of a
// target would refuse it the same way.
func TestDialTargetStopsAtLoginRefusal(t *testing.T) {
	srv := iscsitest.NewTestServer(t, iscsitest.Config{Targets: []iscsitest.Target{{
		Name: recTestIQN,
		LUNs: []iscsitest.LUN{{Number: 1, Blocks: 2048, BlockSize: 512}},
	}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	second := newExtraPortal(t, srv)
	tg := Target{TargetName: "iqn.2026-11.org.gosan.test:nosuchtarget", Portals: []Portal{portalOf(t, srv.Addr()), portalOf(t, second.addr())}}
	_, err := DialTarget(ctx, tg, WithLogger(testLogger(t)), WithLoginTimeout(time.Second))
	require.ErrorIs(t, err, iscsi.ErrTargetNotFound)
	assert.Len(t, srv.Records(), 1, "the second portal was not tried")

	_, err = DialTarget(ctx, Target{TargetName: recTestIQN})
	require.Error(t, err)
	assert.False(t, errors.Is(err, iscsi.ErrTargetNotFound))
}
