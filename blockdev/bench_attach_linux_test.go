package blockdev

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gosan/iscsi/internal/testenv/vmtest"
)

// median of d (the mean of the two middle values for an even count).
func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{[]time.Duration{3}, 3},
		{[]time.Duration{5, 1, 3}, 3},
		{[]time.Duration{4, 1, 3, 2}, 2}, // (2+3)/2 in integer nanoseconds
		{[]time.Duration{10, 20}, 15},
	} {
		in := slices.Clone(tc.in)
		require.Equal(t, tc.want, median(tc.in), "%v", tc.in)
		require.Equal(t, in, tc.in, "median must not reorder its input")
	}
}

var benchRunRE = regexp.MustCompile(`BENCH (lib|iscsistart) (-?\d+) attach_us=(\d+) detach_us=(\d+)`)

var benchMedianRE = regexp.MustCompile(`BENCH-MEDIAN runs=(\d+) lib_attach_us=(\d+) lib_detach_us=(\d+) iscsistart_attach_us=(\d+) iscsistart_detach_us=(\d+) iscsistart_exit_us=(\d+)`)

// BenchmarkAttachIscsistart times attach (login to block device ready) and
// detach in one qemu guest, for this package and for open-iscsi's
// iscsistart, against the same tgtd LUN, 5 runs each alternating (after one
// untimed warm-up each). It needs iscsistart on the host
// (apt-get install -y open-iscsi; stop iscsid if systemd started it) and
// fails, not skips, without it. Opt-in, not part of make test:
//
//	go test -run '^$' -bench BenchmarkAttachIscsistart -benchtime 1x ./blockdev
//
// BD_BENCH_RUNS changes the number of runs. The metrics are medians in ms.
func BenchmarkAttachIscsistart(b *testing.B) {
	_, err := exec.LookPath("iscsistart")
	require.NoError(b, err, "install open-iscsi on the host (apt-get install -y open-iscsi; then systemctl disable --now iscsid.socket iscsid where systemd runs): its iscsistart is copied into the guest")
	files := vmtest.HostTools(b, "iscsistart")
	_, _, env := guestFixtureEnv(b)
	env["BD_BENCH_RUNS"] = "5"
	bin := vmtest.BuildTest(b, ".")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	for range b.N {
		res, err := vmtest.Run(ctx, vmtest.Config{
			Binary: bin,
			Args:   []string{"-test.run", "^TestGuestBenchAttach$", "-test.v", "-test.count=1", "-test.timeout=12m"},
			Env:    env,
			Sets:   []vmtest.ModuleSet{vmtest.SetISCSI},
			Files:  files,
		})
		require.NoError(b, err)
		if res.ExitCode != 0 {
			b.Fatalf("guest benchmark exited %d:\n%s", res.ExitCode, res.Output)
		}
		m := benchMedianRE.FindStringSubmatch(res.Output)
		require.NotNil(b, m, "no BENCH-MEDIAN line in the guest output:\n%s", res.Output)
		us := make([]float64, len(m))
		for i := 2; i < len(m); i++ {
			v, err := strconv.ParseFloat(m[i], 64)
			require.NoError(b, err)
			us[i] = v / 1000
		}
		// One line per tool with every timed run (testing keeps only the
		// first 10 lines of a benchmark's log).
		runs := map[string][]string{}
		for _, r := range benchRunRE.FindAllStringSubmatch(res.Output, -1) {
			if r[2] == "-1" {
				continue // warm-up
			}
			a, _ := strconv.Atoi(r[3])
			d, _ := strconv.Atoi(r[4])
			runs[r[1]] = append(runs[r[1]], fmt.Sprintf("%d/%d", a/1000, d/1000))
		}
		b.ReportMetric(us[2], "lib-attach-ms")
		b.ReportMetric(us[3], "lib-detach-ms")
		b.ReportMetric(us[4], "iscsistart-attach-ms")
		b.ReportMetric(us[5], "iscsistart-detach-ms")
		b.ReportMetric(us[6], "iscsistart-exit-ms")
		b.ReportMetric(us[2]/us[4], "attach-ratio")
		b.Logf("runs (attach/detach ms): lib %s; iscsistart %s", strings.Join(runs["lib"], " "), strings.Join(runs["iscsistart"], " "))
		b.Logf("medians of %s runs: attach lib %.0f ms, iscsistart %.0f ms (its process exits after %.0f ms), lib/iscsistart %.2f; detach lib %.0f ms, iscsistart's session %.0f ms",
			m[1], us[2], us[4], us[6], us[2]/us[4], us[3], us[5])
	}
}
