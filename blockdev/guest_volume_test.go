//go:build vmguest

package blockdev_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gosan/iscsi/blockdev"
	"github.com/gosan/iscsi/blockdev/volume"
	"github.com/gosan/iscsi/internal/testenv/tgtd"
)

// The volume lifecycle on real iSCSI disks. These tests are in package
// blockdev_test because blockdev/volume imports blockdev (the mount layer
// depends on the kernel binding, not the reverse); the guest helpers come
// from export_vmguest_test.go. Guest side of vm_more_test.go (volumes
// sharing one session, several portals per volume with and without a
// dm-multipath map) and of TestKernelVolumeLifecycle.

// dropCaches makes the next read of a file come from the device.
func dropCaches(t *testing.T) {
	t.Helper()
	require.NoError(t, os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0o200))
}

// sessionWatch samples the sessions of iqn until stopped and remembers the
// largest number seen at once.
type sessionWatch struct {
	max  atomic.Int32
	stop chan struct{}
	done chan struct{}
}

func watchSessions(iqn string) *sessionWatch {
	w := &sessionWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			all, _ := blockdev.Sysfs{}.Sessions()
			n := int32(0)
			for _, s := range all {
				if s.TargetName == iqn {
					n++
				}
			}
			if n > w.max.Load() {
				w.max.Store(n)
			}
			select {
			case <-w.stop:
				return
			case <-tk.C:
			}
		}
	}()
	return w
}

func (w *sessionWatch) Stop() int {
	close(w.stop)
	<-w.done
	return int(w.max.Load())
}

// TestGuestSharedTarget: two volumes (LUN 1 and LUN 2 of one target)
// staged and unstaged by two goroutines at once share one session; the
// first unstage does not log it out under the second volume.
func TestGuestSharedTarget(t *testing.T) {
	e := blockdev.LoadEnv(t)
	fix := e.Fixture
	k := blockdev.OpenKernel(t)
	ctx := blockdev.GuestCtx(t, 5*time.Minute)
	root := t.TempDir()
	m, err := volume.NewManager(root, volume.KernelAttacher(k))
	require.NoError(t, err)
	iqn := fix.MultiLUN.IQN
	vol := func(lun int32) volume.Volume {
		return volume.Volume{TargetPortal: fix.Portal, IQN: iqn, LUN: lun, FSType: "ext4"}
	}

	t.Run("ordered", func(t *testing.T) {
		w := watchSessions(iqn)
		var (
			staged   sync.WaitGroup // both volumes staged and written
			firstOut = make(chan struct{})
			wg       sync.WaitGroup
			sids     [2]int
		)
		staged.Add(2)
		errs := make([]error, 2)
		for i, lun := range []int32{1, 2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = func() error {
					if lun == 1 {
						// LUN 1 leaves first, LUN 2 still staged.
						defer close(firstOut)
					}
					v := vol(lun)
					st, err := m.Stage(ctx, v)
					if err != nil {
						staged.Done()
						return fmt.Errorf("stage lun %d: %w", lun, err)
					}
					sids[i] = st.Devices[0].SessionID
					content := fmt.Sprintf("lun %d seed %d", lun, e.Seed)
					err = os.WriteFile(filepath.Join(st.GlobalPath, "f.txt"), []byte(content), 0o644)
					staged.Done()
					if err != nil {
						return err
					}
					staged.Wait()
					if lun == 1 {
						return m.Unstage(ctx, st.GlobalPath)
					}
					<-firstOut
					// The session survived the first unstage.
					all := blockdev.SessionsFor(t, iqn)
					if len(all) != 1 || int(all[0].SID) != st.Devices[0].SessionID || all[0].State != "LOGGED_IN" {
						return fmt.Errorf("after the first unstage: sessions %+v, want session %d LOGGED_IN", all, st.Devices[0].SessionID)
					}
					dropCaches(t)
					b, err := os.ReadFile(filepath.Join(st.GlobalPath, "f.txt"))
					if err != nil {
						return fmt.Errorf("LUN 2's file after LUN 1's unstage: %w", err)
					}
					if string(b) != content {
						return fmt.Errorf("LUN 2's file reads %q, want %q", b, content)
					}
					return m.Unstage(ctx, st.GlobalPath)
				}()
			}()
		}
		wg.Wait()
		maxSess := w.Stop()
		for i, err := range errs {
			require.NoError(t, err, "goroutine of LUN %d", i+1)
		}
		assert.Equal(t, 1, maxSess, "at most one session to the target at any time")
		assert.Equal(t, sids[0], sids[1], "both volumes on one session")
		assert.Empty(t, blockdev.SessionsFor(t, iqn), "session gone after both unstaged")
		blockdev.RequireNoSessions(t)
	})

	t.Run("free-running", func(t *testing.T) {
		// Both goroutines stage, write, check and unstage three times
		// without any ordering: the per-target lock keeps a logout from
		// racing the other volume's login or scan.
		w := watchSessions(iqn)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, lun := range []int32{1, 2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for round := 0; round < 3 && errs[i] == nil; round++ {
					errs[i] = func() error {
						st, err := m.Stage(ctx, vol(lun))
						if err != nil {
							return fmt.Errorf("round %d stage lun %d: %w", round, lun, err)
						}
						if st.Formatted {
							return fmt.Errorf("round %d lun %d: formatted again", round, lun)
						}
						p := filepath.Join(st.GlobalPath, "f.txt")
						// The file of the ordered run is still there (no reformat).
						b, err := os.ReadFile(p)
						if err != nil || string(b) != fmt.Sprintf("lun %d seed %d", lun, e.Seed) {
							return fmt.Errorf("round %d lun %d: old file %q: %v", round, lun, b, err)
						}
						if err := os.WriteFile(filepath.Join(st.GlobalPath, fmt.Sprintf("r%d.txt", round)), []byte("x"), 0o644); err != nil {
							return err
						}
						return m.Unstage(ctx, st.GlobalPath)
					}()
				}
			}()
		}
		wg.Wait()
		maxSess := w.Stop()
		for i, err := range errs {
			require.NoError(t, err, "goroutine of LUN %d", i+1)
		}
		assert.LessOrEqual(t, maxSess, 1, "never two sessions to one target")
		blockdev.RequireNoSessions(t)
	})
}

// guestPortal2 is the fixture's second portal (same tgtd, another port).
func guestPortal2(t *testing.T) string {
	p := os.Getenv("BD_PORTAL2")
	require.NotEmpty(t, p, "BD_PORTAL2: the host test passes the second portal")
	return p
}

func blockName(p string) string { return filepath.Base(p) }

func devNum(t *testing.T, path string) string {
	b, err := os.ReadFile(filepath.Join("/sys/block", blockName(path), "dev"))
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}

// TestGuestMultiPortal: one volume over two portals of one target.
func TestGuestMultiPortal(t *testing.T) {
	e := blockdev.LoadEnv(t)
	fix := e.Fixture
	p2 := guestPortal2(t)
	require.NotEqual(t, fix.Portal, p2)
	k := blockdev.OpenKernel(t)
	ctx := blockdev.GuestCtx(t, 5*time.Minute)
	root := t.TempDir()
	m, err := volume.NewManager(root, volume.KernelAttacher(k))
	require.NoError(t, err)
	iqn := fix.Plain.IQN
	v := volume.Volume{TargetPortal: fix.Portal, Portals: []string{p2}, IQN: iqn, LUN: 1, FSType: "ext4"}
	content := fmt.Sprintf("multipath seed %d", e.Seed)

	t.Run("no-dm", func(t *testing.T) {
		st, err := m.Stage(ctx, v)
		require.NoError(t, err)
		require.Len(t, st.Devices, 2, "one device per path")
		assert.Empty(t, st.Failed)
		d1, d2 := st.Devices[0], st.Devices[1]
		t.Logf("paths: %s (%s, session %d) and %s (%s, session %d); using %s",
			d1.Path, d1.Portal, d1.SessionID, d2.Path, d2.Portal, d2.SessionID, st.DevicePath)
		assert.NotEqual(t, d1.SessionID, d2.SessionID, "one session per portal")
		assert.NotEqual(t, d1.Path, d2.Path, "one block device per path")
		assert.NotEqual(t, d1.HostNo, d2.HostNo)
		assert.Equal(t, d1.Path, st.DevicePath, "without dm-multipath the first path is used")
		assert.Equal(t, fix.Portal, d1.Portal)
		assert.Equal(t, p2, d2.Portal, "the other path is reported")
		sess := blockdev.SessionsFor(t, iqn)
		require.Len(t, sess, 2)
		portals := []string{sess[0].Portal, sess[1].Portal}
		assert.ElementsMatch(t, []string{fix.Portal, p2}, portals)
		for _, s := range sess {
			assert.Equal(t, "LOGGED_IN", s.State)
		}
		require.NoError(t, os.WriteFile(filepath.Join(st.GlobalPath, "f.txt"), []byte(content), 0o644))

		require.NoError(t, m.Unstage(ctx, st.GlobalPath))
		for _, d := range st.Devices {
			assert.NoFileExists(t, d.Path)
			assert.False(t, blockdev.Sysfs{}.BlockExists(blockName(d.Path)), "%s still in sysfs", d.Path)
		}
		assert.Empty(t, blockdev.SessionsFor(t, iqn), "both sessions logged out")
		blockdev.RequireNoSessions(t)
	})

	t.Run("dm-multipath", func(t *testing.T) {
		dmsetup, err := exec.LookPath("dmsetup")
		require.NoError(t, err, "the host test copies dmsetup (Debian package dmsetup) into the guest")
		_, err = os.Stat("/dev/mapper/control")
		require.NoError(t, err, "device-mapper not loaded (vmtest.SetMultipath)")
		// What multipathd would do on the uevents of the two paths: a
		// multipath map over both, uuid "mpath-<wwid>". Build it by hand
		// from attached paths, then stage: the Manager must use it.
		a, err := k.Attach(ctx, blockdev.Spec{Portal: fix.Portal, TargetName: iqn, LUN: 1})
		require.NoError(t, err)
		b, err := k.Attach(ctx, blockdev.Spec{Portal: p2, TargetName: iqn, LUN: 1})
		require.NoError(t, err)
		require.NotEqual(t, a.Path, b.Path)
		sectors := a.Size / 512
		table := fmt.Sprintf("0 %d multipath 0 0 1 1 round-robin 0 2 1 %s 1000 %s 1000",
			sectors, devNum(t, a.Path), devNum(t, b.Path))
		out, err := exec.CommandContext(ctx, dmsetup, "create", "mpatha", "--noudevsync",
			"--uuid", "mpath-gosan-test-plain", "--table", table).CombinedOutput()
		require.NoError(t, err, "dmsetup create: %s", out)
		holders, err := os.ReadDir(filepath.Join("/sys/block", a.Name, "holders"))
		require.NoError(t, err)
		require.Len(t, holders, 1)
		dm := "/dev/" + holders[0].Name()
		t.Logf("dm-multipath map %s over %s and %s: %s", dm, a.Path, b.Path, table)

		st, err := m.Stage(ctx, v)
		require.NoError(t, err)
		assert.Equal(t, dm, st.DevicePath, "the dm device is used when it exists")
		require.Len(t, st.Devices, 2)
		assert.Equal(t, a.Path, st.Devices[0].Path, "the existing paths are reused")
		assert.Equal(t, b.Path, st.Devices[1].Path)
		assert.False(t, st.Formatted, "the filesystem from the no-dm run is found through dm")
		assert.Len(t, blockdev.SessionsFor(t, iqn), 2)
		dropCaches(t)
		got, err := os.ReadFile(filepath.Join(st.GlobalPath, "f.txt"))
		require.NoError(t, err, "file written through the first path, read through dm")
		assert.Equal(t, content, string(got))
		require.NoError(t, os.WriteFile(filepath.Join(st.GlobalPath, "dm.txt"), []byte(content), 0o644))

		require.NoError(t, m.Unstage(ctx, st.GlobalPath))
		assert.False(t, blockdev.Sysfs{}.BlockExists(blockName(dm)), "dm map removed")
		assert.NoFileExists(t, a.Path)
		assert.NoFileExists(t, b.Path)
		assert.Empty(t, blockdev.SessionsFor(t, iqn))
		blockdev.RequireNoSessions(t)

		// The data went to the LUN: stage again on one path only.
		one := volume.Volume{TargetPortal: p2, IQN: iqn, LUN: 1, FSType: "ext4"}
		st, err = m.Stage(ctx, one)
		require.NoError(t, err)
		got, err = os.ReadFile(filepath.Join(st.GlobalPath, "dm.txt"))
		require.NoError(t, err)
		assert.Equal(t, content, string(got))
		require.NoError(t, m.Unstage(ctx, st.GlobalPath))
		blockdev.RequireNoSessions(t)
	})
}

func TestGuestVolumeLifecycle(t *testing.T) {
	e := blockdev.LoadEnv(t)
	fix := e.Fixture
	k := blockdev.OpenKernel(t)
	ctx := blockdev.GuestCtx(t, 4*time.Minute)
	for _, fs := range []string{"ext4", "xfs"} {
		t.Run(fs, func(t *testing.T) {
			root := t.TempDir()
			m, err := volume.NewManager(root, volume.KernelAttacher(k))
			require.NoError(t, err)
			tgt := fix.CHAP // ext4 over a CHAP session
			if fs == "xfs" {
				require.NotEmpty(t, e.XFSIQN)
				tgt = tgtd.FixtureTarget{IQN: e.XFSIQN}
			}
			v := volume.Volume{TargetPortal: fix.Portal, IQN: tgt.IQN, LUN: 1, FSType: fs}
			if tgt.User != "" {
				v.SessionCHAPAuth = true
				v.Secrets = volume.Secrets{volume.SecretSessionUser: tgt.User, volume.SecretSessionPassword: tgt.Secret}
			}
			st, err := m.Stage(ctx, v)
			require.NoError(t, err)
			assert.True(t, st.Formatted, "a blank LUN is formatted")
			t.Logf("staged %s on %s (%s)", st.GlobalPath, st.DevicePath, st.FSType)
			gp, err := m.GlobalPath(v)
			require.NoError(t, err)
			p1, p2 := filepath.Join(root, "pod1"), filepath.Join(root, "pod2")
			require.NoError(t, m.Publish(ctx, v, p1, volume.PublishOptions{}))
			require.NoError(t, m.Publish(ctx, v, p2, volume.PublishOptions{}))
			require.NoError(t, os.WriteFile(filepath.Join(p1, "hello.txt"), []byte("hello "+fs), 0o644))
			b, err := os.ReadFile(filepath.Join(p2, "hello.txt"))
			require.NoError(t, err)
			assert.Equal(t, "hello "+fs, string(b))
			require.NoError(t, m.Unpublish(ctx, p1))
			require.NoError(t, m.Unpublish(ctx, p2))
			require.NoError(t, m.Unstage(ctx, gp))
			blockdev.RequireNoSessions(t)

			st2, err := m.Stage(ctx, v)
			require.NoError(t, err)
			assert.False(t, st2.Formatted, "no reformat")
			b, err = os.ReadFile(filepath.Join(gp, "hello.txt"))
			require.NoError(t, err, "the file survives: no reformat")
			assert.Equal(t, "hello "+fs, string(b))
			require.NoError(t, m.Unstage(ctx, gp))
			blockdev.RequireNoSessions(t)
		})
	}
}
