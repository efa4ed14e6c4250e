//go:build linux

package initiator

import (
	"bytes"
	"os/exec"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/gosan/iscsi/internal/testenv/tgtd"
	"github.com/stretchr/testify/require"
)

var iopsAverage = regexp.MustCompile(`iops average (\d+)`)

// BenchmarkLibiscsiRead4K runs libiscsi's iscsi-perf (Debian libiscsi-bin)
// against the same tgtd LUNs as BenchmarkRead4K (4 KiB random reads, QD 1
// and 32) for a fixed 4 s, whatever b.N, and reports its IOPS and CPU per
// I/O, so `go test -bench 'Read4K'` prints both side by side.
func BenchmarkLibiscsiRead4K(b *testing.B) {
	perf, err := exec.LookPath("iscsi-perf")
	require.NoError(b, err, "install Debian package libiscsi-bin")
	f := fixture(b)
	for _, lt := range []struct {
		name string
		t    tgtd.FixtureTarget
	}{{"null", f.Null}, {"file", f.Plain}} {
		for _, qd := range []int{1, 32} {
			b.Run(lt.name+"/QD"+strconv.Itoa(qd), func(b *testing.B) {
				const run = 4 * time.Second
				url := "iscsi://" + f.Portal + "/" + lt.t.IQN + "/1"
				cmd := exec.Command(perf, "-m", strconv.Itoa(qd), "-b", "8", "-r", url)
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				pid := shared.srv.PID()
				t0 := procCPU(pid)
				require.NoError(b, cmd.Start())
				time.Sleep(run)
				_ = cmd.Process.Signal(syscall.SIGINT)
				_ = cmd.Wait()
				tgt := procCPU(pid) - t0
				m := iopsAverage.FindAllStringSubmatch(out.String(), -1)
				require.NotEmpty(b, m, "iscsi-perf output: %s", out.String())
				iops, _ := strconv.Atoi(m[len(m)-1][1])
				ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
				require.True(b, ok)
				cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
				ios := float64(iops) * run.Seconds()
				b.ReportMetric(float64(iops), "IOPS")
				b.ReportMetric(float64(cpu.Microseconds())/ios, "cpu-us/op")
				b.ReportMetric(float64(tgt.Microseconds())/ios, "tgtd-us/op")
			})
		}
	}
}
