package iscsitest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/gosan/iscsi/pdu"
)

// Digest names accepted in Config.HeaderDigests / DataDigests.
const (
	DigestNone   = "None"
	DigestCRC32C = "CRC32C"
)

// CHAP algorithm numbers (CHAP_A values).
const (
	CHAPMD5    = 5
	CHAPSHA1   = 6
	CHAPSHA256 = 7
	CHAPSHA3   = 8
)

// Limits that keep a hostile initiator from making the server allocate
// without bound.
const (
	maxTasksPerConn   = 1024
	maxPendingWrite   = 64 << 20 // bytes of write data buffered per connection
	maxLoginPDUs      = 64
	maxRecordsPerConn = 1 << 16
	maxViolations     = 1 << 12
	maxClosedRecords  = 1 << 10
)

// LUN describes one memory-backed logical unit.
type LUN struct {
	Number    uint64 // LUN number (flat/peripheral addressing is decoded)
	Blocks    uint64 // size in logical blocks
	BlockSize int    // 512 or 4096 (0 means 512)
	Serial    string // VPD 0x80 serial; default derived from target and LUN
	// MaxTransferBlocks is VPD 0xB0 MAXIMUM TRANSFER LENGTH (0: none reported).
	MaxTransferBlocks uint32
	// ReadOnly makes writes fail with DATA PROTECT 27/00.
	ReadOnly bool
}

// CHAPConfig is the target's CHAP configuration. User/Secret are what the
// initiator must prove; TargetUser/TargetSecret, if set, are the target's
// own name and secret for mutual CHAP. Algorithms is the accepted CHAP_A
// list in preference order (default SHA-256, SHA-1, MD5).
type CHAPConfig struct {
	User, Secret             string
	TargetUser, TargetSecret string
	Algorithms               []int
}

// String hides the secrets.
func (c CHAPConfig) String() string {
	return fmt.Sprintf("CHAP{User:%q TargetUser:%q Secret:<redacted>}", c.User, c.TargetUser)
}

// Target is one target served by the Server.
type Target struct {
	Name  string // IQN
	Alias string // TargetAlias (declared in login if set)
	LUNs  []LUN
	// ACL lists the initiator names allowed; empty allows everyone.
	ACL []string
	// CHAP, if non-nil, requires CHAP authentication for this target.
	CHAP *CHAPConfig
}

// Negotiation holds the values the target answers with in login. Zero
// values mean the defaults noted, which are tgtd's.
type Negotiation struct {
	// MaxRecvDataSegmentLength is the target's receive limit (default
	// 8192). It is declared only if DeclareMaxRecvDataSegmentLength is
	// set (tgtd omits it by default).
	MaxRecvDataSegmentLength        int
	DeclareMaxRecvDataSegmentLength bool
	FirstBurstLength                int   // default 65536
	MaxBurstLength                  int   // default 262144
	MaxOutstandingR2T               int   // default 1
	InitialR2T                      *bool // default Yes
	ImmediateData                   *bool // default Yes
	// HeaderDigests and DataDigests are the digests the target accepts
	// (default both None and CRC32C).
	HeaderDigests, DataDigests []string
	// CmdWindow is MaxCmdSN-ExpCmdSN+1 (default 128).
	CmdWindow int
	// PortalGroupTag is the TargetPortalGroupTag (default 1).
	PortalGroupTag int
}

// Config configures a Server.
type Config struct {
	Targets     []Target
	Negotiation Negotiation
	// NoUnitAttention turns off the UNIT ATTENTION 29/00 that every new
	// session gets on its first command to each LUN (tgtd sends one, LIO
	// does not).
	NoUnitAttention bool
	// AcceptNonImmediateLogin accepts Login Requests without the
	// Immediate bit (LIO does); by default they fail with status 0x0200
	// like tgtd.
	AcceptNonImmediateLogin bool
	// DiscoveryCHAP, if set, requires CHAP for discovery sessions.
	DiscoveryCHAP *CHAPConfig
	// Addr to listen on; default "127.0.0.1:0".
	Addr string
	// Logger for debug output; nil discards.
	Logger *slog.Logger
}

func boolPtr(b bool) *bool { return &b }

// Bool returns a pointer to b, for the Negotiation fields.
func Bool(b bool) *bool { return boolPtr(b) }

func (n *Negotiation) fill() {
	if n.MaxRecvDataSegmentLength <= 0 {
		n.MaxRecvDataSegmentLength = 8192
	}
	if n.FirstBurstLength <= 0 {
		n.FirstBurstLength = 65536
	}
	if n.MaxBurstLength <= 0 {
		n.MaxBurstLength = 262144
	}
	if n.MaxOutstandingR2T <= 0 {
		n.MaxOutstandingR2T = 1
	}
	if n.InitialR2T == nil {
		n.InitialR2T = boolPtr(true)
	}
	if n.ImmediateData == nil {
		n.ImmediateData = boolPtr(true)
	}
	if len(n.HeaderDigests) == 0 {
		n.HeaderDigests = []string{DigestNone, DigestCRC32C}
	}
	if len(n.DataDigests) == 0 {
		n.DataDigests = []string{DigestNone, DigestCRC32C}
	}
	if n.CmdWindow <= 0 {
		n.CmdWindow = 128
	}
	if n.PortalGroupTag <= 0 {
		n.PortalGroupTag = 1
	}
}

// memLUN is a LUN's state.
type memLUN struct {
	cfg  LUN
	bs   int
	mu   sync.RWMutex
	data []byte
}

type target struct {
	cfg  Target
	luns map[uint64]*memLUN
	acl  map[string]bool
}

func (t *target) allowed(initiator string) bool {
	return len(t.acl) == 0 || t.acl[initiator]
}

// sessionKey identifies a session for reinstatement.
type sessionKey struct {
	initiator string
	isid      [6]byte
	target    string
}

type session struct {
	key  sessionKey
	tsih uint16
	conn *conn
	// uaPending holds LUNs that still owe a UNIT ATTENTION.
	uaPending map[uint64]bool
}

// Server is an in-process iSCSI target.
type Server struct {
	cfg     Config
	log     *slog.Logger
	targets map[string]*target
	order   []*target
	ln      net.Listener
	faults  *Faults

	mu       sync.Mutex
	conns    map[int]*conn
	closed   []*ConnRecord // records of closed connections
	sessions map[sessionKey]*session
	nextTSIH uint16
	nextConn int
	done     bool

	wg sync.WaitGroup
}

// NewServer validates cfg, starts listening and serving, and returns the
// server. Close it when done.
func NewServer(cfg Config) (*Server, error) {
	cfg.Negotiation.fill()
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		targets:  map[string]*target{},
		conns:    map[int]*conn{},
		sessions: map[sessionKey]*session{},
		faults:   newFaults(),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, tc := range cfg.Targets {
		if tc.Name == "" {
			return nil, errors.New("iscsitest: target without a name")
		}
		if _, dup := s.targets[tc.Name]; dup {
			return nil, fmt.Errorf("iscsitest: duplicate target %q", tc.Name)
		}
		t := &target{cfg: tc, luns: map[uint64]*memLUN{}, acl: map[string]bool{}}
		for _, a := range tc.ACL {
			t.acl[a] = true
		}
		for _, lc := range tc.LUNs {
			bs := lc.BlockSize
			if bs == 0 {
				bs = 512
			}
			if bs != 512 && bs != 4096 {
				return nil, fmt.Errorf("iscsitest: target %q LUN %d: block size %d, want 512 or 4096", tc.Name, lc.Number, bs)
			}
			if lc.Blocks == 0 || lc.Blocks*uint64(bs) > 1<<32 {
				return nil, fmt.Errorf("iscsitest: target %q LUN %d: %d blocks (want 1..4 GiB of memory)", tc.Name, lc.Number, lc.Blocks)
			}
			if _, dup := t.luns[lc.Number]; dup {
				return nil, fmt.Errorf("iscsitest: target %q: duplicate LUN %d", tc.Name, lc.Number)
			}
			if lc.Serial == "" {
				lc.Serial = fmt.Sprintf("iscsitest%08x%02d", fnv32(tc.Name), lc.Number)
			}
			t.luns[lc.Number] = &memLUN{cfg: lc, bs: bs, data: make([]byte, lc.Blocks*uint64(bs))}
		}
		s.targets[tc.Name] = t
		s.order = append(s.order, t)
	}
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("iscsitest: listen: %w", err)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// NewTestServer is NewServer that fails tb on error and closes the server
// in tb.Cleanup.
func NewTestServer(tb interface {
	Helper()
	Fatalf(string, ...any)
	Cleanup(func())
}, cfg Config) *Server {
	tb.Helper()
	s, err := NewServer(cfg)
	if err != nil {
		tb.Fatalf("iscsitest: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// Addr returns the listening address, "127.0.0.1:port".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Port returns the listening TCP port.
func (s *Server) Port() int {
	_, p, _ := net.SplitHostPort(s.Addr())
	n, _ := strconv.Atoi(p)
	return n
}

// Faults returns the server's fault-injection controls.
func (s *Server) Faults() *Faults { return s.faults }

// Close stops listening, closes every connection and waits for all the
// server's goroutines to end.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return nil
	}
	s.done = true
	err := s.ln.Close()
	for _, c := range s.conns {
		c.close()
	}
	s.mu.Unlock()
	s.faults.Release()
	s.wg.Wait()
	return err
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		if !s.start(nc) {
			return
		}
	}
}

// start registers nc and serves it on a new goroutine; false if the
// server is closed.
func (s *Server) start(nc net.Conn) bool {
	c, ok := s.add(nc)
	if !ok {
		return false
	}
	go s.run(c)
	return true
}

func (s *Server) add(nc net.Conn) (*conn, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		nc.Close()
		return nil, false
	}
	s.nextConn++
	c := newConn(s, nc, s.nextConn)
	s.conns[c.id] = c
	s.wg.Add(1)
	return c, true
}

func (s *Server) run(c *conn) {
	defer s.wg.Done()
	c.serve()
	s.mu.Lock()
	delete(s.conns, c.id)
	if len(s.closed) >= maxClosedRecords {
		s.closed = append(s.closed[:0], s.closed[maxClosedRecords/2:]...)
	}
	s.closed = append(s.closed, c.snapshot())
	if c.sess != nil && c.sess.conn == c {
		c.sess.conn = nil
	}
	s.mu.Unlock()
}

// ServeConn serves one already-connected net.Conn (a net.Pipe end, a
// proxy) as if accepted on the listener, and returns when it is closed.
func (s *Server) ServeConn(nc net.Conn) {
	if c, ok := s.add(nc); ok {
		s.run(c)
	}
}

func (s *Server) lun(targetName string, n uint64) (*memLUN, error) {
	t := s.targets[targetName]
	if t == nil {
		return nil, fmt.Errorf("iscsitest: no target %q", targetName)
	}
	l := t.luns[n]
	if l == nil {
		return nil, fmt.Errorf("iscsitest: target %q has no LUN %d", targetName, n)
	}
	return l, nil
}

// LUNData returns a copy of a LUN's contents.
func (s *Server) LUNData(targetName string, n uint64) ([]byte, error) {
	l, err := s.lun(targetName, n)
	if err != nil {
		return nil, err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	return append([]byte(nil), l.data...), nil
}

// WriteLUN copies p into a LUN at byte offset off (to preload data).
func (s *Server) WriteLUN(targetName string, n uint64, off int64, p []byte) error {
	l, err := s.lun(targetName, n)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(l.data)) {
		return fmt.Errorf("iscsitest: write of %d bytes at %d outside LUN of %d bytes", len(p), off, len(l.data))
	}
	copy(l.data[off:], p)
	return nil
}

// Records returns a snapshot of every connection's record, closed ones
// first (the latest 1024 at most), then live ones, each in order of
// acceptance.
func (s *Server) Records() []ConnRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ConnRecord, 0, len(s.closed)+len(s.conns))
	for _, r := range s.closed {
		out = append(out, *r)
	}
	for id := 1; id <= s.nextConn; id++ {
		if c := s.conns[id]; c != nil {
			out = append(out, *c.snapshot())
		}
	}
	return out
}

// Violations returns every protocol violation recorded on any connection.
func (s *Server) Violations() []Violation {
	var out []Violation
	for _, r := range s.Records() {
		out = append(out, r.Violations...)
	}
	return out
}

// DropConnections closes every live connection now.
func (s *Server) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.close()
	}
}

// liveConns returns the connections in full feature phase.
func (s *Server) liveConns() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*conn
	for id := 1; id <= s.nextConn; id++ {
		if c := s.conns[id]; c != nil && c.ffp.Load() {
			out = append(out, c)
		}
	}
	return out
}

// WaitConns waits until n connections are in full feature phase.
func (s *Server) WaitConns(ctx context.Context, n int) error {
	for {
		if len(s.liveConns()) >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// SendAsync sends an Asynchronous Message to every connection in full
// feature phase (normal sessions). For AsyncLogoutRequest Parameter3 is
// the time to logout in seconds; for AsyncDropConnection and
// AsyncDropAllConnections Parameter2/3 are Time2Wait/Time2Retain.
func (s *Server) SendAsync(ev pdu.AsyncEvent, p1, p2, p3 uint16) int {
	n := 0
	for _, c := range s.liveConns() {
		if c.discovery {
			continue
		}
		c.sendAsync(ev, p1, p2, p3)
		n++
	}
	return n
}

// SetCmdWindow changes the command window (MaxCmdSN-ExpCmdSN+1) of every
// live and future connection; 0 closes it. The new MaxCmdSN is announced
// to live connections with an unsolicited NOP-In.
func (s *Server) SetCmdWindow(n int) {
	if n < 0 {
		n = 0
	}
	s.faults.setWindow(n)
	for _, c := range s.liveConns() {
		c.announceWindow()
	}
}

func (s *Server) window() int {
	if w, ok := s.faults.windowOverride(); ok {
		return w
	}
	return s.cfg.Negotiation.CmdWindow
}

// register records a new session or reinstates an existing one. It
// returns the TSIH.
func (s *Server) register(c *conn, key sessionKey, tsih uint16) (*session, pdu.LoginStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if tsih != 0 {
		for _, ss := range s.sessions {
			if ss.tsih == tsih && ss.key == key {
				if old := ss.conn; old != nil && old != c {
					old.close()
				}
				ss.conn = c
				return ss, pdu.LoginSuccess
			}
		}
		return nil, pdu.LoginSessionDoesNotExist
	}
	if old := s.sessions[key]; old != nil {
		// Session reinstatement: the old session's connection goes.
		if old.conn != nil && old.conn != c {
			old.conn.close()
		}
		delete(s.sessions, key)
	}
	s.nextTSIH++
	if s.nextTSIH == 0 {
		s.nextTSIH = 1
	}
	ss := &session{key: key, tsih: s.nextTSIH, conn: c, uaPending: map[uint64]bool{}}
	if !s.cfg.NoUnitAttention && key.target != "" {
		for n := range s.targets[key.target].luns {
			ss.uaPending[n] = true
		}
	}
	s.sessions[key] = ss
	return ss, pdu.LoginSuccess
}

// takeUA reports whether LUN n of the session still owes a UNIT ATTENTION
// and clears it.
func (s *Server) takeUA(ss *session, n uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss.uaPending[n] {
		delete(ss.uaPending, n)
		return true
	}
	return false
}

// unitAttentionAll arms a UNIT ATTENTION on the LUNs (all if lun is nil)
// of every other session of a target, after a reset.
func (s *Server) unitAttentionAll(targetName string, lun *uint64, except *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.NoUnitAttention {
		return
	}
	for _, ss := range s.sessions {
		if ss.key.target != targetName || ss == except {
			continue
		}
		for n := range s.targets[targetName].luns {
			if lun == nil || *lun == n {
				ss.uaPending[n] = true
			}
		}
	}
}
