//go:build linux

package lio

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosan/iscsi/internal/testenv/vmtest"
)

// IQNPrefix is the prefix of every fixture target name (the same as tgtd's
// fixture, so both targets answer to the same names).
const IQNPrefix = "iqn.2026-11.org.gosan.test:"

// AdvertisedPortal is the portal LIO reports in SendTargets: the guest's own
// address, which the host cannot reach through the port forward.
const AdvertisedPortal = vmtest.GuestIP + ":3260"

// Fixture sizes (small: the files live in the guest's memory).
const (
	PlainSize    = 32 << 20
	MultiLUNSize = 16 << 20
	CHAPSize     = 8 << 20
	ACLSize      = 8 << 20
)

// DefaultStartTimeout bounds boot and configuration (Options.StartTimeout).
const DefaultStartTimeout = 90 * time.Second

// ErrControl is wrapped by errors of the guest's checksum service.
var ErrControl = errors.New("lio: guest control service")

// FixtureLUN is one LUN of a fixture target.
type FixtureLUN struct {
	LUN       uint64
	Size      int64
	BlockSize int
	Path      string // backing file in the guest (see Fixture.Checksum)
}

// FixtureTarget is one target of the standard set.
type FixtureTarget struct {
	IQN  string
	LUNs []FixtureLUN
	// One-way CHAP: the credentials the initiator presents. LIO binds them to
	// the node ACL of Fixture.Initiator.
	User, Secret string
	// Mutual CHAP: the target's own name and secret.
	TargetUser, TargetSecret string
	// Initiators are the initiator names of the node ACLs of a target without
	// CHAP; empty means open to every initiator.
	Initiators []string
}

// String hides secrets.
func (t FixtureTarget) String() string {
	return fmt.Sprintf("{%s luns %d user %q target user %q}", t.IQN, len(t.LUNs), t.User, t.TargetUser)
}

// GoString hides secrets from %#v.
func (t FixtureTarget) GoString() string { return "lio.FixtureTarget" + t.String() }

// Fixture is the standard set of LIO targets in one guest.
type Fixture struct {
	// Portal is the host address forwarded to LIO's port 3260 in the guest.
	Portal string
	// AdvertisedPortal is what SendTargets reports (unreachable from the host).
	AdvertisedPortal string
	// Plain: LUN 0, open to all.
	Plain FixtureTarget
	// MultiLUN: LUN 0 with 512-byte blocks, LUN 1 with 4096-byte blocks.
	MultiLUN FixtureTarget
	// CHAP: one-way CHAP for Initiator.
	CHAP FixtureTarget
	// MutualCHAP: mutual CHAP for Initiator.
	MutualCHAP FixtureTarget
	// ACL: only AllowedInitiator may log in.
	ACL FixtureTarget
	// AllowedInitiator is the one initiator name the ACL target admits.
	AllowedInitiator string
	// Initiator is the initiator name the CHAP targets' node ACLs admit:
	// CHAP logins must use it.
	Initiator string
	// Kernel is the guest kernel's version: the version of LIO under test.
	Kernel string

	guest   *vmtest.Guest
	control string
	mu      sync.Mutex // one checksum request at a time
}

// String hides secrets.
func (f *Fixture) String() string {
	return fmt.Sprintf("lio.Fixture{portal %s kernel %s targets %v}", f.Portal, f.Kernel, f.Targets())
}

// Targets lists the fixture targets.
func (f *Fixture) Targets() []FixtureTarget {
	return []FixtureTarget{f.Plain, f.MultiLUN, f.CHAP, f.MutualCHAP, f.ACL}
}

// Guest returns the qemu guest running LIO.
func (f *Fixture) Guest() *vmtest.Guest { return f.guest }

// newFixture describes the standard targets (without a guest).
func newFixture() *Fixture {
	f := &Fixture{
		AdvertisedPortal: AdvertisedPortal,
		AllowedInitiator: IQNPrefix + "allowed-initiator",
		Initiator:        IQNPrefix + "lio-initiator",
		Plain: FixtureTarget{IQN: IQNPrefix + "plain",
			LUNs: []FixtureLUN{{LUN: 0, Size: PlainSize, BlockSize: 512}}},
		MultiLUN: FixtureTarget{IQN: IQNPrefix + "multilun",
			LUNs: []FixtureLUN{{LUN: 0, Size: MultiLUNSize, BlockSize: 512}, {LUN: 1, Size: MultiLUNSize, BlockSize: 4096}}},
		CHAP: FixtureTarget{IQN: IQNPrefix + "chap",
			LUNs: []FixtureLUN{{LUN: 0, Size: CHAPSize, BlockSize: 512}},
			User: "gosan-chap-user", Secret: "chap-secret-0123"},
		MutualCHAP: FixtureTarget{IQN: IQNPrefix + "mutual",
			LUNs: []FixtureLUN{{LUN: 0, Size: CHAPSize, BlockSize: 512}},
			User: "gosan-mutual-user", Secret: "mutual-secret-0123",
			TargetUser: "gosan-mutual-target", TargetSecret: "target-secret-0123"},
		ACL: FixtureTarget{IQN: IQNPrefix + "acl",
			LUNs:       []FixtureLUN{{LUN: 0, Size: ACLSize, BlockSize: 512}},
			Initiators: []string{IQNPrefix + "allowed-initiator"}},
	}
	// Backing files are numbered in the order guestScript creates them.
	n := 0
	for _, t := range []*FixtureTarget{&f.Plain, &f.MultiLUN, &f.CHAP, &f.MutualCHAP, &f.ACL} {
		for i := range t.LUNs {
			t.LUNs[i].Path = fmt.Sprintf("%s/disk%d.img", backingDir, n)
			n++
		}
	}
	return f
}

// Options configures Start.
type Options struct {
	// StartTimeout bounds boot and configuration (default DefaultStartTimeout;
	// TCG on a loaded machine is slow).
	StartTimeout time.Duration
	// MemoryMB is the guest's memory (default 512: the backing files take
	// under 100 MiB of it).
	MemoryMB int
	// Console, if set, receives a live copy of the guest console.
	Console io.Writer
	Logger  *slog.Logger
}

// Start boots a guest, configures the fixture targets and returns once LIO
// listens. The guest lives until Close or until ctx is done.
func Start(ctx context.Context, opts Options) (*Fixture, error) {
	f := newFixture()
	k, err := vmtest.FindKernel()
	if err != nil {
		return nil, fmt.Errorf("lio: %w", err)
	}
	f.Kernel = k.Version
	cfg := f.config(opts)
	g, err := vmtest.Start(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("lio: start guest: %w", err)
	}
	if err := f.attach(ctx, g, opts.StartTimeout); err != nil {
		_ = g.Stop()
		return nil, err
	}
	return f, nil
}

func (f *Fixture) config(opts Options) vmtest.Config {
	mem := opts.MemoryMB
	if mem == 0 {
		mem = 512
	}
	return vmtest.Config{
		Script:   guestScript(f),
		Sets:     []vmtest.ModuleSet{vmtest.SetLIO},
		MemoryMB: mem,
		HostFwd:  []vmtest.Fwd{{GuestPort: PortalPort}, {GuestPort: ControlPort}},
		Console:  opts.Console,
		Logger:   opts.Logger,
	}
}

// attach waits for the guest to be configured and fills in the addresses.
func (f *Fixture) attach(ctx context.Context, g *vmtest.Guest, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultStartTimeout
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := g.WaitFor(wctx, ReadyLine); err != nil {
		return fmt.Errorf("lio: guest did not configure LIO: %w; console tail:\n%s", err, tail(g.Output(), 3000))
	}
	f.guest = g
	f.Portal = g.HostAddr(PortalPort)
	f.control = g.HostAddr(ControlPort)
	return nil
}

// StartFixture boots the LIO guest for a test (bound to t: the guest is
// stopped when the test and its subtests end, and its console logged if t
// failed). A start failure fails t with what to install.
func StartFixture(t testing.TB) (*vmtest.Guest, *Fixture) {
	t.Helper()
	f := newFixture()
	k, err := vmtest.FindKernel()
	if err != nil {
		t.Fatalf("lio: %v", err)
	}
	f.Kernel = k.Version
	g := vmtest.StartForTest(t, f.config(Options{}))
	if err := f.attach(context.Background(), g, 0); err != nil {
		t.Fatal(err)
	}
	return g, f
}

// Close stops the guest for sure (kills qemu and waits for it).
func (f *Fixture) Close() error {
	if f.guest == nil {
		return nil
	}
	return f.guest.Stop()
}

// Checksum returns the SHA-256 of n bytes at off of a LUN's backing file in
// the guest: what LIO stored. Compare it with sha256.Sum256 of what was
// written.
func (f *Fixture) Checksum(ctx context.Context, l FixtureLUN, off, n int64) ([32]byte, error) {
	var sum [32]byte
	if off < 0 || n < 0 || off+n > l.Size {
		return sum, fmt.Errorf("%w: range %d+%d outside LUN of %d bytes", ErrControl, off, n, l.Size)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// The forward accepts before the guest does; a request that races the
	// service's re-listen sees EOF: retry a few times.
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return sum, fmt.Errorf("%w: %w (last: %w)", ErrControl, ctx.Err(), err)
			case <-time.After(100 * time.Millisecond):
			}
		}
		var reply string
		reply, err = f.request(ctx, fmt.Sprintf("sum %s %d %d\n", l.Path, off, n))
		if err == nil {
			return parseSumReply(reply)
		}
	}
	return sum, err
}

func (f *Fixture) request(ctx context.Context, line string) (string, error) {
	if f.control == "" {
		return "", fmt.Errorf("%w: not started", ErrControl)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", f.control)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrControl, err)
	}
	defer c.Close()
	deadline := time.Now().Add(60 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := io.WriteString(c, line); err != nil {
		return "", fmt.Errorf("%w: %w", ErrControl, err)
	}
	r := bufio.NewReaderSize(io.LimitReader(c, 512), 512)
	reply, err := r.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("%w: reading reply: %w", ErrControl, err)
	}
	return reply, nil
}

// parseSumReply parses "ok HEX\n" or "err REASON\n".
func parseSumReply(reply string) ([32]byte, error) {
	var sum [32]byte
	reply = strings.TrimRight(reply, "\r\n")
	word, rest, _ := strings.Cut(reply, " ")
	switch word {
	case "ok":
		if len(rest) != 64 {
			return sum, fmt.Errorf("%w: malformed checksum %q", ErrControl, trunc(rest, 80))
		}
		if _, err := hex.Decode(sum[:], []byte(rest)); err != nil {
			return sum, fmt.Errorf("%w: malformed checksum %q", ErrControl, trunc(rest, 80))
		}
		return sum, nil
	case "err":
		return sum, fmt.Errorf("%w: %s", ErrControl, trunc(rest, 200))
	default:
		return sum, fmt.Errorf("%w: unexpected reply %q", ErrControl, trunc(reply, 80))
	}
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
