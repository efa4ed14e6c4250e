package initiator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/internal/login"
	iportal "github.com/gosan/iscsi/internal/portal"
	"github.com/gosan/iscsi/pdu"
)

// Session is a normal iSCSI session with one target over one TCP
// connection. It is safe for concurrent use; up to the queue depth of
// commands are in flight at once.
//
// When the connection fails the session replaces it (see WithReplacementTimeout):
// commands in flight are re-issued on the new connection and callers see
// latency, not errors, unless the replacement timeout passes first.
type Session struct {
	cfg    config
	log    *slog.Logger
	target string
	isid   [6]byte

	win   window
	slots *slotTable
	conn  atomic.Pointer[conn]

	// life ends when Close starts: it stops a recovery in progress.
	life     context.Context
	stopLife context.CancelFunc
	portals  []string // tried in order when reconnecting

	stMu    sync.Mutex
	state   State
	stErr   error         // why the session is failed (StateFailed)
	changed chan struct{} // closed and replaced on every state or connection change
	term    chan struct{} // closed when the session is failed or closed
	termSet bool

	stats stats
	// clock is the watchdog's coarse clock (unix ns), read for command
	// deadlines instead of the system clock (timeout.go).
	clock atomic.Int64

	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool
	wg        sync.WaitGroup
}

// TargetName returns the name of the target the session logged in to.
func (s *Session) TargetName() string { return s.target }

// Portal returns the address the session is connected to (after redirects;
// after a recovery, the portal of the replacement connection).
func (s *Session) Portal() string { return s.conn.Load().portal }

// ISID returns the session's initiator session ID.
func (s *Session) ISID() [6]byte { return s.isid }

// TSIH returns the target-assigned session handle (a recovery gets a new
// one: the target reinstates the session under the same ISID).
func (s *Session) TSIH() uint16 { return s.conn.Load().tsih }

// Negotiated returns the operational parameters agreed at login (of the
// current connection).
func (s *Session) Negotiated() iscsi.Negotiated { return s.conn.Load().neg }

// Dial connects to portal ("host", "host:port", "[v6addr]:port"; port 3260
// by default), logs in to targetName and returns a session in full feature
// phase. It follows login redirections and retries while the target is out
// of resources, within the login timeout and ctx.
func Dial(ctx context.Context, portal, targetName string, opts ...Option) (*Session, error) {
	cfg := buildConfig(opts)
	s := &Session{
		cfg:    cfg,
		log:    cfg.logger,
		target: targetName,
		isid:   cfg.isid,
	}
	lctx, cancel := context.WithTimeout(ctx, cfg.loginTimeout)
	defer cancel()
	c, res, err := s.connect(lctx, portal, targetName)
	if err != nil {
		return nil, err
	}
	s.portals = portalList(c.portal, portal, cfg.portals)
	s.attach(c, res.Negotiated, res.TSIH, res.CmdSN, res.ExpCmdSN, res.MaxCmdSN)
	if s.log.Enabled(ctx, slog.LevelDebug) {
		neg := c.neg
		s.log.Debug("iscsi: session up", "target", targetName, "portal", c.portal, "tsih", c.tsih,
			"maxXmit", c.maxXmit, "firstBurst", neg.FirstBurstLength, "maxBurst", neg.MaxBurstLength,
			"immediateData", neg.ImmediateData, "initialR2T", neg.InitialR2T,
			"headerDigest", neg.HeaderDigest, "dataDigest", neg.DataDigest)
	}
	s.notify(StateConnected, nil)
	return s, nil
}

// DialTarget logs in to t, a target Discover returned, on the first of its
// portals that accepts the login, in the order listed, and keeps all of
// them (and those of WithPortals) for recovery: when the connection fails,
// the session reconnects to the portal it was using first, then to the
// others. A portal that cannot be reached or times out is skipped; a login
// the target refuses (authentication, authorization, unknown target, ...)
// ends DialTarget at once, since every portal of a target answers the same.
// The login timeout applies to each portal.
func DialTarget(ctx context.Context, t Target, opts ...Option) (*Session, error) {
	if len(t.Portals) == 0 {
		return nil, fmt.Errorf("iscsi: target %s: no portals", t.TargetName)
	}
	portals := make([]string, len(t.Portals))
	for i, p := range t.Portals {
		portals[i] = p.String()
	}
	var errs []error
	for i, p := range portals {
		rest := append(append([]string(nil), portals[:i]...), portals[i+1:]...)
		s, err := Dial(ctx, p, t.TargetName, append(opts[:len(opts):len(opts)], WithPortals(rest...))...)
		if err == nil {
			return s, nil
		}
		errs = append(errs, err)
		var le *iscsi.LoginError
		if ctx.Err() != nil || errors.As(err, &le) || errors.Is(err, iscsi.ErrConfig) ||
			errors.Is(err, iscsi.ErrCHAPReflection) || errors.Is(err, iscsi.ErrMutualAuth) {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// attach makes c the session's first connection in full feature phase and
// starts the session's recovery goroutine. A session without portals to
// reconnect to fails when its connection fails.
func (s *Session) attach(c *conn, neg iscsi.Negotiated, tsih uint16, cmdSN, expCmdSN, maxCmdSN uint32) {
	c.neg, c.tsih = neg, tsih
	if s.changed == nil {
		s.changed = make(chan struct{})
		s.term = make(chan struct{})
	}
	if len(s.portals) == 0 {
		s.cfg.replacementTimeout = 0
	}
	s.life, s.stopLife = context.WithCancel(context.Background())
	s.slots = newSlotTable(s.cfg.queueDepth)
	s.win.reset(cmdSN, expCmdSN, maxCmdSN)
	s.conn.Store(c)
	s.clock.Store(time.Now().UnixNano())
	c.start()
	s.wg.Add(2)
	go s.supervise()
	go s.watchTimeouts()
}

// portalList is the reconnection order: the portal connected to, the one
// Dial was given, then the extra portals, without duplicates.
func portalList(connected, dialed string, extra []string) []string {
	out := []string{connected}
	for _, p := range append([]string{dialed}, extra...) {
		p = normalizePortal(p)
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// normalizePortal adds the default port, brackets a bare IPv6 address and
// drops a ",tag" (internal/portal). Input it cannot parse comes back
// unchanged, so the dialer (which may be the caller's) reports it.
func normalizePortal(p string) string {
	if n, err := iportal.Normalize(p); err == nil {
		return n
	}
	return p
}

func loginParams(cfg *config) login.Params {
	p := login.DefaultParams()
	p.HeaderDigest = cfg.headerDigest.offer()
	p.DataDigest = cfg.dataDigest.offer()
	p.MaxRecvDataSegmentLength = cfg.mrdsl
	p.FirstBurstLength = cfg.firstBurst
	p.MaxBurstLength = cfg.maxBurst
	p.ImmediateData = cfg.immediateData
	p.InitialR2T = cfg.initialR2T
	p.MaxOutstandingR2T = maxR2TQueue
	p.DataPDUInOrder = true
	p.DataSequenceInOrder = true
	p.ErrorRecoveryLevel = 0
	p.MaxConnections = 1
	return p
}

// connect dials and logs in, following redirects and backing off while the
// target is out of resources.
func (s *Session) connect(ctx context.Context, portal, target string) (*conn, *login.Result, error) {
	addr := normalizePortal(portal)
	backoff := 100 * time.Millisecond
	redirects := 0
	for {
		c, res, err := s.loginOnce(ctx, addr, target)
		if err == nil {
			return c, res, nil
		}
		var re *iscsi.RedirectError
		switch {
		case errors.As(err, &re) && redirects < maxRedirects:
			redirects++
			s.log.Debug("iscsi: login redirected", "to", re.Portal(), "permanent", re.Permanent)
			addr = re.Portal()
			continue
		case errors.Is(err, iscsi.ErrOutOfResources):
			s.log.Debug("iscsi: target out of resources; retrying", "after", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, nil, fmt.Errorf("iscsi: login to %s: %w (last: %w)", addr, ctx.Err(), err)
			case <-t.C:
			}
			if backoff < 2*time.Second {
				backoff *= 2
			}
			continue
		}
		return nil, nil, err
	}
}

func (s *Session) loginOnce(ctx context.Context, addr, target string) (*conn, *login.Result, error) {
	nc, err := s.cfg.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, &ConnectionError{Op: "dial " + addr, Err: err}
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	t := newTransport(nc, s.cfg.readBufSize)
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	res, err := login.Login(ctx, t, login.Config{
		InitiatorName:  s.cfg.initiatorName,
		InitiatorAlias: s.cfg.initiatorAlias,
		TargetName:     target,
		ISID:           s.isid,
		TSIH:           0,
		CID:            0,
		InitialCmdSN:   1,
		CHAP:           s.cfg.chap,
		Params:         loginParams(&s.cfg),
		Logger:         s.log,
	})
	if !stop() || err != nil {
		_ = nc.Close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, nil, fmt.Errorf("iscsi: login to %s at %s: %w", target, addr, err)
	}
	_ = nc.SetDeadline(time.Time{})
	if pc, ok := takeSocket(nc); ok {
		// Full feature phase waits for the socket in ppoll, outside Go's
		// poller (pollconn_linux.go).
		nc = pc
		t.useConn(pc)
	}
	neg := res.Negotiated
	t.r.SetDigests(neg.HeaderDigest, neg.DataDigest)
	t.w.SetDigests(neg.HeaderDigest, neg.DataDigest)
	mrdsl := neg.MaxRecvDataSegmentLength
	if mrdsl == 0 {
		mrdsl = s.cfg.mrdsl
	}
	t.r.SetMaxDataSegmentLength(int(mrdsl))
	maxXmit := neg.MaxXmitDataSegmentLength
	if maxXmit == 0 {
		maxXmit = 8192
	}
	c := newConnSR(s, nc, t.sr, t.r, t.w, maxXmit, mrdsl, res.StatSN)
	c.neg = neg
	c.tsih = res.TSIH
	c.portal = addr
	return c, res, nil
}

// current returns the live connection, or an error when there is none
// now (closed, failed, or being replaced).
func (s *Session) current() (*conn, error) {
	if s.closed.Load() {
		return nil, ErrSessionClosed
	}
	c := s.conn.Load()
	if c == nil {
		return nil, ErrSessionClosed
	}
	select {
	case <-c.dead:
		if err := s.Err(); err != nil {
			return nil, err
		}
		return nil, c.deadErr
	default:
	}
	return c, nil
}

// waitConn returns the live connection, waiting (ctx-aware) while the
// session recovers; it fails when the session is closed or failed.
func (s *Session) waitConn(ctx context.Context) (*conn, error) {
	for {
		if s.closed.Load() {
			return nil, ErrSessionClosed
		}
		c := s.conn.Load()
		if c != nil && !c.isDead() {
			if !c.closing.Load() {
				return c, nil
			}
			// Logging out: wait until that connection is gone, then
			// for its replacement.
			select {
			case <-c.dead:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			continue
		}
		if c != nil && s.cfg.replacementTimeout <= 0 {
			return nil, s.failedNow(c)
		}
		s.stMu.Lock()
		if s.termSet {
			err := s.stErr
			s.stMu.Unlock()
			if err == nil {
				err = ErrSessionClosed
			}
			return nil, err
		}
		ch := s.changed
		again := s.conn.Load() != c
		s.stMu.Unlock()
		if again {
			continue
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Err returns nil while the session is usable (also while it recovers from
// a connection failure), else why it is not: ErrSessionClosed, or a
// *SessionFailedError.
func (s *Session) Err() error {
	if s.closed.Load() {
		return ErrSessionClosed
	}
	s.stMu.Lock()
	if s.termSet {
		err := s.stErr
		s.stMu.Unlock()
		if err == nil {
			return ErrSessionClosed
		}
		return err
	}
	s.stMu.Unlock()
	if c := s.conn.Load(); c != nil && c.isDead() && s.cfg.replacementTimeout <= 0 {
		return s.failedNow(c)
	}
	return nil
}

// failedNow is the error of a session without recovery whose connection c
// failed: the same the recovery goroutine records once it has wound up.
func (s *Session) failedNow(c *conn) error {
	s.stMu.Lock()
	defer s.stMu.Unlock()
	if s.termSet && s.stErr != nil {
		return s.stErr
	}
	return &SessionFailedError{Cause: c.deadErr}
}

// asyncLogout answers a target's logout request (Async event 1): it logs
// the session out on that connection and treats the connection as failed,
// so recovery logs in again (session reinstatement) and re-issues the
// commands the logout ended.
func (s *Session) asyncLogout(c *conn, within time.Duration) {
	s.log.Debug("iscsi: target requests logout", "within", within)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if s.closed.Load() {
			return
		}
		ctx, cancel := context.WithTimeout(s.life, s.cfg.logoutTimeout)
		err := s.logout(ctx, c)
		cancel()
		cause := fmt.Errorf("%w at the target's request", ErrSessionClosed)
		if err != nil {
			cause = fmt.Errorf("%w at the target's request (%w)", ErrSessionClosed, err)
		}
		c.fail(&ConnectionError{Op: "logout", Err: cause})
	}()
}

// Close logs out (bounded by the logout timeout), closes the connection and
// waits for the session's goroutines to exit. Commands still in flight fail
// with ErrSessionClosed; a recovery in progress stops. Close never hangs
// and is safe to call more than once.
func (s *Session) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.shutdown() })
	s.wg.Wait()
	return s.closeErr
}

func (s *Session) shutdown() error {
	s.closed.Store(true)
	c := s.conn.Load()
	var err error
	if c != nil && !c.isDead() {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.logoutTimeout)
		err = s.logout(ctx, c)
		cancel()
	}
	s.stopLife()
	if c != nil {
		c.fail(&ConnectionError{Op: "close", Err: ErrSessionClosed})
		<-c.readerDone
		<-c.auxDone
	}
	return err
}

// How await ended.
const (
	waitDone    = iota // the slot's event came
	waitCtx            // the context ended
	waitDead           // the connection given to await failed
	waitTimeout        // the command's timeout passed (timeout.go)
)

// waitee is what await waits for: a slot (its task finishes or times out)
// or a Queue (any of its commands posts).
type waitee interface {
	// event is the channel that gets a token when there is news.
	event() *chan struct{}
	// woken says, after a token, how the wait ends (-1: a stale token,
	// go on waiting).
	woken() int
	// stopped says, after the waiter stopped reading PDUs itself with no
	// token and a live context, how the wait ends (-1: go on).
	stopped() int
	// batches: a waiter reading PDUs itself goes on, after its token,
	// with the PDUs already buffered whole (see leadUntil).
	batches() bool
}

func (sl *slot) event() *chan struct{} { return &sl.ev }
func (sl *slot) woken() int            { return sl.evState() }
func (sl *slot) batches() bool         { return false } // its caller wants its own answer now
func (sl *slot) stopped() int {
	if sl.kind == kindSCSI && sl.expiredNow() {
		return waitTimeout
	}
	return -1
}

// await waits for the slot's event (its task finished). See awaitOn.
func (s *Session) await(ctx context.Context, sl *slot, only *conn) int {
	return s.awaitOn(ctx, sl, only)
}

// awaitOn waits for w's event. While it waits it takes the reader role of
// the connection when nobody holds it and reads PDUs itself (see
// conn.leadUntil). With only set it waits on that connection and returns
// waitDead when it fails; otherwise it follows the session's connection
// across recoveries.
func (s *Session) awaitOn(ctx context.Context, w waitee, only *conn) int {
	ev := w.event()
	for {
		select {
		case <-*ev:
			if r := w.woken(); r >= 0 {
				return r
			}
			continue
		default:
		}
		c := only
		if c == nil {
			c = s.conn.Load()
		}
		if !c.isDead() {
			if c.canLead {
				if c.tryLead() {
					if r := s.led(ctx, c, w); r >= 0 {
						return r
					}
					continue
				}
				c.waiters.Add(1)
				c.asks.Add(1)
				if c.tryLead() {
					c.waiters.Add(-1)
					if r := s.led(ctx, c, w); r >= 0 {
						return r
					}
					continue
				}
			}
			r := -1
			select {
			case <-*ev:
				r = w.woken()
			case <-ctx.Done():
				r = waitCtx
			case <-c.roleCh:
			case <-c.dead:
			}
			if c.canLead {
				c.waiters.Add(-1)
			}
			if r >= 0 {
				return r
			}
			continue
		}
		if only != nil {
			return waitDead
		}
		// The connection failed: wait for the recovery to replace it (or
		// to end the task).
		s.stMu.Lock()
		ch := s.changed
		s.stMu.Unlock()
		if s.conn.Load() != c {
			continue
		}
		select {
		case <-*ev:
			if r := w.woken(); r >= 0 {
				return r
			}
		case <-ctx.Done():
			return waitCtx
		case <-ch:
		}
	}
}

// led reads PDUs for w holding c's reader role and says how the wait
// ended (-1: go on waiting).
func (s *Session) led(ctx context.Context, c *conn, w waitee) int {
	if c.leadUntil(ctx, w.event(), w.batches()) {
		return w.woken()
	}
	if ctx.Err() != nil {
		return waitCtx
	}
	return w.stopped()
}

// tmfTask names what a task management request acts on.
type tmfTask struct {
	fn     pdu.TMFunction
	lun    uint64 // raw SAM LUN
	refITT uint32 // ABORT TASK: the task's ITT; else idleITT
	// keepConn: a request the target does not answer is left to a late
	// answer (or to the connection's end) instead of failing the
	// connection; the caller decides what follows (escalate).
	keepConn bool
}

// immediate sends a non-SCSI immediate request, whose header hdr holds
// everything but the ITT and CmdSN (set here), using a reserved slot, and
// waits for its response. tmf describes a task management request.
//
// With viaAux the caller never writes to the socket itself: when nobody is
// flushing, the aux goroutine is asked to (the keepalive must not be the
// goroutine stuck in a send it is there to detect).
func (s *Session) immediate(ctx context.Context, c *conn, kind uint8, tmf tmfTask, hdr *pdu.BHS, viaAux bool) (*slot, error) {
	var idx uint16
	select {
	case idx = <-s.slots.ifree:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.dead:
		return nil, c.deadErr
	}
	sl := &s.slots.slots[idx]
	sl.arm()
	sl.kind = kind
	sl.refITT = idleITT
	if kind == kindTMF {
		sl.refITT = tmf.refITT
	}
	sl.in, sl.out = nil, nil
	sl.lun = tmf.lun
	sl.tmfFn = tmf.fn
	sl.immConn = c
	s.win.mu.Lock()
	if kind == kindLogout {
		// Under the window lock, as start checks it: no command gets a
		// CmdSN on c after this Logout Request.
		c.closing.Store(true)
	} else if c.closing.Load() {
		// Nothing follows a Logout Request on its connection (RFC 7143
		// section 11.14): not a ping, a TMF or a Text Request either.
		s.win.mu.Unlock()
		s.slots.release(sl)
		return nil, &ConnectionError{Op: "request on a connection logging out", Err: errLoggingOut}
	}
	sl.cmdSN = s.win.cmdSN
	hdr.SetCmdSN(s.win.cmdSN)
	hdr.SetITT(sl.publish())
	c.qmu.Lock()
	s.win.mu.Unlock()
	c.enqueueLocked(hdr, nil)
	if viaAux {
		c.flushViaAuxLocked()
	} else {
		c.kickLocked()
	}
	switch s.await(ctx, sl, c) {
	case waitDone:
		return sl, nil
	case waitCtx:
	case waitDead:
		<-c.readerDone
		sl.mu.Lock()
		done := sl.done
		sl.mu.Unlock()
		if done { // answered just before the connection closed (logout)
			return sl, nil
		}
	}
	err := ctx.Err()
	if err != nil && (kind == kindNOP || tmf.keepConn) {
		// A late NOP-In is harmless, and so is a late TMF response (a
		// stale ITT it names finds no task). The slot returns to the free
		// list with the answer, or at the next PDU the reader reads, or
		// when the connection ends (slotTable.reclaim).
		sl.abandon()
		c.orphans.Add(1)
		return nil, err
	}
	// No answer: the connection can no longer be trusted for this request.
	switch {
	case err == nil:
		err = c.deadErr
	case kind == kindLogout: // closing anyway: commands in flight see ErrSessionClosed
		c.fail(&ConnectionError{Op: "logout", Err: fmt.Errorf("%w (no logout response: %v)", ErrSessionClosed, err)})
	default:
		c.fail(&ConnectionError{Op: "waiting for a response", Err: err})
	}
	<-c.readerDone
	sl.itt.Store(idleITT)
	s.slots.release(sl)
	return nil, err
}

// ping sends a NOP-Out on c and waits for the NOP-In; viaAux as for
// immediate.
func (s *Session) ping(ctx context.Context, c *conn, viaAux bool) error {
	var hdr pdu.BHS
	ping := pdu.NOPOut{Immediate: true, TTT: pdu.ReservedTag}
	ping.AppendHeader(hdr[:0])
	sl, err := s.immediate(ctx, c, kindNOP, tmfTask{}, &hdr, viaAux)
	if err != nil {
		return err
	}
	s.slots.release(sl)
	return nil
}

// Ping sends a NOP-Out and waits for the target's NOP-In (waiting first
// while the session recovers).
func (s *Session) Ping(ctx context.Context) error {
	c, err := s.waitConn(ctx)
	if err != nil {
		return err
	}
	return s.ping(ctx, c, false)
}

func (s *Session) logout(ctx context.Context, c *conn) error {
	var hdr pdu.BHS
	req := pdu.LogoutRequest{Immediate: true, Reason: pdu.LogoutCloseSession, CID: c.cid}
	req.AppendHeader(hdr[:0])
	sl, err := s.immediate(ctx, c, kindLogout, tmfTask{}, &hdr, false)
	if err != nil {
		return fmt.Errorf("iscsi: logout: %w", err)
	}
	resp := sl.logoutResp
	s.slots.release(sl)
	if resp != pdu.LogoutSuccess {
		return &LogoutError{Response: resp}
	}
	return nil
}

// renegotiate answers a target's parameter renegotiation request (Async
// event 4) with an empty Text Request, continued while the target wants,
// which keeps the current values (RFC 7143 section 11.9.1).
func (s *Session) renegotiate(c *conn) {
	ttt := pdu.ReservedTag
	for range 8 {
		var hdr pdu.BHS
		req := pdu.TextRequest{Immediate: true, Final: true, TTT: ttt}
		req.AppendHeader(hdr[:0])
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.tmfTimeout)
		sl, err := s.immediate(ctx, c, kindText, tmfTask{}, &hdr, false)
		cancel()
		if err != nil {
			s.log.Debug("iscsi: renegotiation failed", "err", err)
			return
		}
		final := sl.textFinal
		ttt = sl.textTTT
		s.slots.release(sl)
		if final || ttt == pdu.ReservedTag {
			return
		}
	}
	c.fail(&ConnectionError{Op: "renegotiation", Err: &ProtocolError{Reason: "Text negotiation does not end"}})
}

// tmf issues a task management request and waits (bounded by the TMF
// timeout) for its response.
func (s *Session) tmf(ctx context.Context, fn pdu.TMFunction, lun uint64, refITT, refCmdSN uint32) error {
	c, err := s.waitConn(ctx)
	if err != nil {
		return err
	}
	return s.tmfOn(ctx, c, fn, lun, refITT, refCmdSN)
}

// tmfOn issues a task management request on connection c.
func (s *Session) tmfOn(ctx context.Context, c *conn, fn pdu.TMFunction, lun uint64, refITT, refCmdSN uint32) error {
	return s.tmfReq(ctx, c, tmfTask{fn: fn, lun: lun, refITT: refITT}, refCmdSN)
}

// tmfKeep is tmfOn for the escalation of a command timeout: no answer
// leaves the connection up (tmfTask.keepConn).
func (s *Session) tmfKeep(ctx context.Context, c *conn, fn pdu.TMFunction, lun uint64, refITT, refCmdSN uint32) error {
	return s.tmfReq(ctx, c, tmfTask{fn: fn, lun: lun, refITT: refITT, keepConn: true}, refCmdSN)
}

func (s *Session) tmfReq(ctx context.Context, c *conn, t tmfTask, refCmdSN uint32) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.tmfTimeout)
	defer cancel()
	fn, lun := t.fn, t.lun
	switch fn {
	case pdu.TMFAbortTask:
		s.stats.abortTasks.Add(1)
	case pdu.TMFLogicalUnitReset:
		s.stats.lunResets.Add(1)
	}
	var hdr pdu.BHS
	req := pdu.TaskMgmtRequest{Immediate: true, Function: fn, LUN: lun, ReferencedTaskTag: t.refITT, RefCmdSN: refCmdSN}
	req.AppendHeader(hdr[:0])
	sl, err := s.immediate(ctx, c, kindTMF, t, &hdr, false)
	if err != nil {
		return fmt.Errorf("iscsi: task management function %v: %w", fn, err)
	}
	resp := sl.tmfResp
	rerr := sl.err
	s.slots.release(sl)
	if rerr != nil {
		return rerr
	}
	if resp != pdu.TMFFunctionComplete {
		return &TMFError{Function: fn, Response: resp}
	}
	s.log.Debug("iscsi: task management done", "function", fn, "lun", lun)
	return nil
}

// LUNReset resets logical unit lun (a LUN number, as ReportLUNs returns).
// Commands of this session in flight on that LUN end with ErrTaskAborted.
func (s *Session) LUNReset(ctx context.Context, lun uint64) error {
	return s.tmf(ctx, pdu.TMFLogicalUnitReset, encodeLUN(lun), pdu.ReservedTag, 0)
}

// AbortTaskSet aborts every task of this session on LUN number lun; they
// end with ErrTaskAborted.
func (s *Session) AbortTaskSet(ctx context.Context, lun uint64) error {
	return s.tmf(ctx, pdu.TMFAbortTaskSet, encodeLUN(lun), pdu.ReservedTag, 0)
}

// TargetWarmReset resets the target (all its LUNs, all sessions). Targets
// may refuse it (tgtd answers "not supported": a *TMFError).
func (s *Session) TargetWarmReset(ctx context.Context) error {
	return s.tmf(ctx, pdu.TMFTargetWarmReset, 0, pdu.ReservedTag, 0)
}
