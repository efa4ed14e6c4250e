//go:build vmguest

package blockdev

import (
	"context"
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

	"github.com/gosan/iscsi/blockdev/volume"
)

// Guest side of vm_more_test.go and bench_attach_test.go: volumes sharing
// one session, several portals per volume (with and without a dm-multipath
// map), and the attach/detach timings against open-iscsi's iscsistart.

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
			all, _ := Sysfs{}.Sessions()
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
	e := loadEnv(t)
	fix := e.Fixture
	k := openKernel(t)
	ctx := guestCtx(t, 5*time.Minute)
	root := t.TempDir()
	m, err := volume.NewManager(root, k.Attacher())
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
					all := sessionsFor(t, iqn)
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
		assert.Empty(t, sessionsFor(t, iqn), "session gone after both unstaged")
		requireNoSessions(t)
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
		requireNoSessions(t)
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
	e := loadEnv(t)
	fix := e.Fixture
	p2 := guestPortal2(t)
	require.NotEqual(t, fix.Portal, p2)
	k := openKernel(t)
	ctx := guestCtx(t, 5*time.Minute)
	root := t.TempDir()
	m, err := volume.NewManager(root, k.Attacher())
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
		sess := sessionsFor(t, iqn)
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
			assert.False(t, Sysfs{}.BlockExists(blockName(d.Path)), "%s still in sysfs", d.Path)
		}
		assert.Empty(t, sessionsFor(t, iqn), "both sessions logged out")
		requireNoSessions(t)
	})

	t.Run("dm-multipath", func(t *testing.T) {
		dmsetup, err := exec.LookPath("dmsetup")
		require.NoError(t, err, "the host test copies dmsetup (Debian package dmsetup) into the guest")
		_, err = os.Stat("/dev/mapper/control")
		require.NoError(t, err, "device-mapper not loaded (vmtest.SetMultipath)")
		// What multipathd would do on the uevents of the two paths: a
		// multipath map over both, uuid "mpath-<wwid>". Build it by hand
		// from attached paths, then stage: the Manager must use it.
		a, err := k.Attach(ctx, Spec{Portal: fix.Portal, TargetName: iqn, LUN: 1})
		require.NoError(t, err)
		b, err := k.Attach(ctx, Spec{Portal: p2, TargetName: iqn, LUN: 1})
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
		assert.Len(t, sessionsFor(t, iqn), 2)
		dropCaches(t)
		got, err := os.ReadFile(filepath.Join(st.GlobalPath, "f.txt"))
		require.NoError(t, err, "file written through the first path, read through dm")
		assert.Equal(t, content, string(got))
		require.NoError(t, os.WriteFile(filepath.Join(st.GlobalPath, "dm.txt"), []byte(content), 0o644))

		require.NoError(t, m.Unstage(ctx, st.GlobalPath))
		assert.False(t, Sysfs{}.BlockExists(blockName(dm)), "dm map removed")
		assert.NoFileExists(t, a.Path)
		assert.NoFileExists(t, b.Path)
		assert.Empty(t, sessionsFor(t, iqn))
		requireNoSessions(t)

		// The data went to the LUN: stage again on one path only.
		one := volume.Volume{TargetPortal: p2, IQN: iqn, LUN: 1, FSType: "ext4"}
		st, err = m.Stage(ctx, one)
		require.NoError(t, err)
		got, err = os.ReadFile(filepath.Join(st.GlobalPath, "dm.txt"))
		require.NoError(t, err)
		assert.Equal(t, content, string(got))
		require.NoError(t, m.Unstage(ctx, st.GlobalPath))
		requireNoSessions(t)
	})
}

// benchSample is one attach/detach measurement.
type benchSample struct {
	Attach, Detach time.Duration
	// Exit: iscsistart only, from exec to the process's exit.
	Exit time.Duration
}

// waitDisk polls sysfs (every 5 ms, as Kernel.Attach's own wait) until
// target's LUN lun has a block device with a node and a known capacity:
// Attach's notion of "ready".
// sessionSeen is set to the time the session first shows in sysfs.
func waitDisk(ctx context.Context, iqn string, lun uint64, sessionSeen *time.Time) (*SessionInfo, string, error) {
	tk := time.NewTicker(5 * time.Millisecond)
	defer tk.Stop()
	for {
		all, _ := Sysfs{}.Sessions()
		for _, s := range all {
			if s.TargetName != iqn {
				continue
			}
			if sessionSeen.IsZero() && s.State == "LOGGED_IN" {
				*sessionSeen = time.Now()
			}
			d, err := Sysfs{}.DeviceForLUN(s.SID, lun)
			if err != nil || d == nil || d.Block == "" {
				continue
			}
			if _, err := os.Stat("/dev/" + d.Block); err != nil {
				continue
			}
			if n, err := (Sysfs{}).BlockSize(d.Block); err == nil && n > 0 {
				s := s
				return &s, d.Block, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, "", fmt.Errorf("no block device for %s LUN %d: %w", iqn, lun, ctx.Err())
		case <-tk.C:
		}
	}
}

// TestGuestBenchAttach times attach (login to block device ready) and
// detach, BD_BENCH_RUNS times each (default 5, alternating), for this
// package and for open-iscsi's iscsistart (copied into the guest by
// BenchmarkAttachIscsistart). It prints one "BENCH <tool> <i> ..." line per
// run; the host side computes the medians.
func TestGuestBenchAttach(t *testing.T) {
	e := loadEnv(t)
	fix := e.Fixture
	iscsistart, err := exec.LookPath("iscsistart")
	require.NoError(t, err, "iscsistart is not in the guest: install open-iscsi on the host (apt-get install -y open-iscsi)")
	runs := 5
	if s := os.Getenv("BD_BENCH_RUNS"); s != "" {
		_, err := fmt.Sscan(s, &runs)
		require.NoError(t, err)
	}
	const initiator = "iqn.2026-11.org.gosan.test:guest"
	k := openKernel(t)
	ctx := guestCtx(t, 10*time.Minute)
	iqn := fix.Plain.IQN
	host, port, ok := strings.Cut(fix.Portal, ":")
	require.True(t, ok, fix.Portal)

	lib := func(i int) benchSample {
		t0 := time.Now()
		d, err := k.Attach(ctx, Spec{Portal: fix.Portal, TargetName: iqn, LUN: 1, InitiatorName: initiator})
		require.NoError(t, err)
		att := time.Since(t0)
		require.True(t, d.NewSession)
		require.Equal(t, fix.Plain.LUNs[0].Size, d.Size)
		t0 = time.Now()
		require.NoError(t, k.Detach(ctx, d))
		det := time.Since(t0)
		require.Empty(t, sessionsFor(t, iqn))
		fmt.Printf("BENCH lib %d attach_us=%d detach_us=%d login_us=%d device_us=%d\n",
			i, att.Microseconds(), det.Microseconds(), d.LoginTime.Microseconds(), d.DeviceTime.Microseconds())
		return benchSample{Attach: att, Detach: det}
	}
	ist := func(i int) benchSample {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(cctx, iscsistart, "-i", initiator, "-t", iqn, "-g", "1", "-a", host, "-p", port)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		t0 := time.Now()
		require.NoError(t, cmd.Start())
		exited := make(chan error, 1)
		var exitAt time.Duration
		go func() { err := cmd.Wait(); exitAt = time.Since(t0); exited <- err }()
		var seen time.Time
		si, blk, err := waitDisk(cctx, iqn, 1, &seen)
		att := time.Since(t0)
		sessAt := seen.Sub(t0)
		require.NoError(t, err, "iscsistart output: %s", out.String())
		require.NoError(t, <-exited, "iscsistart: %s", out.String())
		// Detach what iscsistart attached: it has no logout of its own, so
		// this is the same sequence as Kernel.Detach (flush + delete the
		// device, then the logout of a session another process created).
		t0 = time.Now()
		require.NoError(t, k.DeleteDevice(ctx, "/dev/"+blk))
		require.NoError(t, k.LogoutSession(ctx, si.SID))
		det := time.Since(t0)
		require.Empty(t, sessionsFor(t, iqn))
		fmt.Printf("BENCH iscsistart %d attach_us=%d detach_us=%d exit_us=%d session_us=%d\n",
			i, att.Microseconds(), det.Microseconds(), exitAt.Microseconds(), sessAt.Microseconds())
		if i == 0 {
			t.Logf("iscsistart output: %s", strings.TrimSpace(out.String()))
		}
		return benchSample{Attach: att, Detach: det, Exit: exitAt}
	}

	// One untimed round each: page cache, first-use costs in both tools.
	lib(-1)
	ist(-1)
	var ls, is []benchSample
	for i := 0; i < runs; i++ {
		ls = append(ls, lib(i))
		is = append(is, ist(i))
	}
	med := func(s []benchSample, f func(benchSample) time.Duration) time.Duration {
		d := make([]time.Duration, len(s))
		for i := range s {
			d[i] = f(s[i])
		}
		return median(d)
	}
	la, ld := med(ls, func(s benchSample) time.Duration { return s.Attach }), med(ls, func(s benchSample) time.Duration { return s.Detach })
	ia, id := med(is, func(s benchSample) time.Duration { return s.Attach }), med(is, func(s benchSample) time.Duration { return s.Detach })
	ie := med(is, func(s benchSample) time.Duration { return s.Exit })
	fmt.Printf("BENCH-MEDIAN runs=%d lib_attach_us=%d lib_detach_us=%d iscsistart_attach_us=%d iscsistart_detach_us=%d iscsistart_exit_us=%d\n",
		runs, la.Microseconds(), ld.Microseconds(), ia.Microseconds(), id.Microseconds(), ie.Microseconds())
	t.Logf("medians of %d: attach lib %v, iscsistart %v (exit %v), ratio lib/iscsistart %.2f; detach lib %v, iscsistart+delete+LogoutSession %v",
		runs, la, ia, ie, float64(la)/float64(ia), ld, id)
	requireNoSessions(t)
}
