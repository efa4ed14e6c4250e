//go:build vmguest

package blockdev

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Guest side of bench_attach_test.go: the attach/detach timings against
// open-iscsi's iscsistart.

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
