package initiator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gosan/iscsi/initiator/iscsitest"
	"github.com/gosan/iscsi/pdu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	toTimeout = 300 * time.Millisecond // command timeout in these tests
	toTMF     = 400 * time.Millisecond // TMF timeout in these tests
	toLBA     = 100                    // the block the faults match
)

// timeoutPair serves the recovery test LUN and dials it with short command
// and TMF timeouts.
func timeoutPair(t *testing.T, opts ...Option) (*iscsitest.Server, *Session, *LUN, func()) {
	t.Helper()
	opts = append([]Option{WithCommandTimeout(toTimeout), WithTMFTimeout(toTMF), WithNOP(0, 0)}, opts...)
	return recoveryTestServer(t, opts...)
}

// wireStep is a SCSI Command or a task management request as the target
// received it.
type wireStep struct {
	conn     int
	what     string // "cmd" or the TMF function
	itt, ref uint32
	at       time.Time
}

func (w wireStep) String() string {
	if w.what == "cmd" {
		return fmt.Sprintf("conn%d cmd %#x", w.conn, w.itt)
	}
	return fmt.Sprintf("conn%d %s ref %#x", w.conn, w.what, w.ref)
}

// wireSteps lists the commands touching block toLBA (CDB opcode op) and the
// task management requests, over all connections in order.
func wireSteps(srv *iscsitest.Server, op byte) []wireStep {
	match := iscsitest.MatchLBARange(toLBA, toLBA)
	var out []wireStep
	for _, r := range srv.Records() {
		for _, p := range r.PDUs {
			switch {
			case p.Dir != iscsitest.Received:
			case p.Opcode == pdu.OpSCSICommand && p.CDB[0] == op && match(p.CDB[:]):
				out = append(out, wireStep{conn: r.ID, what: "cmd", itt: p.ITT, at: p.Time})
			case p.Opcode == pdu.OpTaskMgmtRequest:
				out = append(out, wireStep{conn: r.ID, what: p.Function.String(), ref: p.ReferencedTaskTag, at: p.Time})
			}
		}
	}
	return out
}

func shape(steps []wireStep) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.what
	}
	return out
}

// readBlock reads block toLBA with ReadAt (no context) and checks it
// against the LUN.
func readBlock(t *testing.T, srv *iscsitest.Server, l *LUN) (time.Duration, error) {
	t.Helper()
	buf := make([]byte, 512)
	start := time.Now()
	_, err := l.ReadAt(buf, toLBA*512)
	took := time.Since(start)
	if err == nil {
		want, lerr := srv.LUNData(recTestIQN, 1)
		require.NoError(t, lerr)
		require.Equal(t, want[toLBA*512:toLBA*512+512], buf)
	}
	return took, err
}

func reservedSlotsFree(t *testing.T, s *Session) {
	t.Helper()
	require.Eventually(t, func() bool { return len(s.slots.ifree) == reservedSlots }, 5*time.Second, 5*time.Millisecond,
		"a task management or ping slot was not given back")
}

// Step 1: the target loses the READ but answers ABORT TASK. The command is
// aborted after its timeout and issued again, and the caller (ReadAt, no
// context) gets the data.
func TestCommandTimeoutAbortTask(t *testing.T) {
	srv, s, l, done := timeoutPair(t)
	srv.Faults().SwallowCommands(1, iscsitest.MatchLBARange(toLBA, toLBA))
	took, err := readBlock(t, srv, l)
	require.NoError(t, err)

	steps := wireSteps(srv, 0x28)
	require.Equal(t, []string{"cmd", "ABORT TASK", "cmd"}, shape(steps), "%v", steps)
	assert.Equal(t, steps[0].itt, steps[1].ref, "ABORT TASK names the timed-out task")
	assert.NotEqual(t, steps[0].itt, steps[2].itt, "the re-issued command has a new ITT")
	assert.GreaterOrEqual(t, steps[1].at.Sub(steps[0].at), toTimeout, "aborted before its timeout")
	assert.Less(t, steps[1].at.Sub(steps[0].at), toTimeout+s.timeoutTick()+500*time.Millisecond)
	st := s.Stats()
	assert.Equal(t, uint64(1), st.CommandTimeouts)
	assert.Equal(t, uint64(1), st.AbortTasks)
	assert.Zero(t, st.LUNResets)
	assert.Zero(t, st.ConnectionFailures)
	t.Logf("read took %v; %v", took, steps)
	require.Empty(t, srv.Violations())
	reservedSlotsFree(t, s)
	done()
}

// Step 2: ABORT TASK is not answered either; LOGICAL UNIT RESET settles the
// task after the TMF timeout, on the same connection.
func TestCommandTimeoutLUNReset(t *testing.T) {
	srv, s, l, done := timeoutPair(t)
	srv.Faults().SwallowCommands(1, iscsitest.MatchLBARange(toLBA, toLBA))
	srv.Faults().SwallowTMF(pdu.TMFAbortTask, 1)
	took, err := readBlock(t, srv, l)
	require.NoError(t, err)

	steps := wireSteps(srv, 0x28)
	require.Equal(t, []string{"cmd", "ABORT TASK", "LOGICAL UNIT RESET", "cmd"}, shape(steps), "%v", steps)
	assert.Equal(t, steps[0].itt, steps[1].ref)
	assert.GreaterOrEqual(t, steps[2].at.Sub(steps[1].at), toTMF, "reset before the abort's TMF timeout")
	for _, st := range steps {
		assert.Equal(t, steps[0].conn, st.conn, "the connection was replaced")
	}
	st := s.Stats()
	assert.Equal(t, uint64(1), st.CommandTimeouts)
	assert.Equal(t, uint64(1), st.AbortTasks)
	assert.Equal(t, uint64(1), st.LUNResets)
	assert.Zero(t, st.ConnectionFailures)
	t.Logf("read took %v; %v", took, steps)
	reservedSlotsFree(t, s) // the unanswered ABORT TASK's slot too
	done()
}

// Step 3: neither TMF is answered; the connection is dropped, the session
// reinstated, and the command issued on the new connection.
func TestCommandTimeoutReconnect(t *testing.T) {
	srv, s, l, done := timeoutPair(t)
	srv.Faults().SwallowCommands(1, iscsitest.MatchLBARange(toLBA, toLBA))
	srv.Faults().SwallowTMF(pdu.TMFAbortTask, 1)
	srv.Faults().SwallowTMF(pdu.TMFLogicalUnitReset, 1)
	took, err := readBlock(t, srv, l)
	require.NoError(t, err)

	steps := wireSteps(srv, 0x28)
	// The re-issued command may get the UNIT ATTENTION of the session
	// reinstatement first, which is absorbed by issuing it once more.
	require.GreaterOrEqual(t, len(steps), 4, "%v", steps)
	require.Equal(t, []string{"cmd", "ABORT TASK", "LOGICAL UNIT RESET", "cmd"}, shape(steps[:4]), "%v", steps)
	require.LessOrEqual(t, len(steps), 5, "%v", steps)
	for _, st := range steps[3:] {
		assert.Equal(t, "cmd", st.what)
		assert.NotEqual(t, steps[0].conn, st.conn, "re-issued on the replacement connection")
	}
	st := s.Stats()
	assert.Equal(t, uint64(1), st.CommandTimeouts)
	assert.Equal(t, uint64(1), st.ConnectionFailures)
	assert.Equal(t, uint64(1), st.Reconnects)
	assert.Zero(t, st.RetriedCommands, "recovery must not re-issue the command the timeout settled")
	t.Logf("read took %v; %v", took, steps)
	reservedSlotsFree(t, s) // both unanswered TMFs' slots were reclaimed
	done()
}

// A command that times out again after its re-issue fails with a typed
// error naming the steps; the session stays usable.
func TestCommandTimeoutTwiceFails(t *testing.T) {
	srv, s, l, done := timeoutPair(t)
	srv.Faults().SwallowCommands(-1, iscsitest.MatchLBARange(toLBA, toLBA))
	took, err := readBlock(t, srv, l)
	require.Error(t, err)
	require.ErrorIs(t, err, ErrCommandTimeout)
	var te *CommandTimeoutError
	require.ErrorAs(t, err, &te)
	assert.Equal(t, 2, te.Attempts)
	assert.Equal(t, []RecoveryStep{StepAbortTask, StepAbortTask}, te.Steps)
	assert.Equal(t, toTimeout, te.Timeout)
	assert.Contains(t, err.Error(), "abort task")
	assert.GreaterOrEqual(t, took, 2*toTimeout)
	assert.Less(t, took, 2*(toTimeout+s.timeoutTick())+2*time.Second)
	require.Equal(t, []string{"cmd", "ABORT TASK", "cmd", "ABORT TASK"}, shape(wireSteps(srv, 0x28)))

	srv.Faults().SwallowCommands(0, nil)
	_, err = readBlock(t, srv, l)
	require.NoError(t, err, "the session is usable after the failure")
	assert.Equal(t, uint64(2), s.Stats().CommandTimeouts)
	reservedSlotsFree(t, s)
	done()
}

// A write is acknowledged only when the re-issued write got GOOD; its data
// is on the LUN.
func TestCommandTimeoutWrite(t *testing.T) {
	srv, s, l, done := timeoutPair(t)
	srv.Faults().SwallowCommands(1, iscsitest.MatchLBARange(toLBA, toLBA))
	data := bytes.Repeat([]byte{0xc3}, 64<<10)
	_, err := l.WriteAt(data, toLBA*512)
	require.NoError(t, err)
	got, err := srv.LUNData(recTestIQN, 1)
	require.NoError(t, err)
	require.Equal(t, data, got[toLBA*512:toLBA*512+len(data)])
	require.Equal(t, []string{"cmd", "ABORT TASK", "cmd"}, shape(wireSteps(srv, 0x2a)))
	assert.Equal(t, uint64(1), s.Stats().CommandTimeouts)
	require.Empty(t, srv.Violations())
	done()
}

// ContextWithCommandTimeout overrides the session's timeout for one call,
// here on a session whose commands otherwise never time out.
func TestCommandTimeoutFromContext(t *testing.T) {
	srv, s, l, done := timeoutPair(t, WithCommandTimeout(0))
	srv.Faults().SwallowCommands(-1, iscsitest.MatchLBARange(toLBA, toLBA))
	ctx := ContextWithCommandTimeout(context.Background(), 200*time.Millisecond)
	start := time.Now()
	_, err := l.ReadAtContext(ctx, make([]byte, 512), toLBA*512)
	var te *CommandTimeoutError
	require.ErrorAs(t, err, &te)
	assert.Equal(t, 200*time.Millisecond, te.Timeout)
	assert.Less(t, time.Since(start), 3*time.Second)
	srv.Faults().SwallowCommands(0, nil)
	_, err = readBlock(t, srv, l)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), s.Stats().CommandTimeouts)
	done()
}

// A target that keeps its command window closed: the command times out
// before it is sent. The window is granted for one command (CmdWindow 1)
// and that command's status closes it (MaxCmdSN = ExpCmdSN-1).
func TestCommandTimeoutWindowClosed(t *testing.T) {
	srv, err := iscsitest.NewServer(iscsitest.Config{
		Targets:     []iscsitest.Target{{Name: recTestIQN, LUNs: []iscsitest.LUN{{Number: 1, Blocks: 32768, BlockSize: 512}}}},
		Negotiation: iscsitest.Negotiation{CmdWindow: 1}, NoUnitAttention: true,
	})
	require.NoError(t, err)
	defer srv.Close()
	before := goroutines()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Dial(ctx, srv.Addr(), recTestIQN, WithLogger(testLogger(t)), WithCommandTimeout(toTimeout), WithNOP(0, 0))
	require.NoError(t, err)
	l, err := s.LUN(ctx, 1)
	require.NoError(t, err)
	var once sync.Once
	srv.Faults().MutateOutgoing(func(hdr, data []byte) []byte {
		h := (*pdu.BHS)(hdr[:pdu.BHSLen])
		var din pdu.DataIn
		if h.Opcode() == pdu.OpSCSIResponse || (h.Opcode() == pdu.OpDataIn && din.DecodeHeader(h, nil) == nil && din.StatusPresent) {
			once.Do(func() { h.SetMaxCmdSN(h.ExpCmdSN() - 1) })
		}
		return data
	})
	_, err = readBlock(t, srv, l)
	require.NoError(t, err, "the granted slot is still usable")
	start := time.Now()
	_, err = readBlock(t, srv, l)
	var te *CommandTimeoutError
	require.ErrorAs(t, err, &te)
	assert.True(t, te.WindowClosed)
	assert.Zero(t, te.Attempts)
	require.ErrorIs(t, err, ErrCommandTimeout)
	assert.Contains(t, err.Error(), "command window")
	assert.GreaterOrEqual(t, time.Since(start), toTimeout)
	assert.Less(t, time.Since(start), toTimeout+2*time.Second)
	srv.SetCmdWindow(64)
	_, err = readBlock(t, srv, l)
	require.NoError(t, err)
	assert.Zero(t, s.Stats().CommandTimeouts, "a command that was never sent did not time out")
	require.NoError(t, s.Close())
	require.NoError(t, srv.Close())
	checkNoLeak(t, before)
}

// TMFs that the target never answers neither hold a caller past the TMF
// timeout nor keep their slot: each unanswered LUN RESET fails in bounded
// time (it takes the connection down: recovery follows) and gives its
// slot back.
func TestUnansweredTMFsReleaseSlots(t *testing.T) {
	srv, s, _, done := timeoutPair(t)
	srv.Faults().SwallowTMF(pdu.TMFLogicalUnitReset, -1)
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		err := s.LUNReset(ctx, 1)
		cancel()
		require.Error(t, err, "reset %d", i)
		assert.False(t, errors.Is(err, context.DeadlineExceeded) && time.Since(start) > 5*time.Second, "reset %d waited for its caller's context", i)
		assert.Less(t, time.Since(start), toTMF+4*time.Second, "reset %d", i)
		reservedSlotsFree(t, s)
	}
	srv.Faults().SwallowTMF(pdu.TMFLogicalUnitReset, 0)
	reservedSlotsFree(t, s)
	done()
}
