//go:build linux

package iscsinl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults for Options.
const (
	// DefaultRecvBuffer is the initial receive buffer: a RECV_PDU carries
	// the 56-byte struct, the BHS and up to MaxRecvDataSegmentLength bytes
	// (256 KiB is the largest value iscsid offers), plus headroom.
	DefaultRecvBuffer = 256<<10 + 64<<10
	// MaxDatagram bounds the receive buffer growth (a 24-bit data segment
	// plus headers); larger datagrams are dropped and logged.
	MaxDatagram = 1<<24 + 64<<10
	// DefaultSocketBuffer is the SO_RCVBUF requested for the socket.
	DefaultSocketBuffer = 4 << 20
	// DefaultRequestTimeout applies to requests whose context has no deadline.
	DefaultRequestTimeout = 30 * time.Second
	// DefaultEventBuffer is the capacity of the Events channel.
	DefaultEventBuffer = 64
	// DefaultPDUBuffer is the capacity of each per-connection PDU queue.
	DefaultPDUBuffer = 16
	// maxStale bounds the list of abandoned requests whose replies are skipped.
	maxStale = 64
)

// Option configures Dial.
type Option func(*options)

type options struct {
	logger         *slog.Logger
	transport      string
	handle         uint64
	sysfsRoot      string
	procNetNetlink string
	foreign        func(Event)
	eventBuffer    int
	pduBuffer      int
	recvBuffer     int
	socketBuffer   int
	timeout        time.Duration
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithTransport names the iSCSI transport whose handle requests carry
// (default "tcp", i.e. iscsi_tcp).
func WithTransport(name string) Option { return func(o *options) { o.transport = name } }

// WithTransportHandle sets the transport handle directly instead of reading
// /sys/class/iscsi_transport/<name>/handle.
func WithTransportHandle(h uint64) Option { return func(o *options) { o.handle = h } }

// WithSysfsRoot changes where /sys is looked up (tests).
func WithSysfsRoot(dir string) Option { return func(o *options) { o.sysfsRoot = dir } }

// WithForeignEventHandler receives events for sessions this Conn does not
// own and host-level events (without it they are dropped with a debug log).
// It runs on the receive goroutine: it must not block and must not call
// request methods of the Conn (their replies are read by that goroutine).
func WithForeignEventHandler(fn func(Event)) Option { return func(o *options) { o.foreign = fn } }

// WithEventBuffer sets the capacity of the Events channel.
func WithEventBuffer(n int) Option { return func(o *options) { o.eventBuffer = n } }

// WithPDUBuffer sets the capacity of each per-connection RECV_PDU queue.
func WithPDUBuffer(n int) Option { return func(o *options) { o.pduBuffer = n } }

// WithRecvBuffer sets the initial receive buffer size in bytes.
func WithRecvBuffer(n int) Option { return func(o *options) { o.recvBuffer = n } }

// WithRequestTimeout sets the timeout for requests whose context has no
// deadline (0 disables it).
func WithRequestTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

func defaultOptions() options {
	return options{
		transport:      "tcp",
		sysfsRoot:      "/sys",
		procNetNetlink: "/proc/net/netlink",
		eventBuffer:    DefaultEventBuffer,
		pduBuffer:      DefaultPDUBuffer,
		recvBuffer:     DefaultRecvBuffer,
		socketBuffer:   DefaultSocketBuffer,
		timeout:        DefaultRequestTimeout,
	}
}

// Conn is a NETLINK_ISCSI socket bound to the iscsid multicast group, with
// one receive goroutine that routes replies to the request waiting for them
// and events to subscribers.
//
// Requests are serialised: one is in flight at a time. The kernel's reply
// carries nlmsg_seq 0 and nlmsg_pid 0 (iscsi_if_send_reply), so it cannot be
// matched by sequence number; it carries the request's nlmsg_type, which is
// what iscsid matches on too. The kernel processes a request synchronously
// inside sendmsg (under its rx_queue_mutex) and queues the reply before
// sendmsg returns, so with one request in flight the next reply of that type
// on the socket is its answer. When a caller gives up waiting, the request
// type is remembered and its late reply skipped.
//
// Only one process per host should drive iSCSI sessions: the kernel
// multicasts RECV_PDU, CONN_ERROR and session events to every socket in the
// group, and a running iscsid acts on sessions it finds in sysfs. Dial logs
// a warning when another NETLINK_ISCSI socket is subscribed to the group.
type Conn struct {
	log     *slog.Logger
	f       *os.File
	rc      syscall.RawConn
	to      unix.Sockaddr
	portID  uint32
	handle  uint64
	timeout time.Duration
	foreign func(Event)

	recvBuffer int
	pduBuffer  int

	sem chan struct{} // one request in flight
	seq atomic.Uint32

	mu      sync.Mutex
	pending *pendingReq
	stale   []MsgType
	owned   map[uint32]struct{}
	queues  map[connKey]*pduQueue
	closed  bool

	events    chan Event
	dead      chan struct{} // closed when the receive goroutine exits
	closeOnce sync.Once
	wg        sync.WaitGroup
	lost      atomic.Uint64
}

type connKey struct{ sid, cid uint32 }

type pendingReq struct {
	typ   MsgType
	match func(*Message) bool
	ch    chan *Message // capacity 1
}

type pduQueue struct {
	ch   chan []byte
	wake chan struct{} // capacity 1
	err  error         // guarded by Conn.mu; sticky until RecvPDU returns it
}

// Dial opens a NETLINK_ISCSI socket, binds it with nl_pid = getpid() (the
// kernel records it as the session "creator"; when the address is taken,
// e.g. by a second Conn in this process, it falls back to 0 so the kernel
// assigns one) and nl_groups = ISCSI_NL_GRP_ISCSID, reads the transport
// handle and starts the receive goroutine.
func Dial(opts ...Option) (*Conn, error) {
	o := defaultOptions()
	for _, fn := range opts {
		fn(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ISCSI)
	if err != nil {
		if errors.Is(err, unix.EPROTONOSUPPORT) {
			return nil, fmt.Errorf("%w (socket: %w)", ErrKernelUnsupported, err)
		}
		return nil, fmt.Errorf("iscsinl: socket(AF_NETLINK, NETLINK_ISCSI): %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	if o.socketBuffer > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, o.socketBuffer); err != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, o.socketBuffer)
		}
	}
	sa := &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: uint32(os.Getpid()), Groups: GroupISCSID}
	if err := unix.Bind(fd, sa); err != nil {
		if !errors.Is(err, unix.EADDRINUSE) {
			return nil, fmt.Errorf("iscsinl: bind NETLINK_ISCSI: %w", err)
		}
		// Another NETLINK_ISCSI socket of this process holds portid=pid.
		o.logger.Debug("iscsinl: nl_pid=getpid() in use, letting the kernel assign one", "pid", sa.Pid)
		sa.Pid = 0
		if err := unix.Bind(fd, sa); err != nil {
			return nil, fmt.Errorf("iscsinl: bind NETLINK_ISCSI: %w", err)
		}
	}
	local, err := unix.Getsockname(fd)
	if err != nil {
		return nil, fmt.Errorf("iscsinl: getsockname: %w", err)
	}
	nl, isNL := local.(*unix.SockaddrNetlink)
	if !isNL {
		return nil, fmt.Errorf("iscsinl: getsockname returned %T", local)
	}
	if o.handle == 0 {
		h, err := transportHandle(o.sysfsRoot, o.transport)
		if err != nil {
			return nil, err
		}
		o.handle = h
	}
	if others, err := otherListeners(o.procNetNetlink, nl.Pid); err == nil && len(others) > 0 {
		o.logger.Warn("iscsinl: another NETLINK_ISCSI socket listens to the iscsid group (iscsid running?); only one process per host should manage iSCSI sessions",
			"portids", others)
	}
	c, err := newConn(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}, nl.Pid, o)
	if err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

// newConn wraps a non-blocking datagram socket. to is the destination of
// requests (nil for a connected socket, as in tests).
func newConn(fd int, to unix.Sockaddr, portID uint32, o options) (*Conn, error) {
	if o.logger == nil {
		o.logger = slog.Default()
	}
	if o.recvBuffer < UEventSize+NLMsgHdrLen {
		o.recvBuffer = DefaultRecvBuffer
	}
	if o.eventBuffer < 1 {
		o.eventBuffer = 1
	}
	if o.pduBuffer < 1 {
		o.pduBuffer = 1
	}
	f := os.NewFile(uintptr(fd), "netlink-iscsi")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("iscsinl: %w", err)
	}
	c := &Conn{
		log:        o.logger,
		f:          f,
		rc:         rc,
		to:         to,
		portID:     portID,
		handle:     o.handle,
		timeout:    o.timeout,
		foreign:    o.foreign,
		recvBuffer: o.recvBuffer,
		pduBuffer:  o.pduBuffer,
		sem:        make(chan struct{}, 1),
		owned:      make(map[uint32]struct{}),
		queues:     make(map[connKey]*pduQueue),
		events:     make(chan Event, o.eventBuffer),
		dead:       make(chan struct{}),
	}
	c.wg.Add(1)
	go c.receive()
	return c, nil
}

// PortID is the netlink port id the socket is bound to.
func (c *Conn) PortID() uint32 { return c.portID }

// TransportHandle is the transport handle carried by every request.
func (c *Conn) TransportHandle() uint64 { return c.handle }

// Events returns the channel of events for sessions this Conn owns
// (CONN_ERROR, UNBIND_SESSION, DESTROY_SESSION, CONN_LOGIN_STATE, and
// RECV_PDU for connections nobody waits on is NOT sent here: those are
// queued for RecvPDU). When the channel is full, events are dropped and
// logged. It is closed by Close.
func (c *Conn) Events() <-chan Event { return c.events }

// LostMessages counts kernel messages dropped (socket overruns, full queues).
func (c *Conn) LostMessages() uint64 { return c.lost.Load() }

// Adopt marks sid as owned: its events go to Events and its RECV_PDUs are
// queued for RecvPDU. CreateSession adopts the new session automatically;
// use Adopt to take over a session after a restart.
func (c *Conn) Adopt(sid uint32) {
	c.mu.Lock()
	c.owned[sid] = struct{}{}
	c.mu.Unlock()
}

// Release forgets sid and its PDU queues.
func (c *Conn) Release(sid uint32) {
	c.mu.Lock()
	c.releaseLocked(sid)
	c.mu.Unlock()
}

func (c *Conn) releaseLocked(sid uint32) {
	delete(c.owned, sid)
	for k := range c.queues {
		if k.sid == sid {
			delete(c.queues, k)
		}
	}
}

// Owns reports whether sid is owned by this Conn.
func (c *Conn) Owns(sid uint32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.owned[sid]
	return ok
}

// Close stops the receive goroutine, fails waiting requests with ErrClosed,
// closes the socket and the Events channel. It is safe to call twice.
func (c *Conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		err = c.f.Close()
		c.wg.Wait()
		close(c.events)
	})
	return err
}

// --- sending ---------------------------------------------------------------

func (c *Conn) send(b []byte) error {
	var operr error
	err := c.rc.Write(func(fd uintptr) bool {
		operr = unix.Sendto(int(fd), b, 0, c.to)
		return operr != unix.EAGAIN
	})
	if err != nil {
		if errors.Is(err, os.ErrClosed) {
			return ErrClosed
		}
		return err
	}
	return operr
}

func mapSendErr(t MsgType, err error) error {
	switch {
	case errors.Is(err, ErrClosed):
		return ErrClosed
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("%w (%v: sendmsg: %v)", ErrPermission, t, err)
	case errors.Is(err, unix.ECONNREFUSED):
		return fmt.Errorf("%w (%v: sendmsg: %v)", ErrNetNamespace, t, err)
	}
	return fmt.Errorf("iscsinl: %v: sendmsg: %w", t, err)
}

// Do sends one request and waits for its reply. A reply of type IF_ERROR
// is returned as a *KernelError together with the message. Do does not look
// at r.retcode; the typed methods (CreateSession, BindConn, ...) do.
//
// ctx bounds waiting for the turn to send and for the reply; the send
// itself runs in the caller's goroutine and may block while the kernel
// serves another process's request.
func (c *Conn) Do(ctx context.Context, r Request) (*Message, error) {
	if c.timeout > 0 {
		if _, has := ctx.Deadline(); !has {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, c.timeout)
			defer cancel()
		}
	}
	typ := r.Type()
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("iscsinl: %v: waiting for the previous request: %w", typ, ctx.Err())
	case <-c.dead:
		return nil, ErrClosed
	}
	defer func() { <-c.sem }()

	b, err := AppendRequest(nil, r, c.handle, c.seq.Add(1), c.portID)
	if err != nil {
		return nil, err
	}
	p := &pendingReq{typ: typ, match: replyMatcher(r), ch: make(chan *Message, 1)}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	c.pending = p
	c.mu.Unlock()
	if c.log.Enabled(ctx, slog.LevelDebug) {
		c.log.Debug("iscsinl: request", "type", typ, "bytes", len(b))
	}
	if err := c.send(b); err != nil {
		c.mu.Lock()
		if c.pending == p {
			c.pending = nil
		}
		c.mu.Unlock()
		return nil, mapSendErr(typ, err)
	}
	select {
	case m := <-p.ch:
		return m, m.Err()
	case <-c.dead:
		return nil, ErrClosed
	case <-ctx.Done():
	}
	c.mu.Lock()
	if c.pending == p {
		c.pending = nil
		if p.match == nil { // unicast reply still owed: skip it when it comes
			if len(c.stale) >= maxStale {
				c.stale = c.stale[1:]
			}
			c.stale = append(c.stale, typ)
		}
	}
	c.mu.Unlock()
	select {
	case m := <-p.ch: // delivered while we gave up
		return m, m.Err()
	default:
	}
	return nil, fmt.Errorf("iscsinl: %v: waiting for the kernel's reply: %w", typ, ctx.Err())
}

// replyMatcher returns a filter for replies that arrive by multicast (and
// may therefore answer another process's request), nil for unicast ones.
func replyMatcher(r Request) func(*Message) bool {
	if gs, ok := r.(GetStats); ok {
		return func(m *Message) bool {
			if m.Header.Type != 0 { // unicast IF_ERROR
				return true
			}
			return ne.Uint32(m.U[0:]) == gs.SID && ne.Uint32(m.U[4:]) == gs.CID
		}
	}
	return nil
}

// --- receiving -------------------------------------------------------------

func (c *Conn) recvmsg(buf []byte, flags int) (n, rflags int, err error) {
	var operr error
	err = c.rc.Read(func(fd uintptr) bool {
		n, _, rflags, _, operr = unix.Recvmsg(int(fd), buf, nil, flags|unix.MSG_DONTWAIT)
		return operr != unix.EAGAIN
	})
	if err != nil {
		return 0, 0, err
	}
	return n, rflags, operr
}

// isClosed reports whether Close has begun; Close sets the flag before it
// closes the descriptor, so any receive error seen after that is the close.
func (c *Conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// isClosedErr matches the errors a read on a closed descriptor gives: the
// file already closed (os.ErrClosed), closed while the read was parked in the
// poller ("use of closed file", which matches neither os.ErrClosed nor
// net.ErrClosed), or EBADF from the raw syscall.
func isClosedErr(err error) bool {
	return errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, unix.EBADF) || strings.Contains(err.Error(), "use of closed")
}

func (c *Conn) receive() {
	defer c.wg.Done()
	defer close(c.dead)
	buf := make([]byte, c.recvBuffer)
	var small [NLMsgHdrLen]byte
	for {
		// Peek with MSG_TRUNC for the real datagram size, then read it whole.
		n, _, err := c.recvmsg(buf, unix.MSG_PEEK|unix.MSG_TRUNC)
		if err != nil {
			switch {
			case c.isClosed() || isClosedErr(err):
				// Close closed the descriptor under the pending read: the
				// poller reports "use of closed file" (poll.ErrFileClosing,
				// which is not os.ErrClosed). A normal stop.
				return
			case errors.Is(err, unix.EINTR):
				continue
			case errors.Is(err, unix.ENOBUFS):
				c.overrun()
				continue
			}
			c.log.Error("iscsinl: receive failed, stopping", "err", err)
			return
		}
		if n == 0 { // EOF (only on the socketpair used in tests)
			return
		}
		if n > len(buf) {
			if n > MaxDatagram {
				c.log.Warn("iscsinl: dropping oversized netlink datagram", "bytes", n, "max", MaxDatagram)
				c.lost.Add(1)
				_, _, _ = c.recvmsg(small[:], 0)
				continue
			}
			buf = make([]byte, n)
		}
		n, rflags, err := c.recvmsg(buf, 0)
		if err != nil {
			if c.isClosed() || isClosedErr(err) {
				return
			}
			if errors.Is(err, unix.ENOBUFS) {
				c.overrun()
			}
			continue
		}
		if rflags&unix.MSG_TRUNC != 0 {
			c.log.Warn("iscsinl: truncated netlink datagram dropped", "bytes", n)
			c.lost.Add(1)
			continue
		}
		c.dispatch(buf[:n])
	}
}

// overrun handles ENOBUFS: messages were dropped by the kernel. Waiters on
// PDU queues are told, since the PDU they wait for may be among them.
func (c *Conn) overrun() {
	c.lost.Add(1)
	c.log.Warn("iscsinl: netlink receive queue overrun, kernel messages lost")
	c.mu.Lock()
	for _, q := range c.queues {
		q.err = ErrEventsLost
		q.poke()
	}
	c.mu.Unlock()
}

func (q *pduQueue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (c *Conn) dispatch(b []byte) {
	msgs, err := ParseMessages(b)
	if err != nil {
		c.log.Warn("iscsinl: malformed netlink message from the kernel", "err", err)
	}
	for i := range msgs {
		m := &msgs[i]
		switch {
		case m.IsReply():
			c.deliverReply(m)
		case m.IsControl():
			if m.Header.Type == nlmsgOverrun {
				c.overrun()
			}
		default:
			c.deliverEvent(m)
		}
	}
}

func cloneMessage(m *Message) *Message {
	cp := *m
	cp.Payload = append([]byte(nil), m.Payload...)
	return &cp
}

func (c *Conn) deliverReply(m *Message) {
	typ := m.ReplyTo()
	c.mu.Lock()
	if m.Header.Type != 0 && len(c.stale) > 0 {
		for i, t := range c.stale {
			if t == typ {
				c.stale = c.stale[i+1:]
				c.mu.Unlock()
				c.log.Debug("iscsinl: skipping late reply of an abandoned request", "type", typ)
				return
			}
		}
		c.stale = nil // those replies were lost
	}
	p := c.pending
	if p == nil || p.typ != typ || (p.match != nil && !p.match(m)) {
		c.mu.Unlock()
		if c.log.Enabled(context.Background(), slog.LevelDebug) {
			c.log.Debug("iscsinl: reply nobody waits for", "msg", m.String())
		}
		return
	}
	c.pending = nil
	c.mu.Unlock()
	p.ch <- cloneMessage(m)
}

func (c *Conn) deliverEvent(m *Message) {
	ev, err := m.Event()
	if err != nil {
		c.log.Warn("iscsinl: malformed event from the kernel", "err", err)
		return
	}
	sid, hasSID := ev.SessionID()
	c.mu.Lock()
	_, owned := c.owned[sid]
	owned = owned && hasSID
	if !owned {
		c.mu.Unlock()
		c.deliverForeign(ev)
		return
	}
	switch e := ev.(type) {
	case *RecvPDUEvent:
		q := c.queueLocked(e.SID, e.CID)
		pdu := append([]byte(nil), e.PDU...)
		select {
		case q.ch <- pdu:
		default:
			q.err = ErrEventsLost
			q.poke()
			c.lost.Add(1)
			c.log.Warn("iscsinl: RECV_PDU queue full, PDU dropped", "sid", e.SID, "cid", e.CID)
		}
		c.mu.Unlock()
		return
	case *ConnErrorEvent:
		if q, ok := c.queues[connKey{e.SID, e.CID}]; ok {
			q.err = &ConnError{SID: e.SID, CID: e.CID, Code: e.Error}
			q.poke()
		}
	case *DestroySessionEvent:
		c.releaseLocked(e.SID)
	}
	c.mu.Unlock()
	select {
	case c.events <- ev:
	default:
		c.lost.Add(1)
		c.log.Warn("iscsinl: Events channel full, event dropped", "type", ev.EventType(), "sid", sid)
	}
}

func (c *Conn) deliverForeign(ev Event) {
	if c.foreign != nil {
		if e, ok := ev.(*RecvPDUEvent); ok {
			cp := *e
			cp.PDU = append([]byte(nil), e.PDU...)
			ev = &cp
		}
		c.foreign(ev)
		return
	}
	if c.log.Enabled(context.Background(), slog.LevelDebug) {
		sid, _ := ev.SessionID()
		c.log.Debug("iscsinl: dropping event for a session this process does not own", "type", ev.EventType(), "sid", sid)
	}
}

// queueLocked returns the PDU queue of (sid, cid), creating it. c.mu held.
func (c *Conn) queueLocked(sid, cid uint32) *pduQueue {
	k := connKey{sid, cid}
	q, ok := c.queues[k]
	if !ok {
		q = &pduQueue{ch: make(chan []byte, c.pduBuffer), wake: make(chan struct{}, 1)}
		c.queues[k] = q
	}
	return q
}

// RecvPDU waits for the next PDU the kernel passes up (ISCSI_KEVENT_RECV_PDU)
// for connection (sid, cid) and returns it: BHS + data segment. The session
// must be owned (CreateSession or Adopt). A CONN_ERROR for the connection
// ends the wait with a *ConnError; lost messages with ErrEventsLost.
func (c *Conn) RecvPDU(ctx context.Context, sid, cid uint32) ([]byte, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if _, ok := c.owned[sid]; !ok {
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: sid %d", ErrNotOwned, sid)
	}
	q := c.queueLocked(sid, cid)
	c.mu.Unlock()
	for {
		select {
		case p := <-q.ch:
			return p, nil
		default:
		}
		c.mu.Lock()
		err := q.err
		q.err = nil
		c.mu.Unlock()
		if err != nil {
			return nil, err
		}
		select {
		case p := <-q.ch:
			return p, nil
		case <-q.wake:
		case <-ctx.Done():
			return nil, fmt.Errorf("iscsinl: waiting for a PDU on %d:%d: %w", sid, cid, ctx.Err())
		case <-c.dead:
			return nil, ErrClosed
		}
	}
}
