package volume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func testVolume(lun int32, fs string) Volume {
	return Volume{TargetPortal: "127.0.0.1:3260", IQN: testIQN, LUN: lun, FSType: fs}
}

func mountCount(t *testing.T, p string) int {
	t.Helper()
	mi, err := readMountInfo()
	require.NoError(t, err)
	return len(mountsAt(mi, p))
}

func requireEROFS(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	require.True(t, errors.Is(err, unix.EROFS), "want EROFS, got %v", err)
}

// TestLifecycle: stage, publish twice (rw and ro), write, unpublish twice,
// unstage, stage again (no reformat: data still there), unstage; every step
// repeated to check idempotence.
func TestLifecycle(t *testing.T) {
	requirePrereqs(t, "mkfs.ext4", "mkfs.xfs", "mkfs.btrfs", "blkid")
	for _, fs := range []string{"ext4", "xfs", "btrfs"} {
		t.Run(fs, func(t *testing.T) {
			e := newEnv(t, diskSize(fs))
			v := testVolume(0, fs)
			ctx := e.ctx

			res, err := e.m.Stage(ctx, v)
			require.NoError(t, err)
			assert.True(t, res.Formatted)
			assert.Equal(t, fs, res.FSType)
			require.Len(t, res.Devices, 1)
			assert.Equal(t, res.Devices[0].Path, res.DevicePath)
			global, err := e.m.GlobalPath(v)
			require.NoError(t, err)
			assert.Equal(t, global, res.GlobalPath)
			assert.Equal(t, filepath.Join(e.root, "iscsi", "iface-default", "127.0.0.1:3260-"+testIQN+"-lun-0"), global)

			res2, err := e.m.Stage(ctx, v) // idempotent
			require.NoError(t, err)
			assert.False(t, res2.Formatted)
			assert.Equal(t, res.DevicePath, res2.DevicePath)
			assert.Equal(t, 1, mountCount(t, global))

			pods := t.TempDir()
			rw, ro := filepath.Join(pods, "a", "vol"), filepath.Join(pods, "b", "vol")
			for i := 0; i < 2; i++ {
				require.NoError(t, e.m.Publish(ctx, v, rw, PublishOptions{}))
				require.NoError(t, e.m.Publish(ctx, v, ro, PublishOptions{ReadOnly: true}))
			}
			assert.Equal(t, 1, mountCount(t, rw))
			assert.Equal(t, 1, mountCount(t, ro))

			require.NoError(t, os.WriteFile(filepath.Join(rw, "hello"), []byte("world"), 0o644))
			b, err := os.ReadFile(filepath.Join(ro, "hello"))
			require.NoError(t, err)
			assert.Equal(t, "world", string(b))
			requireEROFS(t, os.WriteFile(filepath.Join(ro, "nope"), []byte("x"), 0o644))

			// Unstage while published is refused and leaves everything mounted.
			err = e.m.Unstage(ctx, global)
			require.ErrorIs(t, err, ErrInUse)
			assert.Equal(t, 1, mountCount(t, global))

			for i := 0; i < 2; i++ {
				require.NoError(t, e.m.Unpublish(ctx, rw))
				require.NoError(t, e.m.Unpublish(ctx, ro))
			}
			_, err = os.Stat(rw)
			assert.True(t, errors.Is(err, os.ErrNotExist))
			for i := 0; i < 2; i++ {
				require.NoError(t, e.m.Unstage(ctx, global))
			}
			e.assertClean(t, global)
			require.Len(t, e.att.logouts, 1)

			// Stage again: same data, no reformat.
			res, err = e.m.Stage(ctx, v)
			require.NoError(t, err)
			assert.False(t, res.Formatted)
			require.NoError(t, e.m.Publish(ctx, v, rw, PublishOptions{}))
			b, err = os.ReadFile(filepath.Join(rw, "hello"))
			require.NoError(t, err)
			assert.Equal(t, "world", string(b))
			require.NoError(t, e.m.Unpublish(ctx, rw))
			require.NoError(t, e.m.Unstage(ctx, global))
			e.assertClean(t, global)
		})
	}
}

func TestPublishErrors(t *testing.T) {
	e := newEnv(t, smallDisk)
	v := testVolume(0, "ext4")
	target := filepath.Join(t.TempDir(), "t")
	require.ErrorIs(t, e.m.Publish(e.ctx, v, target, PublishOptions{}), ErrNotStaged)
	require.Error(t, e.m.Publish(e.ctx, v, "relative", PublishOptions{}))
	require.Error(t, e.m.Unpublish(e.ctx, "relative"))
	require.Error(t, e.m.Unstage(e.ctx, "/etc"))
	// Unpublish of something absent, and of a directory that is not ours (not empty): left alone.
	require.NoError(t, e.m.Unpublish(e.ctx, target))
	require.NoError(t, os.MkdirAll(target, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(target, "keep"), nil, 0o644))
	require.Error(t, e.m.Unpublish(e.ctx, target))
	_, err := os.Stat(filepath.Join(target, "keep"))
	require.NoError(t, err)
	// Unstage of something never staged is fine.
	global, err := e.m.GlobalPath(v)
	require.NoError(t, err)
	require.NoError(t, e.m.Unstage(e.ctx, global))
	// Read-only and blank: Stage refuses and never formats.
	v.ReadOnly = true
	_, err = e.m.Stage(e.ctx, v)
	require.ErrorIs(t, err, ErrReadOnlyBlank)
	require.NoError(t, e.m.Unstage(e.ctx, global))
	e.assertClean(t, global)
}

// TestReadOnlyVolume: readOnly, or the mount option "ro", never formats,
// mounts read-only and makes every bind read-only.
func TestReadOnlyVolume(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(v *Volume)
	}{
		{"readOnly", func(v *Volume) { v.ReadOnly = true }},
		{"mountOptions ro", func(v *Volume) { v.MountOptions = []string{"ro", "noatime"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, smallDisk)
			v := testVolume(0, "ext4")
			global, err := e.m.GlobalPath(v)
			require.NoError(t, err)
			ro := v
			tc.mod(&ro)
			_, err = e.m.Stage(e.ctx, ro) // blank: refused, never formatted
			require.ErrorIs(t, err, ErrReadOnlyBlank)
			require.NoError(t, e.m.Unstage(e.ctx, global))
			_, err = e.m.Stage(e.ctx, v) // format once
			require.NoError(t, err)
			require.NoError(t, e.m.Unstage(e.ctx, global))

			res, err := e.m.Stage(e.ctx, ro)
			require.NoError(t, err)
			assert.False(t, res.Formatted)
			assert.Contains(t, optionList(globalMount(t, global).Options), "ro")
			requireEROFS(t, os.WriteFile(filepath.Join(global, "x"), nil, 0o644))
			target := filepath.Join(t.TempDir(), "t")
			require.NoError(t, e.m.Publish(e.ctx, ro, target, PublishOptions{})) // ro implied by the volume
			assert.Contains(t, optionList(globalMount(t, target).Options), "ro")
			requireEROFS(t, os.WriteFile(filepath.Join(target, "x"), nil, 0o644))
			require.NoError(t, e.m.Unpublish(e.ctx, target))
			require.NoError(t, e.m.Unstage(e.ctx, global))
			e.assertClean(t, global)
		})
	}
}

func TestFSGroup(t *testing.T) {
	e := newEnv(t, smallDisk)
	v := testVolume(0, "ext4")
	global, err := e.m.GlobalPath(v)
	require.NoError(t, err)
	_, err = e.m.Stage(e.ctx, v)
	require.NoError(t, err)
	// Modes without the owner's bits: kubelet adds u+rw(x) too.
	require.NoError(t, os.MkdirAll(filepath.Join(global, "sub"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(global, "sub", "f"), nil, 0o600))
	require.NoError(t, os.Chmod(filepath.Join(global, "sub", "f"), 0o004))
	require.NoError(t, os.Chmod(filepath.Join(global, "sub"), 0o050))
	require.NoError(t, os.Symlink("/etc/passwd", filepath.Join(global, "link")))

	target := filepath.Join(t.TempDir(), "t")
	gid := int64(4321)
	require.NoError(t, e.m.Publish(e.ctx, v, target, PublishOptions{FSGroup: &gid}))
	for _, tc := range []struct {
		p    string
		mode os.FileMode
	}{{"", os.ModeSetgid | 0o770}, {"sub", os.ModeSetgid | 0o770}, {"sub/f", 0o660}} {
		var st unix.Stat_t
		require.NoError(t, unix.Lstat(filepath.Join(target, tc.p), &st))
		assert.Equal(t, uint32(gid), st.Gid, tc.p)
		fi, err := os.Stat(filepath.Join(target, tc.p))
		require.NoError(t, err)
		// kubelet's masks: ug+rw on files, ug+rwx and setgid on directories.
		assert.Equal(t, tc.mode, fi.Mode()&(os.ModeSetgid|0o770), tc.p)
	}
	var st unix.Stat_t
	require.NoError(t, unix.Stat("/etc/passwd", &st))
	assert.NotEqual(t, uint32(gid), st.Gid, "followed a symlink")
	require.NoError(t, e.m.Unpublish(e.ctx, target))
	require.NoError(t, e.m.Unstage(e.ctx, global))
	e.assertClean(t, global)
}

// TestFSGroupPolicy: OnRootMismatch leaves a volume whose root already
// matches alone; Always walks it; a file that cannot be changed is logged,
// not fatal (an immutable file refuses chown and chmod even to root).
func TestFSGroupPolicy(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	gid := 4322
	sub := filepath.Join(dir, "f")
	require.NoError(t, os.WriteFile(sub, nil, 0o600))
	require.NoError(t, os.Chown(dir, -1, gid))
	require.NoError(t, os.Chmod(dir, 0o770|os.ModeSetgid))
	var logBuf strings.Builder
	log := slog.New(slog.NewTextHandler(&logBuf, nil))

	setVolumeOwnership(ctx, log, dir, gid, false, FSGroupChangeOnRootMismatch)
	fi, err := os.Stat(sub)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "OnRootMismatch walked a matching volume")

	setVolumeOwnership(ctx, log, dir, gid, false, FSGroupChangeAlways)
	fi, err = os.Stat(sub)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o660), fi.Mode().Perm(), "Always walks")

	// The root no longer matches (another group): OnRootMismatch walks.
	require.NoError(t, os.Chown(dir, -1, 0))
	require.NoError(t, os.Chmod(sub, 0o600))
	setVolumeOwnership(ctx, log, dir, gid, false, FSGroupChangeOnRootMismatch)
	fi, err = os.Stat(sub)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o660), fi.Mode().Perm())
	assert.True(t, ownershipMismatch(filepath.Join(dir, "missing"), gid, false))
	assert.False(t, ownershipMismatch(dir, gid, false))

	// Errors are logged and the walk goes on.
	e := newEnv(t, smallDisk)
	v := testVolume(0, "ext4")
	global, _ := e.m.GlobalPath(v)
	_, err = e.m.Stage(e.ctx, v)
	require.NoError(t, err)
	e.m.log = log
	stuck := filepath.Join(global, "a-immutable")
	other := filepath.Join(global, "b-other")
	require.NoError(t, os.WriteFile(stuck, nil, 0o600))
	require.NoError(t, os.WriteFile(other, nil, 0o600))
	setImmutable(t, stuck, true)
	target := filepath.Join(t.TempDir(), "t")
	g := int64(gid)
	require.NoError(t, e.m.Publish(e.ctx, v, target, PublishOptions{FSGroup: &g}), "a file that cannot be changed fails Publish")
	fi, err = os.Stat(filepath.Join(target, "b-other"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o660), fi.Mode().Perm(), "the walk stopped at the failing file")
	assert.Contains(t, logBuf.String(), "a-immutable")
	require.Error(t, e.m.Publish(e.ctx, v, target, PublishOptions{FSGroup: &g, FSGroupChangePolicy: "Sometimes"}))
	setImmutable(t, stuck, false)
	require.NoError(t, e.m.Unpublish(e.ctx, target))
	require.NoError(t, e.m.Unstage(e.ctx, global))
}

// fsImmutableFL is FS_IMMUTABLE_FL (linux/fs.h).
const fsImmutableFL = 0x10

// setImmutable sets or clears a file's immutable attribute (chattr +i).
func setImmutable(t *testing.T, p string, on bool) {
	t.Helper()
	f, err := os.Open(p)
	require.NoError(t, err)
	defer f.Close()
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	require.NoError(t, err)
	if on {
		flags |= fsImmutableFL
	} else {
		flags &^= fsImmutableFL
	}
	require.NoError(t, unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags)))
}

func TestBlockMode(t *testing.T) {
	e := newEnv(t, smallDisk)
	v := testVolume(2, "")
	v.VolumeMode = ModeBlock
	v.SessionCHAPAuth = true
	v.Secrets = Secrets{SecretSessionUser: "alice", SecretSessionPassword: testSecret}
	global, err := e.m.GlobalPath(v)
	require.NoError(t, err)

	res, err := e.m.Stage(e.ctx, v)
	require.NoError(t, err)
	assert.False(t, res.Formatted)
	assert.Empty(t, res.FSType)
	sigs, err := ProbeDevice(e.ctx, res.DevicePath)
	require.NoError(t, err)
	assert.Empty(t, sigs, "block mode must not format")
	assert.Equal(t, 0, mountCount(t, global))
	// CHAP reached the attacher; the record has no secret.
	require.NotEmpty(t, e.att.specs)
	require.NotNil(t, e.att.specs[0].SessionCHAP)
	assert.Equal(t, testSecret, e.att.specs[0].SessionCHAP.Secret)
	rec, err := os.ReadFile(filepath.Join(global, RecordFile))
	require.NoError(t, err)
	assert.NotContains(t, string(rec), testSecret)
	assert.Contains(t, string(rec), res.DevicePath)

	dir := t.TempDir()
	rw, rw2 := filepath.Join(dir, "p1", "dev"), filepath.Join(dir, "p2", "dev")
	for i := 0; i < 2; i++ {
		require.NoError(t, e.m.Publish(e.ctx, v, rw, PublishOptions{}))
		require.NoError(t, e.m.Publish(e.ctx, v, rw2, PublishOptions{}))
	}
	assert.Equal(t, 1, mountCount(t, rw))
	// A read-only publish of a writable block volume cannot be enforced: refused.
	require.ErrorIs(t, e.m.Publish(e.ctx, v, filepath.Join(dir, "p3", "dev"), PublishOptions{ReadOnly: true}), ErrBlockReadOnly)
	f, err := os.OpenFile(rw, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte("block data"), 4096)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	g, err := os.Open(rw2)
	require.NoError(t, err)
	buf := make([]byte, 10)
	_, err = g.ReadAt(buf, 4096)
	require.NoError(t, err)
	require.NoError(t, g.Close())
	assert.Equal(t, "block data", string(buf))

	require.ErrorIs(t, e.m.Unstage(e.ctx, global), ErrInUse)
	for i := 0; i < 2; i++ {
		require.NoError(t, e.m.Unpublish(e.ctx, rw))
		require.NoError(t, e.m.Unpublish(e.ctx, rw2))
	}
	require.NoError(t, e.m.Unstage(e.ctx, global))
	e.assertClean(t, global)

	// A read-only block volume is read-only in the block layer.
	v.ReadOnly = true
	res, err = e.m.Stage(e.ctx, v)
	require.NoError(t, err)
	ro := filepath.Join(dir, "p4", "dev")
	require.NoError(t, e.m.Publish(e.ctx, v, ro, PublishOptions{}))
	g, err = os.OpenFile(ro, os.O_RDWR, 0)
	if err == nil {
		_, err = g.WriteAt([]byte("x"), 0)
		if err == nil {
			err = g.Sync()
		}
		g.Close()
	}
	require.Error(t, err, "wrote to a read-only block volume")
	assert.True(t, errors.Is(err, unix.EPERM) || errors.Is(err, unix.EROFS) || errors.Is(err, unix.EACCES), "%v", err)
	require.NoError(t, e.m.Unpublish(e.ctx, ro))
	require.NoError(t, e.m.Unstage(e.ctx, global))
	e.assertClean(t, global)
}

// TestSessionBusy: two LUNs on one session; unstaging one never logs out
// the session the other still uses.
func TestSessionBusy(t *testing.T) {
	e := newEnv(t, smallDisk)
	v0, v1 := testVolume(0, "ext4"), testVolume(1, "ext4")
	g0, _ := e.m.GlobalPath(v0)
	g1, _ := e.m.GlobalPath(v1)
	r0, err := e.m.Stage(e.ctx, v0)
	require.NoError(t, err)
	r1, err := e.m.Stage(e.ctx, v1)
	require.NoError(t, err)
	assert.Equal(t, r0.Devices[0].SessionID, r1.Devices[0].SessionID, "same session")
	require.NoError(t, os.WriteFile(filepath.Join(g1, "f"), []byte("v1"), 0o644))

	require.NoError(t, e.m.Unstage(e.ctx, g0))
	assert.Empty(t, e.att.logouts, "logged out while LUN 1 is staged")
	assert.Equal(t, 1, e.att.sessionCount())
	b, err := os.ReadFile(filepath.Join(g1, "f"))
	require.NoError(t, err)
	assert.Equal(t, "v1", string(b))

	require.NoError(t, e.m.Unstage(e.ctx, g1))
	assert.Len(t, e.att.logouts, 1)
	e.assertClean(t, g1)
	assert.Empty(t, e.att.badLogouts)
}

// TestParallelStagesSameTarget: two LUNs of one IQN staged at once are
// serialized by the per-target lock; another IQN is not blocked.
func TestParallelStagesSameTarget(t *testing.T) {
	e := newEnv(t, smallDisk)
	e.att.delay = 300 * time.Millisecond
	other := testVolume(0, "ext4")
	other.IQN = "iqn.2024-01.org.gosan:other"
	vols := []Volume{testVolume(0, "ext4"), testVolume(1, "ext4"), other}
	var wg sync.WaitGroup
	errs := make([]error, len(vols))
	for i, v := range vols {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.m.Stage(e.ctx, v)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, 1, e.att.maxInflight[testIQN], "attaches on one IQN overlapped")
	assert.Equal(t, 2, e.att.maxAll, "different IQNs should run in parallel")
	assert.Equal(t, 2, e.att.sessionCount())

	// Parallel unstages too.
	for i, v := range vols {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g, _ := e.m.GlobalPath(v)
			errs[i] = e.m.Unstage(e.ctx, g)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	g, _ := e.m.GlobalPath(vols[0])
	e.assertClean(t, g)
	assert.Len(t, e.att.logouts, 2)
}

// TestFormatDoesNotHoldTarget: while one LUN of a target is being
// formatted (held in the step after mkfs), another LUN of the same target
// stages completely: the target lock covers only the session work.
func TestFormatDoesNotHoldTarget(t *testing.T) {
	e := newEnv(t, smallDisk)
	inFormat, otherDone := make(chan struct{}), make(chan struct{})
	var first sync.Once
	e.m.fault = func(step string) error {
		if step != "stage:format" {
			return nil
		}
		blocked := false
		first.Do(func() { blocked = true })
		if !blocked {
			return nil
		}
		close(inFormat)
		select {
		case <-otherDone:
			return nil
		case <-time.After(20 * time.Second):
			return errors.New("the other LUN never finished staging")
		}
	}
	errA := make(chan error, 1)
	go func() {
		_, err := e.m.Stage(e.ctx, testVolume(0, "ext4"))
		errA <- err
	}()
	<-inFormat
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	res, err := e.m.Stage(ctx, testVolume(1, "ext4"))
	close(otherDone)
	require.NoError(t, err, "LUN 1 blocked behind LUN 0's format")
	assert.True(t, res.Formatted)
	require.NoError(t, <-errA)
	assert.Equal(t, 1, e.att.maxInflight[testIQN], "attaches on one IQN still never overlap")
	for _, lun := range []int32{0, 1} {
		g, _ := e.m.GlobalPath(testVolume(lun, "ext4"))
		require.NoError(t, e.m.Unstage(e.ctx, g))
	}
	assert.Equal(t, 0, e.att.sessionCount())
}

// TestParallelStageEightLUNs stages eight LUNs of one target at once (the
// common layout) and logs how long that took; the attaches never overlap,
// the formats do. `go test -run TestParallelStageEightLUNs -v` prints the time.
func TestParallelStageEightLUNs(t *testing.T) {
	e := newEnv(t, smallDisk)
	e.att.delay = 50 * time.Millisecond // a login and scan
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.m.Stage(e.ctx, testVolume(int32(i), "ext4"))
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, err := range errs {
		require.NoError(t, err)
	}
	t.Logf("staged %d LUNs of one target in parallel in %v", n, elapsed.Round(time.Millisecond))
	assert.Equal(t, 1, e.att.maxInflight[testIQN], "attaches on one IQN overlapped")
	for i := range n {
		g, _ := e.m.GlobalPath(testVolume(int32(i), "ext4"))
		require.NoError(t, e.m.Unstage(e.ctx, g))
	}
}

func TestParseGlobalName(t *testing.T) {
	for _, tc := range []struct {
		in, portal, iqn string
		lun             int32
		isOK            bool
	}{
		{"127.0.0.1:3260-" + testIQN + "-lun-7", "127.0.0.1:3260", testIQN, 7, true},
		{"my-host.example:3260-iqn.2024-01.org.x:a-lun-1-lun-12", "my-host.example:3260", "iqn.2024-01.org.x:a-lun-1", 12, true},
		{"[fe80::1]:3260-eui.0123456789abcdef-lun-0", "[fe80::1]:3260", "eui.0123456789abcdef", 0, true},
		{"127.0.0.1:3260-" + testIQN, "", "", 0, false},
		{"127.0.0.1:3260-foo-lun-1", "", "", 0, false},
		{testIQN + "-lun-1", "", "", 0, false},
		{"127.0.0.1:3260-" + testIQN + "-lun-x", "", "", 0, false},
	} {
		portal, iqn, lun, ok := parseGlobalName(tc.in)
		assert.Equal(t, tc.isOK, ok, tc.in)
		assert.Equal(t, tc.portal, portal, tc.in)
		assert.Equal(t, tc.iqn, iqn, tc.in)
		assert.Equal(t, tc.lun, lun, tc.in)
	}
}

func TestTargetLockAcrossFiles(t *testing.T) {
	// Two flocks on the same file (as two processes would take) exclude each other.
	p := filepath.Join(t.TempDir(), "x", "t.lock")
	unlock, err := lockFile(context.Background(), p)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = lockFile(ctx, p)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	unlock()
	unlock2, err := lockFile(context.Background(), p)
	require.NoError(t, err)
	unlock2()
}

func TestMultipathPaths(t *testing.T) {
	e := newEnv(t, smallDisk)
	v := testVolume(0, "ext4")
	v.Portals = []string{"127.0.0.2:3260", "127.0.0.3"}
	e.att.failPortal["127.0.0.3:3260"] = errors.New("connection refused")
	global, _ := e.m.GlobalPath(v)
	res, err := e.m.Stage(e.ctx, v)
	require.NoError(t, err)
	require.Len(t, res.Devices, 2)
	assert.Equal(t, res.Devices[0].Path, res.DevicePath, "no dm map: first path")
	assert.Equal(t, "127.0.0.1:3260", res.Devices[0].Portal)
	assert.Equal(t, "127.0.0.2:3260", res.Devices[1].Portal)
	require.Len(t, res.Failed, 1)
	assert.Equal(t, "127.0.0.3:3260", res.Failed[0].Portal)
	assert.Equal(t, 2, e.att.sessionCount())

	// Unstage removes every path and logs out every session (the failed
	// portal's absent session too, harmlessly).
	require.NoError(t, e.m.Unstage(e.ctx, global))
	assert.Len(t, e.att.deleted, 2)
	assert.Len(t, e.att.logouts, 2)
	e.assertClean(t, global)

	// No path at all: an error naming each portal.
	for _, p := range []string{"127.0.0.1:3260", "127.0.0.2:3260"} {
		e.att.failPortal[p] = fmt.Errorf("refused %s", p)
	}
	_, err = e.m.Stage(e.ctx, v)
	require.Error(t, err)
	var pe *PortalError
	require.ErrorAs(t, err, &pe)
	assert.Contains(t, err.Error(), "127.0.0.2:3260")
	require.NoError(t, e.m.Unstage(e.ctx, global))
	e.assertClean(t, global)
}

var errCrash = errors.New("simulated crash")

// TestCrashBetweenSteps aborts each operation after each step, then reruns
// the whole operation and the rest of the lifecycle, and checks that data
// survives, nothing is formatted twice and nothing leaks.
func TestCrashBetweenSteps(t *testing.T) {
	steps := []string{
		"stage:record", "stage:attach", "stage:record-devices", "stage:format", "stage:mount",
		"publish:mkdir", "publish:bind", "publish:remount",
		"unpublish:unmount",
		"unstage:unmount", "unstage:delete-devices", "unstage:logout", "unstage:remove-record",
	}
	for _, step := range steps {
		t.Run(step, func(t *testing.T) {
			e := newEnv(t, smallDisk)
			v := testVolume(0, "ext4")
			global, _ := e.m.GlobalPath(v)
			target := filepath.Join(t.TempDir(), "pod", "vol")
			op := strings.SplitN(step, ":", 2)[0]
			crashed := false
			e.m.fault = func(s string) error {
				if s == step && !crashed {
					crashed = true
					return errCrash
				}
				return nil
			}
			do := func(name string, f func() error) {
				t.Helper()
				err := f()
				if name == op && crashed && errors.Is(err, errCrash) {
					err = f() // rerun the whole step after the "crash"
				}
				require.NoError(t, err, name)
			}
			formatted := 0
			stage := func() error {
				res, err := e.m.Stage(e.ctx, v)
				if err == nil && res.Formatted {
					formatted++
				}
				return err
			}
			do("stage", stage)
			do("publish", func() error { return e.m.Publish(e.ctx, v, target, PublishOptions{ReadOnly: true}) })
			requireEROFS(t, os.WriteFile(filepath.Join(target, "x"), nil, 0o644))
			require.NoError(t, os.WriteFile(filepath.Join(global, "data"), []byte("kept"), 0o644))
			do("unpublish", func() error { return e.m.Unpublish(e.ctx, target) })
			do("unstage", func() error { return e.m.Unstage(e.ctx, global) })
			require.True(t, crashed, "fault hook for %s never ran", step)
			e.assertClean(t, global)

			do("stage", stage)
			b, err := os.ReadFile(filepath.Join(global, "data"))
			require.NoError(t, err)
			assert.Equal(t, "kept", string(b))
			// (a crash right after mkfs hides the first Formatted=true; the
			// surviving file proves there was no second mkfs)
			assert.LessOrEqual(t, formatted, 1, "formatted more than once")
			require.NoError(t, e.m.Unstage(e.ctx, global))
			e.assertClean(t, global)
		})
	}
}

func TestGlobalPath(t *testing.T) {
	m, err := NewManager("/var/lib/kubelet/plugins/kubernetes.io", &fakeAttacher{})
	require.NoError(t, err)
	p, err := m.GlobalPath(Volume{TargetPortal: "10.0.0.1", IQN: testIQN, LUN: 7})
	require.NoError(t, err)
	assert.Equal(t, "/var/lib/kubelet/plugins/kubernetes.io/iscsi/iface-default/10.0.0.1:3260-"+testIQN+"-lun-7", p, "kubelet's makePDNameInternal")
	p, err = m.GlobalPath(Volume{TargetPortal: "10.0.0.1", IQN: testIQN, LUN: 7, ISCSIInterface: "eth1", VolumeMode: ModeBlock})
	require.NoError(t, err)
	assert.Equal(t, "/var/lib/kubelet/plugins/kubernetes.io/iscsi/volumeDevices/iface-eth1/10.0.0.1:3260-"+testIQN+"-lun-7", p, "kubelet's makeVDPDNameInternal")
	_, err = m.GlobalPath(Volume{})
	assert.Error(t, err)
	_, err = NewManager("relative", &fakeAttacher{})
	assert.Error(t, err)
	_, err = NewManager("/x", nil)
	assert.Error(t, err)
	assert.True(t, errors.Is(&ToolMissingError{Tool: "mkfs.xfs", Package: "xfsprogs"}, ErrToolMissing))
}

// kubeletJSON is an iscsi.json as kubelet's in-tree plugin writes it
// (json.Encoder on its iscsiDisk: exported fields, Go names, Lun a string).
func kubeletJSON(lun int) string {
	return fmt.Sprintf(`{"VolName":"pv-1","Portals":["127.0.0.1:3260"],"Iqn":%q,"Lun":"%d",`+
		`"InitIface":"default","Iface":"default","InitiatorName":"","MetricsProvider":{}}`+"\n", testIQN, lun)
}

// TestUnstageKubeletVolume: volumes staged by kubelet's in-tree plugin
// (its paths, its iscsi.json, or no iscsi.json at all) are unstaged: the
// mount, the devices and the session go.
func TestUnstageKubeletVolume(t *testing.T) {
	e := newEnv(t, smallDisk)
	name := func(lun int) string { return fmt.Sprintf("127.0.0.1:3260-%s-lun-%d", testIQN, lun) }
	fsDir := filepath.Join(e.root, "iscsi", "iface-default", name(0))
	blockDir := filepath.Join(e.root, "iscsi", "volumeDevices", "iface-default", name(1))
	noRecord := filepath.Join(e.root, "iscsi", "iface-default", name(2))
	key := SessionKey{Portal: "127.0.0.1:3260", TargetName: testIQN, Iface: "default"}
	for lun, dir := range []string{fsDir, blockDir, noRecord} {
		// What kubelet's AttachDisk and MountDevice leave behind.
		d, err := e.att.Attach(e.ctx, AttachSpec{SessionKey: key, LUN: uint64(lun)})
		require.NoError(t, err)
		require.NoError(t, os.MkdirAll(dir, 0o750))
		if dir != noRecord {
			require.NoError(t, os.WriteFile(filepath.Join(dir, RecordFile), []byte(kubeletJSON(lun)), 0o640))
		}
		if dir != blockDir {
			run(t, "mkfs.ext4", "-q", "-F", d.Path)
			require.NoError(t, unix.Mount(d.Path, dir, "ext4", 0, ""))
		}
	}
	rec, err := readRecord(blockDir, ModeBlock)
	require.NoError(t, err)
	assert.Equal(t, &Record{Portals: []string{"127.0.0.1:3260"}, TargetName: testIQN, LUN: 1, Iface: "default", VolumeMode: ModeBlock}, rec)

	require.NoError(t, e.m.Unstage(e.ctx, fsDir))
	assert.Zero(t, mountCount(t, fsDir))
	assert.NoDirExists(t, fsDir)
	assert.Empty(t, e.att.logouts, "logged out while LUNs 1 and 2 are staged")
	require.NoError(t, e.m.Unstage(e.ctx, blockDir))
	assert.NoDirExists(t, blockDir)
	require.NoError(t, e.m.Unstage(e.ctx, noRecord), "no iscsi.json: the path says what to tear down")
	assert.NoDirExists(t, noRecord)
	assert.Len(t, e.att.deleted, 3)
	assert.Equal(t, []SessionKey{key}, e.att.logouts)
	e.assertClean(t, noRecord)
}

// TestAttachPasses: as kubelet, a portal that fails is tried again in up
// to five passes; the passes stop at every path, or at two paths after the
// second pass; a portal that never answers is reported in Failed.
func TestAttachPasses(t *testing.T) {
	e := newEnv(t, smallDisk)
	v := testVolume(0, "ext4")
	v.VolumeMode = ModeBlock
	v.Portals = []string{"127.0.0.2:3260"}
	e.att.failTimes["127.0.0.2:3260"] = 2
	res, err := e.m.Stage(e.ctx, v)
	require.NoError(t, err)
	require.Len(t, res.Devices, 2, "the second path came up in the third pass")
	assert.Empty(t, res.Failed)
	assert.Equal(t, 3, res.Passes)
	assert.False(t, res.Multipath)
	require.NoError(t, e.m.Unstage(e.ctx, res.GlobalPath))

	// Three portals, one dead: two paths after the second pass are enough.
	v.Portals = []string{"127.0.0.2:3260", "127.0.0.3:3260"}
	e.att.failPortal["127.0.0.3:3260"] = errors.New("connection refused")
	res, err = e.m.Stage(e.ctx, v)
	require.NoError(t, err)
	assert.Len(t, res.Devices, 2)
	assert.Equal(t, 2, res.Passes)
	require.Len(t, res.Failed, 1)
	assert.Equal(t, "127.0.0.3:3260", res.Failed[0].Portal)
	require.NoError(t, e.m.Unstage(e.ctx, res.GlobalPath))

	// One portal that never answers: five passes, then the error.
	one := testVolume(1, "ext4")
	one.TargetPortal = "127.0.0.3:3260"
	_, err = e.m.Stage(e.ctx, one)
	require.ErrorContains(t, err, "no path after 5 passes")
	g, _ := e.m.GlobalPath(one)
	require.NoError(t, e.m.Unstage(e.ctx, g))
	e.assertClean(t, g)
}

// TestMultipathWait: multipathd builds its map some time after the paths
// appear; Stage waits for it (bounded) while multipathd runs, and uses the
// first path at once when it does not.
func TestMultipathWait(t *testing.T) {
	e := newEnv(t, smallDisk)
	sysfs := t.TempDir()
	e.m.sysfs = sysfs
	e.m.multipathd = func() bool { return true }
	v := testVolume(0, "ext4")
	v.VolumeMode = ModeBlock
	v.Portals = []string{"127.0.0.2:3260"}

	// multipathd: 300 ms after both paths exist, a map over the first;
	// 300 ms later the second path joins it.
	built := make(chan struct{})
	var slept time.Time
	go func() {
		defer close(built)
		for e.ctx.Err() == nil {
			devs1, _ := e.att.SessionDevices(e.ctx, SessionKey{Portal: "127.0.0.1:3260", TargetName: testIQN, Iface: "default"})
			devs2, _ := e.att.SessionDevices(e.ctx, SessionKey{Portal: "127.0.0.2:3260", TargetName: testIQN, Iface: "default"})
			if len(devs1) == 1 && len(devs2) == 1 {
				time.Sleep(300 * time.Millisecond)
				for _, d := range []string{
					filepath.Join("block", filepath.Base(devs1[0].Path), "holders", "dm-9"),
					filepath.Join("block", "dm-9", "dm"),
					filepath.Join("block", "dm-9", "slaves", filepath.Base(devs1[0].Path)),
				} {
					assert.NoError(t, os.MkdirAll(filepath.Join(sysfs, d), 0o755))
				}
				assert.NoError(t, os.WriteFile(filepath.Join(sysfs, "block", "dm-9", "dm", "uuid"), []byte("mpath-36001405abc\n"), 0o644))
				time.Sleep(300 * time.Millisecond)
				slept = time.Now()
				assert.NoError(t, os.MkdirAll(filepath.Join(sysfs, "block", "dm-9", "slaves", filepath.Base(devs2[0].Path)), 0o755))
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	res, err := e.m.Stage(e.ctx, v)
	require.NoError(t, err)
	<-built
	assert.False(t, time.Now().Before(slept), "Stage returned before the map held both paths")
	assert.Equal(t, "/dev/dm-9", res.DevicePath, "the map multipathd built after the attach")
	assert.True(t, res.Multipath)
	require.Len(t, res.Devices, 2, "both paths are reported")
	rec, err := readRecord(res.GlobalPath, ModeBlock)
	require.NoError(t, err)
	assert.Equal(t, "/dev/dm-9", rec.DevicePath)
	require.NoError(t, os.RemoveAll(filepath.Join(sysfs, "block"))) // the map is gone before Unstage (no multipath -f here)
	require.NoError(t, e.m.Unstage(e.ctx, res.GlobalPath))

	// A map over one path only: used when the bounded wait is over.
	require.NoError(t, os.MkdirAll(filepath.Join(sysfs, "block", "dm-9", "dm"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(sysfs, "block", "dm-9", "dm", "uuid"), []byte("mpath-36001405abc\n"), 0o644))
	e.m.multipathWait = 300 * time.Millisecond
	var once sync.Once
	e.m.fault = func(step string) error {
		if step == "stage:record" { // paths are attached next: put the map above the first
			once.Do(func() {
				go func() {
					for e.ctx.Err() == nil {
						devs, _ := e.att.SessionDevices(e.ctx, SessionKey{Portal: "127.0.0.1:3260", TargetName: testIQN, Iface: "default"})
						if len(devs) == 1 {
							assert.NoError(t, os.MkdirAll(filepath.Join(sysfs, "block", filepath.Base(devs[0].Path), "holders", "dm-9"), 0o755))
							return
						}
						time.Sleep(5 * time.Millisecond)
					}
				}()
			})
		}
		return nil
	}
	res, err = e.m.Stage(e.ctx, v)
	require.NoError(t, err)
	assert.Equal(t, "/dev/dm-9", res.DevicePath, "a map over some of the paths, after the wait")
	e.m.fault = nil
	require.NoError(t, os.RemoveAll(filepath.Join(sysfs, "block")))
	require.NoError(t, e.m.Unstage(e.ctx, res.GlobalPath))

	// No map ever: the wait is bounded.
	e.m.multipathWait = 300 * time.Millisecond
	start := time.Now()
	res, err = e.m.Stage(e.ctx, v)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "did not wait for multipathd")
	assert.False(t, res.Multipath)
	assert.Equal(t, res.Devices[0].Path, res.DevicePath)
	require.NoError(t, e.m.Unstage(e.ctx, res.GlobalPath))

	// multipathd not running: no wait.
	e.m.multipathd = func() bool { return false }
	e.m.multipathWait = time.Minute
	start = time.Now()
	res, err = e.m.Stage(e.ctx, v)
	require.NoError(t, err)
	assert.Less(t, time.Since(start), 10*time.Second)
	require.NoError(t, e.m.Unstage(e.ctx, res.GlobalPath))
	e.assertClean(t, res.GlobalPath)
}

// TestInitiatorNameIsolation: two volumes of one target with different
// initiator names get a session each (never one logged in under the other
// name), and unstaging one leaves the other's session alone.
func TestInitiatorNameIsolation(t *testing.T) {
	e := newEnv(t, smallDisk)
	v1, v2 := testVolume(1, "ext4"), testVolume(2, "ext4")
	v1.InitiatorName = "iqn.2026-11.org.gosan.test:app1"
	v2.InitiatorName = "iqn.2026-11.org.gosan.test:app2"
	r1, err := e.m.Stage(e.ctx, v1)
	require.NoError(t, err)
	r2, err := e.m.Stage(e.ctx, v2)
	require.NoError(t, err)
	assert.NotEqual(t, r1.Devices[0].SessionID, r2.Devices[0].SessionID, "one session per initiator name")
	assert.Equal(t, 2, e.att.sessionCount())
	for _, s := range e.att.specs {
		want := v1.InitiatorName
		if s.LUN == 2 {
			want = v2.InitiatorName
		}
		assert.Equal(t, want, s.InitiatorName)
		assert.Equal(t, want, s.SessionKey.InitiatorName)
	}
	require.NoError(t, e.m.Unstage(e.ctx, r1.GlobalPath))
	require.Len(t, e.att.logouts, 1)
	assert.Equal(t, v1.InitiatorName, e.att.logouts[0].InitiatorName, "logged out app1's session")
	assert.Equal(t, 1, e.att.sessionCount())
	require.NoError(t, e.m.Unstage(e.ctx, r2.GlobalPath))
	e.assertClean(t, r2.GlobalPath)
}
