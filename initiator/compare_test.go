package initiator

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// runFor issues 4 KiB random reads at queue depth qd for d and returns the
// I/O count and the CPU time this process used meanwhile.
func runFor(l *LUN, qd int, d time.Duration) (int64, time.Duration) {
	span := min(l.Size(), 64<<20) / 4096
	var ops atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	c0 := cpuTime()
	for g := range qd {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			x := uint64(g+1)*0x9e3779b97f4a7c15 + 1
			for !stop.Load() {
				x ^= x << 13
				x ^= x >> 7
				x ^= x << 17
				if _, err := l.ReadAt(buf, int64(x%uint64(span))*4096); err != nil {
					return
				}
				ops.Add(1)
			}
		}()
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	return ops.Load(), cpuTime() - c0
}

// TestCompareLibiscsi runs libiscsi's iscsi-perf (Debian libiscsi-bin) and
// this package alternately against the same tgtd LUNs (4 KiB random reads,
// QD 1 and 32) and logs IOPS and CPU per I/O of both. It runs only with
// ISCSI_COMPARE=1 (about a minute).
func TestCompareLibiscsi(t *testing.T) {
	if os.Getenv("ISCSI_COMPARE") == "" {
		t.Log("set ISCSI_COMPARE=1 to compare with libiscsi's iscsi-perf")
		return
	}
	perf, err := exec.LookPath("iscsi-perf")
	require.NoError(t, err, "install Debian package libiscsi-bin")
	f := fixture(t)
	const run = 5 * time.Second
	for _, lt := range []struct{ name, iqn string }{{"null", f.Null.IQN}, {"file", f.Plain.IQN}} {
		for _, qd := range []int{1, 32} {
			for rep := range 2 {
				url := "iscsi://" + f.Portal + "/" + lt.iqn + "/1"
				cmd := exec.Command(perf, "-m", strconv.Itoa(qd), "-b", "8", "-r", url)
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				require.NoError(t, cmd.Start())
				time.Sleep(run)
				_ = cmd.Process.Signal(syscall.SIGINT)
				_ = cmd.Wait()
				var cpu time.Duration
				if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
					cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
				}
				var summary string
				for _, line := range strings.Split(out.String(), "\n") {
					if strings.Contains(strings.ToLower(line), "iops") {
						summary = strings.TrimSpace(line)
					}
				}
				t.Logf("%s QD%-2d rep %d libiscsi: %q, cpu %v", lt.name, qd, rep, summary, cpu)

				s, err := Dial(context.Background(), f.Portal, lt.iqn, WithQueueDepth(64))
				require.NoError(t, err)
				l, err := s.LUN(context.Background(), 1)
				require.NoError(t, err)
				n, c := runFor(l, qd, run)
				_ = s.Close()
				t.Logf("%s QD%-2d rep %d gosan:    %.0f IOPS, %.1f us CPU per I/O", lt.name, qd, rep,
					float64(n)/run.Seconds(), float64(c.Microseconds())/float64(max(n, 1)))
			}
		}
	}
}
