package volume

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// requirePrereqs fails (never skips) when the machine cannot run the tests.
func requirePrereqs(t *testing.T, tools ...string) {
	t.Helper()
	require.Equal(t, 0, os.Geteuid(), "these tests mount filesystems and need loop devices: run them as root")
	_, err := os.Stat("/dev/loop-control")
	require.NoError(t, err, "loop devices unavailable: load the loop module (modprobe loop)")
	pkgs := map[string]string{
		"mkfs.ext4": "e2fsprogs", "mkfs.xfs": "xfsprogs", "mkfs.vfat": "dosfstools", "mkfs.btrfs": "btrfs-progs",
		"fsck": "util-linux", "debugfs": "e2fsprogs",
		"sfdisk": "fdisk", "sgdisk": "gdisk", "blkid": "util-linux", "mkswap": "util-linux",
	}
	for _, tool := range tools {
		_, err := exec.LookPath(tool)
		require.NoError(t, err, "%s is missing: apt-get install -y %s (scripts/deps.sh installs it)", tool, pkgs[tool])
	}
}

// loopSet attaches loop devices and detaches all of them in cleanup.
type loopSet struct {
	mu   sync.Mutex
	devs map[string]bool
}

func (l *loopSet) attach(backing string) (string, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer ctl.Close()
	bf, err := os.OpenFile(backing, os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer bf.Close()
	for try := 0; try < 50; try++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		if _, err := os.Stat(dev); errors.Is(err, os.ErrNotExist) {
			_ = unix.Mknod(dev, unix.S_IFBLK|0o660, int(unix.Mkdev(7, uint32(n))))
		}
		lf, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			return "", err
		}
		err = unix.IoctlSetInt(int(lf.Fd()), unix.LOOP_SET_FD, int(bf.Fd()))
		lf.Close()
		if errors.Is(err, unix.EBUSY) { // another process took it first
			time.Sleep(5 * time.Millisecond)
			continue
		}
		if err != nil {
			return "", fmt.Errorf("LOOP_SET_FD %s: %w", dev, err)
		}
		l.mu.Lock()
		if l.devs == nil {
			l.devs = map[string]bool{}
		}
		l.devs[dev] = true
		l.mu.Unlock()
		return dev, nil
	}
	return "", errors.New("no free loop device")
}

func (l *loopSet) detach(dev string) error {
	l.mu.Lock()
	delete(l.devs, dev)
	l.mu.Unlock()
	f, err := os.OpenFile(dev, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0)
	if errors.Is(err, unix.ENXIO) { // not attached
		return nil
	}
	return err
}

func (l *loopSet) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.devs)
}

func (l *loopSet) detachAll() {
	l.mu.Lock()
	devs := make([]string, 0, len(l.devs))
	for d := range l.devs {
		devs = append(devs, d)
	}
	l.mu.Unlock()
	for _, d := range devs {
		_ = l.detach(d)
	}
}

// unmountUnder lazily unmounts everything mounted below dir, deepest first.
func unmountUnder(dir string) {
	for i := 0; i < 5; i++ {
		mi, err := readMountInfo()
		if err != nil {
			return
		}
		var mps []string
		for _, m := range mi {
			if m.MountPoint == dir || strings.HasPrefix(m.MountPoint, dir+"/") {
				mps = append(mps, m.MountPoint)
			}
		}
		if len(mps) == 0 {
			return
		}
		sort.Slice(mps, func(a, b int) bool { return len(mps[a]) > len(mps[b]) })
		for _, mp := range mps {
			_ = unix.Unmount(mp, unix.MNT_DETACH)
		}
	}
}

// newSparse creates a sparse file of size bytes.
func newSparse(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(size))
	require.NoError(t, f.Close())
}

// newLoopDev makes a sparse backing file and a loop device over it; both go away in cleanup.
func newLoopDev(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	backing := filepath.Join(dir, "disk.img")
	newSparse(t, backing, size)
	var ls loopSet
	dev, err := ls.attach(backing)
	require.NoError(t, err)
	t.Cleanup(func() { unmountUnder(dir); ls.detachAll() })
	return dev
}

func hashHead(t *testing.T, dev string, n int64) [32]byte {
	t.Helper()
	f, err := os.Open(dev)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.CopyN(h, f, n)
	require.NoError(t, err)
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// fakeSession is one fake iSCSI session.
type fakeSession struct {
	id, host int
	devs     map[uint64]Device
}

// fakeAttacher implements Attacher with loop devices: each (IQN, LUN) is a
// sparse file, each path (portal) a loop device over it. It records calls,
// concurrency per IQN, and logouts of sessions that still had devices.
type fakeAttacher struct {
	dir   string
	size  int64
	delay time.Duration
	loops loopSet

	mu          sync.Mutex
	sessions    map[SessionKey]*fakeSession
	nextID      int
	inflight    map[string]int // per IQN
	maxInflight map[string]int
	inflightAll int
	maxAll      int
	logouts     []SessionKey
	badLogouts  []SessionKey // logged out while devices existed
	deleted     []string
	specs       []AttachSpec
	failPortal  map[string]error
	failTimes   map[string]int // portal: fail this many more attaches
}

func newFakeAttacher(t *testing.T, size int64) *fakeAttacher {
	f := &fakeAttacher{
		dir: t.TempDir(), size: size,
		sessions: map[SessionKey]*fakeSession{}, inflight: map[string]int{}, maxInflight: map[string]int{},
		failPortal: map[string]error{}, failTimes: map[string]int{},
	}
	t.Cleanup(f.loops.detachAll)
	return f
}

func (f *fakeAttacher) Attach(ctx context.Context, spec AttachSpec) (Device, error) {
	f.mu.Lock()
	f.specs = append(f.specs, spec)
	f.inflight[spec.TargetName]++
	f.inflightAll++
	f.maxInflight[spec.TargetName] = max(f.maxInflight[spec.TargetName], f.inflight[spec.TargetName])
	f.maxAll = max(f.maxAll, f.inflightAll)
	failErr := f.failPortal[spec.Portal]
	if f.failTimes[spec.Portal] > 0 {
		f.failTimes[spec.Portal]--
		failErr = fmt.Errorf("portal %s not answering yet", spec.Portal)
	}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inflight[spec.TargetName]--
		f.inflightAll--
		f.mu.Unlock()
	}()
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
			return Device{}, ctx.Err()
		}
	}
	if failErr != nil {
		return Device{}, failErr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.sessions[spec.SessionKey]
	if s == nil {
		f.nextID++
		s = &fakeSession{id: f.nextID, host: 100 + f.nextID, devs: map[uint64]Device{}}
		f.sessions[spec.SessionKey] = s
	}
	if d, ok := s.devs[spec.LUN]; ok {
		return d, nil
	}
	backing := filepath.Join(f.dir, fmt.Sprintf("%s-lun%d.img", strings.ReplaceAll(spec.TargetName, ":", "_"), spec.LUN))
	if _, err := os.Stat(backing); errors.Is(err, os.ErrNotExist) {
		fh, err := os.Create(backing)
		if err != nil {
			return Device{}, err
		}
		if err := fh.Truncate(f.size); err != nil {
			fh.Close()
			return Device{}, err
		}
		fh.Close()
	}
	dev, err := f.loops.attach(backing)
	if err != nil {
		return Device{}, err
	}
	d := Device{Path: dev, Portal: spec.Portal, LUN: spec.LUN, HostNo: s.host, SessionID: s.id,
		SCSIAddress: fmt.Sprintf("%d:0:0:%d", s.host, spec.LUN)}
	s.devs[spec.LUN] = d
	return d, nil
}

func (f *fakeAttacher) DeleteDevice(ctx context.Context, dev Device) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.sessions {
		for lun, d := range s.devs {
			if d.Path == dev.Path {
				if err := f.loops.detach(d.Path); err != nil {
					return err
				}
				delete(s.devs, lun)
				f.deleted = append(f.deleted, d.Path)
			}
		}
	}
	return nil
}

func (f *fakeAttacher) SessionDevices(ctx context.Context, key SessionKey) ([]Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.sessions[key]
	if s == nil {
		return nil, nil
	}
	var out []Device
	for _, d := range s.devs {
		out = append(out, d)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].LUN < out[b].LUN })
	return out, nil
}

func (f *fakeAttacher) Logout(ctx context.Context, key SessionKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.sessions[key]
	if s == nil {
		return nil
	}
	if len(s.devs) > 0 {
		f.badLogouts = append(f.badLogouts, key)
	}
	delete(f.sessions, key)
	f.logouts = append(f.logouts, key)
	return nil
}

func (f *fakeAttacher) sessionCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sessions)
}

// env is one test's root directory, fake attacher and manager.
type env struct {
	root string
	att  *fakeAttacher
	m    *Manager
	ctx  context.Context
}

func newEnv(t *testing.T, size int64) *env {
	t.Helper()
	requirePrereqs(t, "mkfs.ext4", "blkid")
	root := t.TempDir()
	att := newFakeAttacher(t, size)
	m, err := NewManager(root, att, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	m.passDelay = 10 * time.Millisecond
	m.multipathd = func() bool { return false }
	t.Cleanup(func() { unmountUnder(filepath.Dir(root)) }) // all of this test's temp dirs; runs before the loop detach above
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return &env{root: root, att: att, m: m, ctx: ctx}
}

// assertClean checks that nothing is left: no mounts under root, no loop
// devices, no sessions, no global directory.
func (e *env) assertClean(t *testing.T, global string) {
	t.Helper()
	mi, err := readMountInfo()
	require.NoError(t, err)
	for _, m := range mi {
		require.False(t, strings.HasPrefix(m.MountPoint, e.root+"/"), "leftover mount %s", m.MountPoint)
	}
	require.Zero(t, e.att.loops.count(), "leftover loop devices")
	require.Zero(t, e.att.sessionCount(), "leftover sessions")
	require.Empty(t, e.att.badLogouts, "logged out a session that still had devices")
	_, err = os.Stat(global)
	require.True(t, errors.Is(err, os.ErrNotExist), "global dir %s still exists (%v)", global, err)
}

func stringsReader(s string) io.Reader { return strings.NewReader(s) }
