package initiator

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/pdu"
)

// conn is one TCP connection of a session in full feature phase. A
// replacement connection (recovery) gets a new conn; the slot table and the
// command window belong to the session. Its concerns live in their own
// files: the send queue (sendqueue.go), the reader role (leader.go), the
// dispatch of received PDUs to one handler per opcode (dispatch.go), and
// the aux goroutine that answers target pings and sends keepalives
// (aux.go).
type conn struct {
	s   *Session
	nc  net.Conn
	r   *pdu.Reader
	w   *pdu.Writer
	cid uint16
	log *slog.Logger

	maxXmit uint32 // target's MaxRecvDataSegmentLength: largest data segment we send
	mrdsl   uint32 // ours
	neg     iscsi.Negotiated
	tsih    uint16
	portal  string
	gen     uint64 // 0 for the connection Dial made, then 1, 2, ... for replacements

	// send queue with flat combining: whoever finds flushing false flushes
	// everything queued, including what others queue meanwhile.
	qmu      sync.Mutex
	pend     []outPDU
	spare    []outPDU
	flushing bool
	// writing is set while the flusher writes a batch it took from pend
	// (flushing is also set while it gathers, before it takes one).
	writing bool
	// batches counts finished writes; forget, drain and quiesce wait on
	// flushCond, which is broadcast whenever a batch ends and whenever
	// flushing ends, so no waiter misses the change it waits for.
	batches      uint64
	batchWaiters int
	flushCond    *sync.Cond
	// writeDeadline (unix ns) is the socket's write deadline, touched only
	// by the flusher: a send that does not complete within sendTimeout
	// fails the connection instead of blocking every caller behind it.
	writeDeadline int64

	expStatSN atomic.Uint32
	flushes   atomic.Uint64 // writev calls (statistics)
	pdusOut   atomic.Uint64 // PDUs sent (statistics)
	rxCount   atomic.Uint64 // PDUs received, for the keepalive

	// closing is set (under the session's window lock) when a Logout
	// Request is queued on this connection: no new command may follow it
	// (RFC 7143 section 11.14), so new commands wait for the replacement.
	closing atomic.Bool
	// time2Wait is the Time2Wait (seconds, +1 so that 0 means unset) the
	// target gave in an Async Message announcing that it drops this
	// connection; recovery waits that long instead of DefaultTime2Wait.
	time2Wait atomic.Uint32

	// target-initiated NOP-In pings waiting for our NOP-Out answer
	pingMu  sync.Mutex
	pings   []pingReq
	auxKick chan struct{}
	// flushKick asks the aux goroutine to flush what the reader queued.
	flushKick chan struct{}
	// renegKick asks the aux goroutine to answer a renegotiation request.
	renegKick chan struct{}

	// Reader role: whoever holds it reads and dispatches PDUs. A caller
	// waiting for its command takes it when it is free and reads until its
	// own command completes (at queue depth 1 it reads its own response:
	// no goroutine hand-off); the background reader (readLoop) holds it
	// while no caller does, for PDUs nobody waits for. See lead.
	sr       *sockReader
	canLead  bool         // callers may read (the socket supports read deadlines)
	role     atomic.Int32 // roleFree, roleHeld, roleGone
	leads    atomic.Uint64
	waiters  atomic.Int32  // goroutines waiting for the role
	asks     atomic.Uint64 // times a caller found the role held and waited
	roleCh   chan struct{} // cap 1: the role was released while someone waited
	leadMu   sync.Mutex
	leadDone <-chan struct{}               // Done of the reading caller's context
	leadEv   atomic.Pointer[chan struct{}] // the event the reading caller waits for
	// orphans counts immediate requests on this connection abandoned by
	// their owners; the reader reclaims their slots (slotTable.reclaim).
	orphans atomic.Int32

	failOnce   sync.Once
	deadErr    error
	dead       chan struct{} // closed when the connection failed or was closed
	readerDone chan struct{}
	auxDone    chan struct{}

	scratch []byte // for data segments that are not Data-In payload
	rx      rx     // decoded headers, reused (dispatch.go)
}

// newConn makes a connection whose PDU reader r reads nc directly (tests
// build connections this way). When r holds no buffered bytes it is
// replaced by one that reads through a sockReader, so callers may read.
func newConn(s *Session, nc net.Conn, r *pdu.Reader, w *pdu.Writer, maxXmit, mrdsl uint32, statSN uint32) *conn {
	var sr *sockReader
	if r.Buffered() == 0 {
		sr = newSockReader(nc)
		r = pdu.NewReader(sr, s.cfg.readBufSize)
		r.SetMaxDataSegmentLength(int(mrdsl))
	}
	return newConnSR(s, nc, sr, r, w, maxXmit, mrdsl, statSN)
}

// newConnSR makes a connection whose PDU reader r reads nc through sr (nil:
// directly, and then only the background reader reads).
func newConnSR(s *Session, nc net.Conn, sr *sockReader, r *pdu.Reader, w *pdu.Writer, maxXmit, mrdsl uint32, statSN uint32) *conn {
	c := &conn{
		s:          s,
		nc:         nc,
		sr:         sr,
		roleCh:     make(chan struct{}, 1),
		r:          r,
		w:          w,
		log:        s.log,
		maxXmit:    maxXmit,
		mrdsl:      mrdsl,
		pend:       make([]outPDU, 0, 64),
		spare:      make([]outPDU, 0, 64),
		auxKick:    make(chan struct{}, 1),
		flushKick:  make(chan struct{}, 1),
		renegKick:  make(chan struct{}, 1),
		dead:       make(chan struct{}),
		readerDone: make(chan struct{}),
		auxDone:    make(chan struct{}),
		scratch:    make([]byte, 8192),
	}
	c.flushCond = sync.NewCond(&c.qmu)
	if sr != nil {
		// Interrupting a reading caller needs read deadlines.
		c.canLead = nc.SetReadDeadline(time.Time{}) == nil
		sr.ffp = true
	}
	c.expStatSN.Store(statSN + 1)
	return c
}

func (c *conn) start() {
	go c.readLoop()
	go c.auxLoop()
}

// fail marks the connection dead with err (the first error wins) and closes
// the socket, which stops the reader and any writer.
func (c *conn) fail(err error) {
	c.failOnce.Do(func() {
		c.deadErr = err
		close(c.dead)
		_ = c.nc.Close()
		if c.log.Enabled(context.Background(), slog.LevelDebug) {
			c.log.Debug("iscsi: connection down", "err", err)
		}
	})
}

func (c *conn) err() error {
	<-c.dead
	return c.deadErr
}

func (c *conn) isDead() bool {
	select {
	case <-c.dead:
		return true
	default:
		return false
	}
}

// failTask fails the connection because of what the target sent for a
// task and returns err for the reader to stop. The task stays pending:
// recovery re-issues it on a replacement connection, or fails it with the
// session.
func (c *conn) failTask(_ *slot, err error) error {
	c.fail(&ConnectionError{Op: "receive", Err: err})
	return err
}

func (c *conn) protoErr(format string, args ...any) error {
	return &ProtocolError{Reason: fmt.Sprintf(format, args...)}
}

func (c *conn) debug(msg string, args ...any) {
	if c.log.Enabled(context.Background(), slog.LevelDebug) {
		c.log.Debug(msg, args...)
	}
}
