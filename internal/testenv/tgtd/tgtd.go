//go:build linux

// Package tgtd is the integration-test harness around tgtd, the userspace
// iSCSI target of the Debian package tgt.
//
// Start (for tests) and StartServer (for programs such as the benchmark
// script and the VM tests) launch a private tgtd in the foreground on a free
// loopback TCP port with its own control number (tgtd -C N), wait until the
// portal accepts TCP connections, and stop it for sure afterwards: a clean
// tgtadm shutdown, SIGKILL when that does not finish within 3 s, and always
// a reaped process. The child also gets PR_SET_PDEATHSIG=SIGKILL, so a test
// binary that dies (panic, os.Exit, timeout) does not leave tgtd behind.
//
// The Server methods mirror tgtadm (NewTarget, AddLUN, BindAddress,
// NewAccount, SetParam, DeleteConnection, ...). Every configuration command
// is kept in a replay log so Restart brings tgtd back after Kill on the same
// port and control number with the same targets. StartInNetns runs tgtd in a
// fresh network namespace behind a veth pair so tests can cut the link.
//
// Facts about tgtd this harness relies on (measured, see
// /work/shared/reference/tgtd.md): tgtd ignores SIGTERM; when its TCP port
// is taken it logs "failed to create/bind to portal" and keeps running with
// nothing listening; a control number in use makes it exit with "another
// tgtd is using ...lock"; several --iscsi options are not cumulative (the
// last wins) but one option takes a list: portal=A,portal=B,nop_interval=S.
package tgtd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// InstallHint is part of every error about missing tools.
const InstallHint = "install Debian package tgt (make deps)"

// Control numbers the harness picks from: tgtd accepts -C 0..32767; the
// upper half is left to us. The span is sized so that the network-namespace
// subnet (one /30 of 10.200.0.0/16 per control number) is unique per server.
const (
	ctrlBase = 16384
	ctrlSpan = 16384
)

// Log markers tgtd prints that the harness branches on.
const (
	msgBindFailed = "failed to create/bind"
	msgCtrlInUse  = "another tgtd is using"
)

// Default timings.
const (
	defaultStartTimeout = 10 * time.Second
	stopWait            = 3 * time.Second
	adminTimeout        = 10 * time.Second
	stopAdminTimeout    = 2 * time.Second
	maxStartAttempts    = 20
)

// ErrNotInstalled is returned (wrapped) when tgtd, tgtadm or ip is missing.
var ErrNotInstalled = errors.New("tgtd harness: required tool not installed")

// ErrNotRunning is returned by operations that need a live tgtd process.
var ErrNotRunning = errors.New("tgtd is not running")

// Options configures a Server. The zero value is a usable default: one
// portal on 127.0.0.1 with a free port, a free control number, no NOP-In.
type Options struct {
	// Portals is the number of listening portals (default 1). With loopback
	// each has its own free port on 127.0.0.1; in a namespace they are
	// consecutive ports from Port (default 3260) on the namespace address.
	Portals int
	// Port fixes the (first) TCP port. 0 picks a free one.
	Port int
	// Control fixes the tgtd control number (-C). 0 picks a free one.
	Control int
	// NOPInterval and NOPCount make tgtd send NOP-In pings every
	// NOPInterval seconds and drop the connection after NOPCount misses.
	NOPInterval, NOPCount int
	// Netns runs tgtd inside a new network namespace reached over a veth
	// pair (see StartInNetns). Needs root and iproute2.
	Netns bool
	// Dir holds tgtd.log and is the default place for backing files. When
	// empty a temporary directory is created and removed by Close.
	Dir string
	// StartTimeout bounds the wait for the portal to accept connections
	// (default 10 s).
	StartTimeout time.Duration
	// Logger receives debug records of tgtadm commands (secrets redacted).
	Logger *slog.Logger
}

// Option changes Options for Start and StartInNetns.
type Option func(*Options)

// WithPortals sets the number of listening portals.
func WithPortals(n int) Option { return func(o *Options) { o.Portals = n } }

// WithNOP makes tgtd send NOP-In every interval seconds, giving up after count misses.
func WithNOP(interval, count int) Option {
	return func(o *Options) { o.NOPInterval, o.NOPCount = interval, count }
}

// WithLogger sets the logger for tgtadm commands.
func WithLogger(l *slog.Logger) Option { return func(o *Options) { o.Logger = l } }

// WithDir sets the working directory (log file, default backing files).
func WithDir(dir string) Option { return func(o *Options) { o.Dir = dir } }

// WithOptions replaces all options at once.
func WithOptions(opts Options) Option { return func(o *Options) { *o = opts } }

// Server is one running (or killed, restartable) tgtd instance.
type Server struct {
	opts    Options
	tgtd    string // path of tgtd
	tgtadm  string // path of tgtadm
	ipTool  string // path of ip, netns only
	dir     string
	ownDir  bool
	logPath string
	log     *slog.Logger
	ns      *netns // nil on loopback

	ctrl    int
	host    string // portal address
	ports   []int
	portals []string

	mu       sync.Mutex
	proc     *process
	replay   [][]string // successful configuration commands, in order
	tids     map[int]bool
	closed   bool
	closeErr error
}

// process is one tgtd child; done is closed once it has been reaped.
type process struct {
	pid  int
	done chan struct{}
	err  error // from Wait, valid after done
}

// Start starts tgtd for a test and registers a cleanup that stops it, dumps
// its log when the test failed, and removes its files. It fails the test
// (t.Fatal) if tgtd cannot be started.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var o Options
	for _, f := range opts {
		f(&o)
	}
	if o.Dir == "" {
		o.Dir = t.TempDir() // removed after our cleanup below (LIFO)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*startTimeout(o)+10*time.Second)
	defer cancel()
	s, err := StartServer(ctx, o)
	if err != nil {
		t.Fatalf("tgtd.Start: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("tgtd -C %d log (%s):\n%s", s.ctrl, s.logPath, s.Log())
		}
		if err := s.Close(); err != nil {
			t.Errorf("tgtd: stop: %v", err)
		}
	})
	return s
}

// StartInNetns is Start with Options.Netns set: tgtd runs in its own network
// namespace, reached from the host over a veth pair with a private /30 of
// 10.200.0.0/16. Portal returns the namespace address; LinkDown and LinkUp
// cut and restore the host side of the link.
func StartInNetns(t testing.TB, opts ...Option) *Server {
	t.Helper()
	return Start(t, append(opts, func(o *Options) { o.Netns = true })...)
}

func startTimeout(o Options) time.Duration {
	if o.StartTimeout > 0 {
		return o.StartTimeout
	}
	return defaultStartTimeout
}

// LookPath finds tgtd and tgtadm (also in /usr/sbin and /sbin, which are
// not on every PATH). The error wraps ErrNotInstalled and says what to install.
func LookPath() (tgtdPath, tgtadmPath string, err error) {
	tgtdPath, err1 := lookTool("tgtd")
	tgtadmPath, err2 := lookTool("tgtadm")
	if err := errors.Join(err1, err2); err != nil {
		return "", "", fmt.Errorf("%w: %w; %s", ErrNotInstalled, err, InstallHint)
	}
	return tgtdPath, tgtadmPath, nil
}

func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// StartServer starts tgtd and returns once its portals accept TCP
// connections and tgtadm answers. The caller must Close the server. ctx
// bounds the start-up only, not the life of tgtd.
func StartServer(ctx context.Context, opts Options) (*Server, error) {
	tgtdPath, tgtadmPath, err := LookPath()
	if err != nil {
		return nil, err
	}
	if opts.Portals <= 0 {
		opts.Portals = 1
	}
	if opts.Portals > 16 {
		return nil, fmt.Errorf("tgtd: %d portals requested, at most 16", opts.Portals)
	}
	s := &Server{
		opts:   opts,
		tgtd:   tgtdPath,
		tgtadm: tgtadmPath,
		dir:    opts.Dir,
		log:    opts.Logger,
		tids:   map[int]bool{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.dir == "" {
		d, err := os.MkdirTemp("", "gosan-tgtd-")
		if err != nil {
			return nil, fmt.Errorf("tgtd: %w", err)
		}
		s.dir, s.ownDir = d, true
	}
	s.logPath = filepath.Join(s.dir, "tgtd.log")
	if opts.Netns {
		if s.ipTool, err = lookTool("ip"); err != nil {
			s.removeDir()
			return nil, fmt.Errorf("%w: ip not found; install Debian package iproute2 (make deps)", ErrNotInstalled)
		}
		if os.Geteuid() != 0 {
			s.removeDir()
			return nil, errors.New("tgtd: StartInNetns needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)")
		}
	}
	if err := s.firstStart(ctx); err != nil {
		s.removeDir()
		return nil, err
	}
	return s, nil
}

// firstStart picks control number and ports, retrying on collisions.
func (s *Server) firstStart(ctx context.Context) error {
	var lastErr error
	for attempt := 0; attempt < maxStartAttempts; attempt++ {
		if err := ctx.Err(); err != nil {
			return errors.Join(fmt.Errorf("tgtd: start: %w", err), lastErr)
		}
		s.ctrl = s.opts.Control
		if s.ctrl == 0 {
			s.ctrl = ctrlBase + rand.IntN(ctrlSpan)
		}
		if s.opts.Netns {
			ns, err := createNetns(ctx, s.ipTool, s.ctrl)
			if err != nil {
				lastErr = err
				if s.opts.Control == 0 && errors.Is(err, errNetnsExists) {
					continue
				}
				return err
			}
			s.ns = ns
			s.host = ns.nsAddr
		} else {
			s.host = "127.0.0.1"
		}
		if err := s.pickPorts(); err != nil {
			s.dropNetns()
			return err
		}
		err := s.launch(ctx)
		if err == nil {
			return nil
		}
		lastErr = err
		s.dropNetns()
		var se *StartError
		if !errors.As(err, &se) {
			return err
		}
		retry := (se.ControlInUse && s.opts.Control == 0) || (se.BindFailed && s.opts.Port == 0)
		if !retry {
			return err
		}
		s.log.Debug("tgtd: retrying start", "ctrl", s.ctrl, "err", err)
	}
	return fmt.Errorf("tgtd: start failed after %d attempts: %w", maxStartAttempts, lastErr)
}

func (s *Server) dropNetns() {
	if s.ns != nil {
		ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
		defer cancel()
		_ = s.ns.remove(ctx)
		s.ns = nil
	}
}

func (s *Server) pickPorts() error {
	s.ports = s.ports[:0]
	s.portals = s.portals[:0]
	for i := 0; i < s.opts.Portals; i++ {
		var p int
		switch {
		case s.opts.Port != 0:
			p = s.opts.Port + i
		case s.ns != nil:
			p = 3260 + i // the namespace is private: the standard port is free
		default:
			var err error
			if p, err = freePort(); err != nil {
				return fmt.Errorf("tgtd: pick a free port: %w", err)
			}
		}
		s.ports = append(s.ports, p)
		s.portals = append(s.portals, net.JoinHostPort(s.host, strconv.Itoa(p)))
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StartError describes a tgtd that did not come up.
type StartError struct {
	Control      int
	Portals      []string
	Exited       bool // the process exited during start-up
	BindFailed   bool // tgtd logged "failed to create/bind to portal" (port taken)
	ControlInUse bool // another tgtd holds the control number
	Err          error
	Log          string // tail of the tgtd log
}

func (e *StartError) Error() string {
	var why string
	switch {
	case e.ControlInUse:
		why = fmt.Sprintf("control number %d is used by another tgtd", e.Control)
	case e.BindFailed:
		why = "tgtd could not bind its portal (port taken?)"
	case e.Exited:
		why = "tgtd exited during start-up"
	default:
		why = "tgtd did not become ready"
	}
	msg := fmt.Sprintf("tgtd -C %d portals %v: %s", e.Control, e.Portals, why)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if e.Log != "" {
		msg += "\n--- tgtd log ---\n" + e.Log
	}
	return msg
}

func (e *StartError) Unwrap() error { return e.Err }

func (s *Server) iscsiArg() string {
	parts := make([]string, 0, len(s.portals)+2)
	for _, p := range s.portals {
		parts = append(parts, "portal="+p)
	}
	if s.opts.NOPInterval > 0 {
		parts = append(parts, "nop_interval="+strconv.Itoa(s.opts.NOPInterval))
		if s.opts.NOPCount > 0 {
			parts = append(parts, "nop_count="+strconv.Itoa(s.opts.NOPCount))
		}
	}
	return strings.Join(parts, ",")
}

// launch starts one tgtd process with the current ctrl/ports and waits for
// readiness. On failure the process is killed and reaped.
func (s *Server) launch(ctx context.Context) error {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("tgtd: log file: %w", err)
	}
	defer logf.Close()
	startOff, _ := logf.Seek(0, io.SeekEnd)
	args := []string{"-f", "-C", strconv.Itoa(s.ctrl), "--iscsi", s.iscsiArg()}
	name := s.tgtd
	if s.ns != nil {
		args = append([]string{"netns", "exec", s.ns.name, s.tgtd}, args...)
		name = s.ipTool
	}
	fmt.Fprintf(logf, "=== %s gosan harness: %s %s\n", time.Now().Format(time.RFC3339Nano), name, strings.Join(args, " "))

	p, err := spawn(name, args, logf)
	if err != nil {
		return fmt.Errorf("tgtd: start %s: %w", name, err)
	}
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()

	if err := s.waitReady(ctx, p, startOff); err != nil {
		killAndReap(p)
		s.mu.Lock()
		s.proc = nil
		s.mu.Unlock()
		return err
	}
	return nil
}

// spawn starts the child from a goroutine locked to its OS thread: the
// thread lives until the child is reaped, so PR_SET_PDEATHSIG (tied to the
// parent thread) fires only when the whole test process dies.
func spawn(name string, args []string, out *os.File) (*process, error) {
	type result struct {
		p   *process
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		cmd := exec.Command(name, args...)
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			ch <- result{err: err}
			return
		}
		p := &process{pid: cmd.Process.Pid, done: make(chan struct{})}
		ch <- result{p: p}
		p.err = cmd.Wait()
		close(p.done)
	}()
	r := <-ch
	return r.p, r.err
}

func killAndReap(p *process) {
	_ = syscall.Kill(p.pid, syscall.SIGCONT) // a stopped process still dies of SIGKILL, but be explicit
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
	<-p.done
}

func (s *Server) waitReady(ctx context.Context, p *process, logOff int64) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout(s.opts))
	defer cancel()
	fail := func(se *StartError) error {
		se.Control, se.Portals = s.ctrl, append([]string(nil), s.portals...)
		if se.Log == "" {
			se.Log = s.logSince(logOff)
		}
		return se
	}
	pending := append([]string(nil), s.portals...)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		since := s.logSince(logOff)
		bind := strings.Contains(since, msgBindFailed)
		inUse := strings.Contains(since, msgCtrlInUse)
		select {
		case <-p.done:
			since = s.logSince(logOff)
			return fail(&StartError{Exited: true, ControlInUse: strings.Contains(since, msgCtrlInUse),
				BindFailed: strings.Contains(since, msgBindFailed), Err: p.err, Log: since})
		default:
		}
		if bind || inUse {
			return fail(&StartError{BindFailed: bind, ControlInUse: inUse})
		}
		for len(pending) > 0 {
			d := net.Dialer{Timeout: 200 * time.Millisecond}
			c, err := d.DialContext(ctx, "tcp", pending[0])
			if err != nil {
				break
			}
			c.Close()
			pending = pending[1:]
		}
		if len(pending) == 0 {
			// The portal answers; make sure this is our tgtd (not someone
			// else's listener on a reused port) and that tgtadm works.
			actx, acancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := s.admin(actx, "--mode", "sys", "--op", "show")
			acancel()
			since = s.logSince(logOff)
			if strings.Contains(since, msgBindFailed) {
				return fail(&StartError{BindFailed: true})
			}
			if err == nil {
				return nil
			}
			if ctx.Err() != nil {
				return fail(&StartError{Err: err})
			}
		}
		select {
		case <-ctx.Done():
			return fail(&StartError{Err: fmt.Errorf("portals %v not accepting connections: %w", pending, ctx.Err())})
		case <-p.done:
		case <-tick.C:
		}
	}
}

// logSince returns the log written after offset off (at most the last 64 KiB).
func (s *Server) logSince(off int64) string {
	f, err := os.Open(s.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	const max = 64 << 10
	if fi.Size()-off > max {
		off = fi.Size() - max
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(f, max))
	return string(b)
}

// Log returns the tail (≤64 KiB) of tgtd's stderr over all (re)starts.
func (s *Server) Log() string { return s.logSince(0) }

// LogPath is the file tgtd's stdout and stderr go to.
func (s *Server) LogPath() string { return s.logPath }

// Portal is the first portal, "host:port".
func (s *Server) Portal() string { return s.portals[0] }

// Portals lists every portal tgtd listens on.
func (s *Server) Portals() []string { return append([]string(nil), s.portals...) }

// Host is the portal IP address (127.0.0.1, or the namespace side of the veth).
func (s *Server) Host() string { return s.host }

// Port is the TCP port of the first portal.
func (s *Server) Port() int { return s.ports[0] }

// Control is the tgtd control number (tgtd -C, tgtadm -C).
func (s *Server) Control() int { return s.ctrl }

// Dir is the working directory (log, default place for backing files).
func (s *Server) Dir() string { return s.dir }

// PID is the process id of the running tgtd, 0 when it is not running.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil || s.proc.exited() {
		return 0
	}
	return s.proc.pid
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Running reports whether the tgtd process is alive (it may be SIGSTOPped).
func (s *Server) Running() bool { return s.PID() != 0 }

func (s *Server) signal(sig syscall.Signal) error {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil || p.exited() {
		return ErrNotRunning
	}
	if err := syscall.Kill(p.pid, sig); err != nil {
		return fmt.Errorf("tgtd: signal %v: %w", sig, err)
	}
	return nil
}

// Stop freezes tgtd with SIGSTOP (connections stay open, nothing answers).
// It is not a shutdown: that is Close.
func (s *Server) Stop() error { return s.signal(syscall.SIGSTOP) }

// Cont resumes a tgtd frozen by Stop (SIGCONT).
func (s *Server) Cont() error { return s.signal(syscall.SIGCONT) }

// Kill ends tgtd abruptly with SIGKILL (a target crash) and reaps it. The
// configuration is kept for Restart.
func (s *Server) Kill() error {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil || p.exited() {
		return ErrNotRunning
	}
	killAndReap(p)
	return nil
}

// Restart brings tgtd back on the same portals and control number and
// replays the configuration. A running tgtd is killed first. The port may
// still be held briefly by the old socket; Restart retries until ctx ends.
func (s *Server) Restart(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("tgtd: Restart after Close")
	}
	p := s.proc
	replay := append([][]string(nil), s.replay...)
	s.mu.Unlock()
	if p != nil && !p.exited() {
		killAndReap(p)
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout(s.opts))
	defer cancel()
	for {
		err := s.launch(ctx)
		if err == nil {
			break
		}
		var se *StartError
		if !errors.As(err, &se) || !se.BindFailed || ctx.Err() != nil {
			return fmt.Errorf("tgtd: restart: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("tgtd: restart: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	for _, args := range replay {
		if _, err := s.admin(ctx, args...); err != nil {
			return fmt.Errorf("tgtd: restart: replay configuration: %w", err)
		}
	}
	return nil
}

// Close stops tgtd for sure and removes what the harness created (netns,
// control socket files, the temporary directory when Options.Dir was
// empty). Clean sequence: SIGCONT, State offline, delete every target with
// --force, delete system; then wait ≤3 s and SIGKILL. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		err := s.closeErr
		s.mu.Unlock()
		return err
	}
	s.closed = true
	p := s.proc
	tids := make([]int, 0, len(s.tids))
	for tid := range s.tids {
		tids = append(tids, tid)
	}
	s.mu.Unlock()

	var errs []error
	if p != nil && !p.exited() {
		_ = syscall.Kill(p.pid, syscall.SIGCONT)
		s.cleanStop(tids)
		select {
		case <-p.done:
		case <-time.After(stopWait):
			s.log.Debug("tgtd: clean stop timed out, SIGKILL", "pid", p.pid)
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				errs = append(errs, fmt.Errorf("tgtd: pid %d not reaped 10 s after SIGKILL", p.pid))
			}
		}
	}
	if s.ns != nil {
		ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
		if err := s.ns.remove(ctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	if len(errs) == 0 {
		base := filepath.Join("/var/run/tgtd", "socket."+strconv.Itoa(s.ctrl))
		_ = os.Remove(base)
		_ = os.Remove(base + ".lock")
	}
	s.removeDir()
	s.mu.Lock()
	s.closeErr = errors.Join(errs...)
	s.mu.Unlock()
	return s.closeErr
}

func (s *Server) cleanStop(known []int) {
	run := func(args ...string) {
		ctx, cancel := context.WithTimeout(context.Background(), stopAdminTimeout)
		defer cancel()
		_, _ = s.admin(ctx, args...)
	}
	run("--mode", "sys", "--op", "update", "--name", "State", "-v", "offline")
	tids := map[int]bool{}
	for _, t := range known {
		tids[t] = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopAdminTimeout)
	if ts, err := s.Targets(ctx); err == nil {
		for _, t := range ts {
			tids[t.TID] = true
		}
	}
	cancel()
	for tid := range tids {
		run("--mode", "target", "--op", "delete", "--force", "--tid", strconv.Itoa(tid))
	}
	run("--mode", "system", "--op", "delete")
}

func (s *Server) removeDir() {
	if s.ownDir {
		_ = os.RemoveAll(s.dir)
	}
}

// Processes lists the pids of live tgtd processes started with control
// number ctrl (any tgtd whose command line has "-C ctrl"), read from /proc.
func Processes(ctrl int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	want := strconv.Itoa(ctrl)
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && zombie(st) {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if filepath.Base(argv[0]) != "tgtd" {
			continue
		}
		for i := 1; i < len(argv); i++ {
			if (argv[i] == "-C" || argv[i] == "--control-port") && i+1 < len(argv) && argv[i+1] == want {
				pids = append(pids, pid)
				break
			}
			if argv[i] == "-C"+want || argv[i] == "--control-port="+want {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// zombie reports whether a /proc/PID/stat line shows state Z or X.
func zombie(stat []byte) bool {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return false
	}
	return stat[i+2] == 'Z' || stat[i+2] == 'X'
}
