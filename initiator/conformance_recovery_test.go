package initiator_test

// UNH-IOL initiator full feature phase tests that need the initiator to
// reconnect (17.1, 20.2) and the SendTargets answer with an extra key
// (18.4). See docs/conformance.md.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gosan/iscsi/initiator"
	"github.com/gosan/iscsi/initiator/iscsitest"
	"github.com/gosan/iscsi/pdu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recStates records the session states reported to WithStateFunc.
type recStates struct {
	mu     sync.Mutex
	states []initiator.State
}

func (r *recStates) fn(st initiator.State, _ error) {
	r.mu.Lock()
	r.states = append(r.states, st)
	r.mu.Unlock()
}

func (r *recStates) list() []initiator.State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]initiator.State(nil), r.states...)
}

// checkReinstatement checks the leading Login Request of connection idx
// (idx > 0): the session's ISID, TSIH 0 (session reinstatement at ERL 0),
// the same target, and the portal of connection 0.
func checkReinstatement(t *testing.T, rec *recorder, idx int) {
	t.Helper()
	first := rec.sent(0, pdu.OpLoginRequest)
	again := rec.sent(idx, pdu.OpLoginRequest)
	require.NotEmpty(t, first)
	require.NotEmpty(t, again, "no Login Request on the new connection")
	orig, lead := first[0], again[0]
	require.Equal(t, orig.raw[8:14], lead.raw[8:14], "the new login uses the session's ISID")
	require.Zero(t, binary.BigEndian.Uint16(lead.raw[14:16]), "the new login has TSIH 0 (session reinstatement)")
	_, origResp := loginFinal(t, rec, 0)
	require.NotZero(t, binary.BigEndian.Uint16(origResp.raw[14:16]), "the target assigned a TSIH the first time")
	addr0, _, _, _ := rec.connInfo(0)
	addr, _, _, _ := rec.connInfo(idx)
	require.Equal(t, addr0, addr, "reconnects to the original portal")
	_, resp := loginFinal(t, rec, idx)
	require.Equal(t, byte(0), resp.raw[36], "login status class of the new connection")
}

// waitConns waits until the initiator has opened n connections.
func waitConns(t *testing.T, rec *recorder, n int, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool { return rec.numConns() >= n }, within, 5*time.Millisecond,
		"the initiator opened %d connections, want %d", rec.numConns(), n)
}

// 17.1: the target asks for a logout (Async event 1). The initiator sends
// nothing after its Logout Request on that connection, closes it once the
// Logout Response arrives, reconnects to the same portal with the same
// ISID and TSIH 0, and completes a command issued while it reconnects.
func TestUNH17_1_LogoutThenReconnect(t *testing.T) {
	srv := confServer(t, iscsitest.Negotiation{ImmediateData: iscsitest.Bool(true), InitialR2T: iscsitest.Bool(true)})
	states := &recStates{}
	cs := confDial(t, srv, initiator.WithImmediateData(true), initiator.WithInitialR2T(true),
		initiator.WithReplacementTimeout(30*time.Second), initiator.WithStateFunc(states.fn))
	a, b := pattern(4096, 0x17), pattern(8192, 0x71)
	_, err := cs.lun.WriteAt(a, 0) // "wait for any SCSI command"
	require.NoError(t, err)

	require.Equal(t, 1, srv.SendAsync(pdu.AsyncLogoutRequest, 0, 0, 2))
	cs.rec.waitSent(t, 0, "a Logout Request", func(ps []wirePDU) bool { return count(ps, pdu.OpLogoutRequest) > 0 })

	// A command issued while the session reconnects (after the logged-out
	// connection closed, during DefaultTime2Wait) waits and completes on
	// the replacement. (One issued between the Logout Request and the
	// Logout Response: TestUNH17_1_CommandDuringLogout.)
	require.Eventually(t, func() bool {
		_, _, closed, _ := cs.rec.connInfo(0)
		return !closed.IsZero()
	}, 5*time.Second, 2*time.Millisecond, "the initiator did not close the logged-out connection")
	require.Equal(t, 1, cs.rec.numConns(), "reconnected before DefaultTime2Wait")
	done := make(chan error, 1)
	go func() {
		_, err := cs.lun.WriteAtContext(ctxT(t, 20*time.Second), b, 64<<10)
		done <- err
	}()
	select {
	case err := <-done:
		require.NoError(t, err, "the write issued during the reconnection")
	case <-time.After(20 * time.Second):
		t.Fatal("the write issued during the reconnection did not complete")
	}
	waitConns(t, cs.rec, 2, time.Second)

	// Connection 0: nothing after the Logout Request, closed by the
	// initiator after the Logout Response.
	all, loAt := requireSilentAfterLogout(t, cs.rec, 0)
	respAt := slices.IndexFunc(all, func(p wirePDU) bool { return !p.out && p.op() == pdu.OpLogoutResponse })
	require.Greater(t, respAt, loAt, "the target answered the logout")
	require.Equal(t, pdu.LogoutSuccess, all[respAt].msg.(*pdu.LogoutResponse).Response, "logout succeeded")
	_, _, closed, closeSeq := cs.rec.connInfo(0)
	require.False(t, closed.IsZero(), "the initiator never closed the logged-out connection")
	require.Greater(t, closeSeq, all[respAt].seq, "closed after reading the Logout Response")
	_, dialed1, _, _ := cs.rec.connInfo(1)
	require.True(t, dialed1.After(closed), "the old connection closed before the new one was opened")
	checkNumbering(t, cs.rec, 0)
	checkExpStatSN(t, cs.rec, 0)

	// Connection 1: session reinstatement, then the write.
	checkReinstatement(t, cs.rec, 1)
	require.NotNil(t, writeSent(t, cs.rec, 1, len(b)), "the write issued during the reconnection went out on the new connection")
	checkNumbering(t, cs.rec, 1)
	checkExpStatSN(t, cs.rec, 1)
	checkWrites(t, cs, 1)

	got := make([]byte, len(a)+len(b))
	_, err = cs.lun.ReadAt(got[:len(a)], 0)
	require.NoError(t, err)
	_, err = cs.lun.ReadAt(got[len(a):], 64<<10)
	require.NoError(t, err)
	require.True(t, bytes.Equal(a, got[:len(a)]), "data written before the logout")
	require.True(t, bytes.Equal(b, got[len(a):]), "data written during the reconnection")

	require.NoError(t, cs.s.Err())
	assert.Equal(t, initiator.StateConnected, cs.s.State())
	assert.Equal(t, []initiator.State{initiator.StateConnected, initiator.StateRecovering, initiator.StateConnected}, states.list())
	assert.Equal(t, uint64(1), cs.s.Stats().Reconnects)
	assert.Len(t, srv.Records(), 2, "one connection per login")
	noViolations(t, srv)
}

// 17.1, the part the test above cannot reach: a command issued after the
// initiator sent its Logout Request but before the Logout Response came
// must not go out on the closing connection (RFC 7143 section 11.14); it
// waits and goes out on the replacement. The target holds its Logout
// Response until the command had every chance to be sent.
func TestUNH17_1_CommandDuringLogout(t *testing.T) {
	srv := confServer(t, iscsitest.Negotiation{ImmediateData: iscsitest.Bool(true)})
	// Keepalives every 50 ms: none may follow the Logout Request either.
	cs := confDial(t, srv, initiator.WithImmediateData(true), initiator.WithReplacementTimeout(30*time.Second),
		initiator.WithNOP(50*time.Millisecond, 5*time.Second))
	a, b := pattern(4096, 0x31), pattern(8192, 0x13)
	_, err := cs.lun.WriteAt(a, 0)
	require.NoError(t, err)

	hold := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	defer release()
	srv.Faults().MutateOutgoing(func(hdr, data []byte) []byte {
		if pdu.Opcode(hdr[0]&0x3f) == pdu.OpLogoutResponse {
			<-hold
		}
		return data
	})
	require.Equal(t, 1, srv.SendAsync(pdu.AsyncLogoutRequest, 0, 0, 2))
	cs.rec.waitSent(t, 0, "a Logout Request", func(ps []wirePDU) bool { return count(ps, pdu.OpLogoutRequest) > 0 })

	done := make(chan error, 1)
	go func() {
		_, err := cs.lun.WriteAtContext(ctxT(t, 20*time.Second), b, 64<<10)
		done <- err
	}()
	pinged := make(chan error, 1)
	go func() { pinged <- cs.s.Ping(ctxT(t, 20*time.Second)) }() // a NOP-Out must wait too
	// Had the write or the ping gone out on the closing connection, the
	// recorder would see it well within this time.
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("the write completed (%v) while the logout was unanswered", err)
	default:
	}
	release()
	for _, ch := range []chan error{done, pinged} {
		select {
		case err := <-ch:
			require.NoError(t, err, "the write or ping issued during the logout")
		case <-time.After(20 * time.Second):
			t.Fatal("the write or ping issued during the logout did not complete")
		}
	}
	srv.Faults().MutateOutgoing(nil)
	waitConns(t, cs.rec, 2, time.Second)

	requireSilentAfterLogout(t, cs.rec, 0)
	require.NotNil(t, writeSent(t, cs.rec, 1, len(b)), "the write went out on the new connection")
	checkNumbering(t, cs.rec, 0)
	checkNumbering(t, cs.rec, 1)
	checkReinstatement(t, cs.rec, 1)

	got := make([]byte, len(b))
	_, err = cs.lun.ReadAt(got, 64<<10)
	require.NoError(t, err)
	require.True(t, bytes.Equal(b, got), "data written during the logout")
	require.NoError(t, cs.s.Err())
	noViolations(t, srv)
}

// 20.2: the target announces that it drops the connection (Async event 2,
// Parameter1 = CID, Parameter2 = Time2Wait 0, Parameter3 = Time2Retain 1 s)
// while a write is in flight, and drops it. The initiator reconnects with
// the same ISID and TSIH 0 and re-issues the write; nothing is lost.
//
// The initiator waits the Time2Wait of Parameter2 (0 s here), not the
// negotiated DefaultTime2Wait (2 s with iscsitest, as with tgtd), so it
// reconnects within Parameter3 (Time2Retain, 1 s) as UNH asks.
func TestUNH20_2_DropConnectionThenReconnect(t *testing.T) {
	srv := confServer(t, iscsitest.Negotiation{})
	states := &recStates{}
	cs := confDial(t, srv, initiator.WithReplacementTimeout(30*time.Second), initiator.WithStateFunc(states.fn))
	t2w := time.Duration(cs.s.Negotiated().DefaultTime2Wait) * time.Second
	require.Positive(t, t2w, "iscsitest negotiates DefaultTime2Wait = max(offer, 2)")
	a, b := pattern(8192, 0x20), pattern(16384, 0x02)
	_, err := cs.lun.WriteAt(a, 0)
	require.NoError(t, err)

	// Hold the target so the next write is in flight (sent, unanswered)
	// when the connection goes. iscsitest checks the stall before reading
	// a PDU, so a reader already waiting in a read lets one more PDU
	// through: a ping takes it (answered, or, if the reader was already
	// stalled, left unread until its deadline); after it the target reads
	// nothing more.
	srv.Faults().StallUntilReleased()
	released := false
	defer func() {
		if !released {
			srv.Faults().Release()
		}
	}()
	if err := cs.s.Ping(ctxT(t, 500*time.Millisecond)); err != nil {
		require.ErrorIs(t, err, context.DeadlineExceeded, "ping while the target is stalled")
	}
	done := make(chan error, 1)
	go func() {
		_, err := cs.lun.WriteAtContext(ctxT(t, 30*time.Second), b, 128<<10)
		done <- err
	}()
	cs.rec.waitSent(t, 0, "the write's SCSI Command", func(ps []wirePDU) bool { return count(ps, pdu.OpSCSICommand) >= 2 })
	loginReq, _ := loginFinal(t, cs.rec, 0)
	cid := binary.BigEndian.Uint16(loginReq.raw[20:22])
	require.Equal(t, 1, srv.SendAsync(pdu.AsyncDropConnection, cid, 0, 1))
	require.Eventually(t, func() bool { return len(cs.rec.got(0, pdu.OpAsyncMessage)) > 0 }, 5*time.Second, 2*time.Millisecond,
		"the Async Message reached the initiator")
	srv.DropConnections()
	dropped := time.Now()
	srv.Faults().Release()
	released = true

	select {
	case err := <-done:
		require.NoError(t, err, "the write in flight when the connection dropped")
	case <-time.After(30 * time.Second):
		t.Fatal("the write in flight when the connection dropped did not complete")
	}
	waitConns(t, cs.rec, 2, time.Second)
	_, _, closed, _ := cs.rec.connInfo(0)
	require.False(t, closed.IsZero(), "the initiator closed the dropped connection")
	_, dialed, _, _ := cs.rec.connInfo(1)
	gap := dialed.Sub(dropped)
	t.Logf("reconnected %v after the drop (DefaultTime2Wait %v, Async Parameter2 0 s, Parameter3 1 s)", gap.Round(time.Millisecond), t2w)
	// UNH asks for "within Parameter3 (1 s)"; the bound keeps 500 ms of
	// slack for a loaded CI machine and still fails if the initiator waited
	// DefaultTime2Wait.
	require.Less(t, gap, t2w-500*time.Millisecond, "reconnects after Parameter2 (0 s), not after DefaultTime2Wait (%v)", t2w)

	// The write was in flight: sent on connection 0, never answered there.
	inflight := writeSent(t, cs.rec, 0, len(b))
	require.NotNil(t, inflight, "the write went out on connection 0 before the drop")
	for _, p := range cs.rec.got(0, pdu.OpSCSIResponse) {
		require.NotEqual(t, inflight.ITT, p.u32(16), "the write was answered before the drop: not in flight")
	}
	checkNumbering(t, cs.rec, 0)
	checkReinstatement(t, cs.rec, 1)
	require.NotNil(t, writeSent(t, cs.rec, 1, len(b)), "the write in flight was re-issued on the new connection")
	checkNumbering(t, cs.rec, 1)
	checkExpStatSN(t, cs.rec, 1)
	checkWrites(t, cs, 1)

	got := make([]byte, len(b))
	_, err = cs.lun.ReadAt(got, 128<<10)
	require.NoError(t, err)
	require.True(t, bytes.Equal(b, got), "the re-issued write's data")
	got = make([]byte, len(a))
	_, err = cs.lun.ReadAt(got, 0)
	require.NoError(t, err)
	require.True(t, bytes.Equal(a, got), "data written before the drop")

	require.NoError(t, cs.s.Err())
	assert.Equal(t, []initiator.State{initiator.StateConnected, initiator.StateRecovering, initiator.StateConnected}, states.list())
	st := cs.s.Stats()
	assert.Equal(t, uint64(1), st.Reconnects)
	assert.GreaterOrEqual(t, st.RetriedCommands, uint64(1))
	noViolations(t, srv)
}

// 18.4: a SendTargets answer that also carries MaxRecvDataSegmentLength
// (and, as the plan asks, a TTT other than 0xffffffff with F=1). RFC 7143
// makes MaxRecvDataSegmentLength a declarative key usable in any phase
// (section 13.12, "Use: ALL"), so its presence is no protocol error: the
// initiator ignores it (it has nothing more to send but a Logout without
// data), parses the targets and logs out normally. The plan's "session
// recovery" is not what it does; docs/conformance.md explains why.
func TestUNH18_4_SendTargetsWithMaxRecvDataSegmentLength(t *testing.T) {
	const key = "MaxRecvDataSegmentLength=512\x00"
	for _, tc := range []struct {
		name   string
		mutate func(data []byte) []byte
	}{
		{"after the targets", func(d []byte) []byte { return append(d, key...) }},
		{"before the targets", func(d []byte) []byte { return append([]byte(key), d...) }},
		{"between TargetName and TargetAddress", func(d []byte) []byte {
			i := bytes.IndexByte(d, 0)
			if i < 0 {
				return d
			}
			out := append([]byte(nil), d[:i+1]...)
			out = append(out, key...)
			return append(out, d[i+1:]...)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := confServer(t, iscsitest.Negotiation{})
			var mutated sync.Map
			srv.Faults().MutateOutgoing(func(hdr, data []byte) []byte {
				if pdu.Opcode(hdr[0]&0x3f) != pdu.OpTextResponse {
					return data
				}
				binary.BigEndian.PutUint32(hdr[20:], 0x18040001) // TTT != 0xffffffff
				hdr[1] |= 0x80                                   // F=1
				d := tc.mutate(data)
				n := len(d)
				hdr[5], hdr[6], hdr[7] = byte(n>>16), byte(n>>8), byte(n)
				mutated.Store("done", true)
				return d
			})
			rec := &recorder{}
			targets, err := initiator.Discover(ctxT(t, 10*time.Second), srv.Addr(), initiator.WithDialer(rec),
				initiator.WithInitiatorName(confInitiator))
			require.NoError(t, err)
			_, ok := mutated.Load("done")
			require.True(t, ok, "the Text Response was rewritten")
			resps := rec.got(0, pdu.OpTextResponse)
			require.Len(t, resps, 1)
			require.Contains(t, string(resps[0].msg.(*pdu.TextResponse).Data), key, "the key reached the initiator")

			require.Len(t, targets, 1)
			require.Equal(t, confIQN, targets[0].TargetName)
			require.Len(t, targets[0].Portals, 1)
			require.Equal(t, fmt.Sprintf("127.0.0.1:%d", srv.Port()), targets[0].Portals[0].String(), "TargetAddress still belongs to its TargetName")

			require.Equal(t, 1, rec.numConns(), "no reconnection or second discovery session")
			require.Len(t, rec.sent(0, pdu.OpTextRequest), 1, "no continuation after F=1, no renegotiation")
			los := rec.sent(0, pdu.OpLogoutRequest)
			require.Len(t, los, 1, "normal logout")
			require.Equal(t, pdu.LogoutCloseSession, los[0].msg.(*pdu.LogoutRequest).Reason)
			for _, p := range rec.sent(0) {
				if p.op() != pdu.OpLoginRequest {
					require.LessOrEqual(t, p.dsl(), 512, "%v data segment above the declared 512", p.op())
				}
			}
			checkNumbering(t, rec, 0)
			noViolations(t, srv)
		})
	}
}

// writeSent returns the last write of n bytes the initiator sent on
// connection idx, or nil.
func writeSent(t *testing.T, rec *recorder, idx, n int) *pdu.SCSICommand {
	t.Helper()
	var w *pdu.SCSICommand
	for _, c := range scsiCmds(t, rec.sent(idx)) {
		if c.Write && c.ExpectedDataTransferLength == uint32(n) {
			w = c
		}
	}
	return w
}

// requireSilentAfterLogout asserts that the initiator sent nothing on
// connection idx after its first Logout Request, and returns that
// connection's PDUs and the request's index.
func requireSilentAfterLogout(t *testing.T, rec *recorder, idx int) ([]wirePDU, int) {
	t.Helper()
	all := rec.pdus(idx)
	loAt := slices.IndexFunc(all, func(p wirePDU) bool { return p.out && p.op() == pdu.OpLogoutRequest })
	require.GreaterOrEqual(t, loAt, 0, "no Logout Request on connection %d", idx)
	for _, p := range all[loAt+1:] {
		require.False(t, p.out, "the initiator sent %v after its Logout Request", p.op())
	}
	return all, loAt
}
