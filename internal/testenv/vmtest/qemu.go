//go:build linux

package vmtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Environment variables read by the harness.
const (
	// EnvInGuest is set to "1" in the payload's environment.
	EnvInGuest = "GOSAN_IN_VM"
	// EnvAccel selects the accelerator: "tcg" (default) or "kvm". TCG is the
	// default even where /dev/kvm exists: on the project's machines it is a
	// paravirtual KVM (kvm-pvm) on which a stock kernel does not boot.
	EnvAccel = "GOSAN_VM_ACCEL"
	// EnvBoot set to "bzimage" boots the compressed kernel through the
	// firmware instead of the extracted vmlinux (PVH).
	EnvBoot = "GOSAN_VM_BOOT"
	// EnvConsole set to "1" copies every guest console to stderr live.
	EnvConsole = "GOSAN_VM_CONSOLE"
)

// DefaultTimeout bounds Run when ctx has no deadline.
const DefaultTimeout = 10 * time.Minute

// maxConsole bounds the console output kept in memory; older output is
// dropped first.
const maxConsole = 32 << 20

// ErrNoExitMarker means qemu exited without the payload's exit-code line
// (kernel panic, /init died, qemu error): see Result.Output.
var ErrNoExitMarker = errors.New("vmtest: guest stopped without reporting an exit code")

// Fwd forwards a TCP port on the host's loopback into the guest.
type Fwd struct {
	HostPort  int // 0: pick a free port (see Guest.HostAddr)
	GuestPort int
}

// Config describes one guest run.
type Config struct {
	// Binary is the host path of a static executable run as the payload
	// (CGO_ENABLED=0). If empty, Script is run by busybox sh instead.
	Binary string
	Script string
	Args   []string
	// Env is added to the payload's environment (with GOSAN_IN_VM=1,
	// PATH, HOME=/root, TMPDIR=/tmp). The working directory is /tmp.
	Env map[string]string
	// Files maps guest paths to host files or directories (copied
	// recursively) placed in the initramfs.
	Files map[string]string
	// Sets and Modules name the kernel modules to load before the payload
	// runs; their dependencies are added. SetNet is always loaded.
	Sets    []ModuleSet
	Modules []string
	// MemoryMB defaults to 1024, CPUs to 1.
	MemoryMB int
	CPUs     int
	// HostFwd forwards host loopback ports to guest ports.
	HostFwd []Fwd
	// Disks are raw image files attached as virtio-blk /dev/vda, /dev/vdb...
	Disks []string
	// Append is added to the kernel command line.
	Append string
	// Console, if set, receives a live copy of the guest console.
	Console io.Writer
	Logger  *slog.Logger
}

// Result is the outcome of a guest run.
type Result struct {
	ExitCode int           // the payload's exit status (128+N when killed by signal N)
	Output   string        // the guest console, CR and NUL bytes removed
	Boot     time.Duration // from starting qemu to "vmtest: guest ready" (modules and network up)
	Elapsed  time.Duration // from starting qemu to its exit
}

// Run boots a guest, runs the payload and returns its exit code. A non-nil
// error means the guest did not report one (timeout, crash, missing
// prerequisite); Result is then still returned when qemu ran, for its Output.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	g, err := Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer g.Stop()
	return g.Wait(ctx)
}

// Guest is a running qemu guest. Stop it (always: it kills qemu and removes
// the per-run files); it also dies with the ctx given to Start and with the
// test process.
type Guest struct {
	cmd     *exec.Cmd
	nonce   string
	tmp     string
	fwd     map[int]int // guest port -> host port
	start   time.Time
	console *consoleBuffer
	done    chan struct{}
	waitErr error // set before done is closed
	end     time.Time
	stop    sync.Once
	log     *slog.Logger
}

// Start boots a guest in the background. The guest is killed when ctx is done.
func Start(ctx context.Context, cfg Config) (*Guest, error) {
	if cfg.Binary == "" && cfg.Script == "" {
		return nil, errors.New("vmtest: Config needs Binary or Script")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	qemu, err := checkTools()
	if err != nil {
		return nil, err
	}
	k, err := FindKernel()
	if err != nil {
		return nil, err
	}
	kernel := k.BzImage()
	if os.Getenv(EnvBoot) != "bzimage" {
		if kernel, err = k.Vmlinux(ctx); err != nil {
			return nil, err
		}
	}
	names, err := moduleNames(&cfg)
	if err != nil {
		return nil, err
	}
	base, _, err := baseArchive(ctx, k, names)
	if err != nil {
		return nil, err
	}
	var nb [12]byte
	if _, err := rand.Read(nb[:]); err != nil {
		return nil, fmt.Errorf("vmtest: %w", err)
	}
	g := &Guest{nonce: hex.EncodeToString(nb[:]), fwd: map[int]int{}, done: make(chan struct{}), log: log}
	if g.tmp, err = os.MkdirTemp("", "vmtest-"); err != nil {
		return nil, fmt.Errorf("vmtest: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(g.tmp)
		}
	}()
	initrd := filepath.Join(g.tmp, "initrd")
	if err := writeInitrd(initrd, base, &cfg, g.nonce); err != nil {
		return nil, err
	}
	args, err := g.qemuArgs(kernel, initrd, &cfg)
	if err != nil {
		return nil, err
	}
	var tee io.Writer
	switch {
	case cfg.Console != nil:
		tee = cfg.Console
	case os.Getenv(EnvConsole) == "1":
		tee = os.Stderr
	}
	g.console = newConsoleBuffer(tee)
	g.cmd = exec.Command(qemu, args...)
	g.cmd.Stdout = g.console
	g.cmd.Stderr = g.console
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	g.cmd.WaitDelay = 5 * time.Second
	if log.Enabled(ctx, slog.LevelDebug) {
		log.DebugContext(ctx, "vmtest: starting qemu", "args", args)
	}
	g.start = time.Now()
	if err := g.cmd.Start(); err != nil {
		return nil, fmt.Errorf("vmtest: start qemu: %w", err)
	}
	ok = true
	go func() {
		err := g.cmd.Wait()
		g.end = time.Now()
		g.waitErr = err
		close(g.done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			g.kill()
		case <-g.done:
		}
	}()
	return g, nil
}

// moduleNames lists the requested modules: SetNet, the sets, virtio_blk for
// disks, then Modules.
func moduleNames(cfg *Config) ([]string, error) {
	sets := append([]ModuleSet{SetNet}, cfg.Sets...)
	if len(cfg.Disks) > 0 {
		sets = append(sets, SetVirtioBlk)
	}
	var names []string
	for _, s := range sets {
		m, err := s.Modules()
		if err != nil {
			return nil, err
		}
		names = append(names, m...)
	}
	return append(names, cfg.Modules...), nil
}

// writeInitrd writes the cached base archive followed by the per-run one.
func writeInitrd(dst, base string, cfg *Config, nonce string) error {
	in, err := os.Open(base)
	if err != nil {
		return fmt.Errorf("vmtest: %w", err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("vmtest: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("vmtest: %w", err)
	}
	bw := &countingWriter{w: out}
	if err := writeRunArchive(bw, cfg, nonce); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// accel returns qemu's accelerator and CPU arguments.
func accel() []string {
	if os.Getenv(EnvAccel) == "kvm" {
		return []string{"-accel", "kvm", "-cpu", "host"}
	}
	return []string{"-accel", "tcg", "-cpu", "max"}
}

func (g *Guest) qemuArgs(kernel, initrd string, cfg *Config) ([]string, error) {
	mem := cfg.MemoryMB
	if mem <= 0 {
		mem = 1024
	}
	cpus := cfg.CPUs
	if cpus <= 0 {
		cpus = 1
	}
	nic := "user,model=virtio-net-pci"
	for _, f := range cfg.HostFwd {
		if f.GuestPort <= 0 || f.GuestPort > 65535 || f.HostPort < 0 || f.HostPort > 65535 {
			return nil, fmt.Errorf("vmtest: bad port forward %+v", f)
		}
		hp := f.HostPort
		if hp == 0 {
			p, err := freePort()
			if err != nil {
				return nil, err
			}
			hp = p
		}
		g.fwd[f.GuestPort] = hp
		nic += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", hp, f.GuestPort)
	}
	appendLine := "console=ttyS0 quiet panic=-1"
	if cfg.Append != "" {
		appendLine += " " + cfg.Append
	}
	args := accel()
	args = append(args, "-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus),
		"-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd, "-append", appendLine, "-nic", nic)
	for _, d := range cfg.Disks {
		if strings.Contains(d, ",") {
			return nil, fmt.Errorf("vmtest: disk path %q contains a comma", d)
		}
		if _, err := os.Stat(d); err != nil {
			return nil, fmt.Errorf("vmtest: disk: %w", err)
		}
		args = append(args, "-drive", "file="+d+",format=raw,if=virtio,cache=unsafe")
	}
	return args, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("vmtest: pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// HostAddr returns the host address ("127.0.0.1:PORT") forwarded to
// guestPort, or "" if Config.HostFwd has no such forward.
func (g *Guest) HostAddr(guestPort int) string {
	hp, ok := g.fwd[guestPort]
	if !ok {
		return ""
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(hp))
}

// Pid is qemu's process id.
func (g *Guest) Pid() int { return g.cmd.Process.Pid }

// Done is closed when qemu has exited.
func (g *Guest) Done() <-chan struct{} { return g.done }

// Output returns the console so far, CR and NUL bytes removed.
func (g *Guest) Output() string { return cleanConsole(g.console.Bytes()) }

// WaitFor waits until the console shows text (e.g. a line the payload
// prints when its server is ready). It fails if the guest exits first.
func (g *Guest) WaitFor(ctx context.Context, text string) error {
	for {
		ch := g.console.changed()
		if strings.Contains(g.Output(), text) {
			return nil
		}
		select {
		case <-ch:
		case <-g.done:
			if strings.Contains(g.Output(), text) {
				return nil
			}
			return fmt.Errorf("vmtest: guest exited before printing %q: %w\n%s", text, ErrNoExitMarker, tail(g.Output(), 40))
		case <-ctx.Done():
			return fmt.Errorf("vmtest: waiting for %q: %w\n%s", text, ctx.Err(), tail(g.Output(), 40))
		}
	}
}

// Wait waits for the guest to power off and returns the payload's exit code.
// When ctx is done first, the guest is killed.
func (g *Guest) Wait(ctx context.Context) (*Result, error) {
	select {
	case <-g.done:
	case <-ctx.Done():
		g.Stop()
		res := g.result()
		return res, fmt.Errorf("vmtest: guest killed after %v: %w\n%s", time.Since(g.start).Round(time.Millisecond), ctx.Err(), tail(res.Output, 40))
	}
	res := g.result()
	code, ok := parseExit(res.Output, g.nonce)
	if !ok {
		return res, fmt.Errorf("%w (qemu: %v)\n%s", ErrNoExitMarker, g.waitErr, tail(res.Output, 60))
	}
	res.ExitCode = code
	return res, nil
}

func (g *Guest) result() *Result {
	out := g.Output()
	r := &Result{Output: out, Elapsed: time.Since(g.start)}
	select {
	case <-g.done:
		r.Elapsed = g.end.Sub(g.start)
	default:
	}
	if t, ok := g.console.readyTime(); ok {
		r.Boot = t.Sub(g.start)
	}
	return r
}

func (g *Guest) kill() {
	if g.cmd.Process != nil {
		// The whole process group: qemu has no children, but be sure.
		_ = syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
		_ = g.cmd.Process.Kill()
	}
}

// Stop kills qemu, waits for it to be reaped and removes the per-run files.
// It is safe to call more than once and concurrently.
func (g *Guest) Stop() error {
	g.stop.Do(func() {
		select {
		case <-g.done:
		default:
			g.kill()
		}
		<-g.done
		os.RemoveAll(g.tmp)
	})
	return nil
}

// parseExit finds the marker line "VMTEST-EXIT <nonce> <code>" in console
// output, tolerating CRLF, NUL bytes and kernel messages printed on the same
// line before it.
func parseExit(out, nonce string) (int, bool) {
	if nonce == "" {
		return 0, false
	}
	want := markerPrefix + nonce + " "
	for _, line := range strings.Split(out, "\n") {
		line = strings.Map(func(r rune) rune {
			if r == '\r' || r == 0 {
				return -1
			}
			return r
		}, line)
		i := strings.Index(line, want)
		if i < 0 {
			continue
		}
		rest := line[i+len(want):]
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if j == 0 || j > 3 || (j > 1 && rest[0] == '0') {
			continue // the guest prints $? in canonical decimal: 0..255
		}
		if j < len(rest) && rest[j] != ' ' && rest[j] != '\t' {
			continue
		}
		code, err := strconv.Atoi(rest[:j])
		if err != nil || code > 255 {
			continue
		}
		return code, true
	}
	return 0, false
}

// cleanConsole removes CR and NUL bytes from console output.
func cleanConsole(b []byte) string {
	if bytes.IndexByte(b, '\r') < 0 && bytes.IndexByte(b, 0) < 0 {
		return string(b)
	}
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c != '\r' && c != 0 {
			out = append(out, c)
		}
	}
	return string(out)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	if n <= 0 {
		return ""
	}
	s = strings.TrimRight(s, "\n")
	i := len(s)
	for ; n > 0; n-- {
		j := strings.LastIndexByte(s[:i], '\n')
		if j < 0 {
			return s
		}
		i = j
	}
	return s[i+1:]
}

// consoleBuffer collects qemu's output, notifies waiters on every write and
// records when each watched line first appeared.
type consoleBuffer struct {
	mu      sync.Mutex
	buf     []byte
	tee     io.Writer
	notify  chan struct{}
	readyAt time.Time
}

func newConsoleBuffer(tee io.Writer) *consoleBuffer {
	return &consoleBuffer{tee: tee, notify: make(chan struct{})}
}

func (c *consoleBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.buf = append(c.buf, p...)
	if len(c.buf) > maxConsole {
		c.buf = append([]byte("[vmtest: earlier output dropped]\n"), c.buf[len(c.buf)-maxConsole/2:]...)
	}
	if c.readyAt.IsZero() && bytes.Contains(c.buf, []byte(readyLine)) {
		c.readyAt = time.Now()
	}
	close(c.notify)
	c.notify = make(chan struct{})
	tee := c.tee
	c.mu.Unlock()
	if tee != nil {
		_, _ = tee.Write(p)
	}
	return len(p), nil
}

func (c *consoleBuffer) Bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.buf)
}

func (c *consoleBuffer) changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.notify
}

func (c *consoleBuffer) readyTime() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readyAt, !c.readyAt.IsZero()
}
