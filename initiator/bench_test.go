//go:build linux

package initiator

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gosan/iscsi/internal/testenv/tgtd"
	"github.com/stretchr/testify/require"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU returns user+system CPU time of process pid from /proc.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100) // USER_HZ is 100 on Linux
}

func benchLUN(b *testing.B, ft tgtd.FixtureTarget) *LUN {
	b.Helper()
	ctx := context.Background()
	s := dialT(b, ctx, ft.IQN, WithQueueDepth(64))
	l, err := s.LUN(ctx, 1)
	require.NoError(b, err)
	return l
}

func benchIO(b *testing.B, l *LUN, qd int, write bool) {
	const size = 4096
	span := min(l.Size(), 64<<20) / size
	var wg sync.WaitGroup
	per := b.N / qd
	extra := b.N % qd
	pid := shared.srv.PID()
	b.ReportAllocs()
	l.s.conn.Load().pdusOut.Store(0)
	l.s.conn.Load().flushes.Store(0)
	b.ResetTimer()
	c0, t0, w0 := cpuTime(), procCPU(pid), time.Now()
	for g := range qd {
		n := per
		if g < extra {
			n++
		}
		wg.Add(1)
		go func(seed uint64, n int) {
			defer wg.Done()
			buf := make([]byte, size)
			x := seed*0x9e3779b97f4a7c15 + 1
			for range n {
				x ^= x << 13
				x ^= x >> 7
				x ^= x << 17
				off := int64(x%uint64(span)) * size
				var err error
				if write {
					_, err = l.WriteAt(buf, off)
				} else {
					_, err = l.ReadAt(buf, off)
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		}(uint64(g+1), n)
	}
	wg.Wait()
	b.StopTimer()
	el := time.Since(w0)
	b.ReportMetric(float64(b.N)/el.Seconds(), "IOPS")
	c := l.s.conn.Load()
	b.ReportMetric(float64(c.pdusOut.Swap(0))/float64(max(c.flushes.Swap(0), 1)), "pdu/flush")
	b.ReportMetric(float64((cpuTime()-c0).Microseconds())/float64(b.N), "cpu-us/op")
	b.ReportMetric(float64((procCPU(pid)-t0).Microseconds())/float64(b.N), "tgtd-us/op")
}

func benchRW(b *testing.B, write bool) {
	f := fixture(b)
	for _, lt := range []struct {
		name string
		t    tgtd.FixtureTarget
	}{{"null", f.Null}, {"file", f.Plain}} {
		l := benchLUN(b, lt.t)
		for _, qd := range []int{1, 32} {
			b.Run(lt.name+"/QD"+strconv.Itoa(qd), func(b *testing.B) { benchIO(b, l, qd, write) })
		}
	}
}

func BenchmarkRead4K(b *testing.B)  { benchRW(b, false) }
func BenchmarkWrite4K(b *testing.B) { benchRW(b, true) }

// benchSeq runs 1 MiB sequential transfers from qd goroutines over the
// file LUN and reports MiB/s and CPU per MiB.
func benchSeq(b *testing.B, write bool) {
	f := fixture(b)
	l := benchLUN(b, f.Plain)
	const size = 1 << 20
	const qd = 8
	span := l.Size() / 2 / size // the lower half: other tests use the upper
	var next atomic.Int64
	pid := shared.srv.PID()
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	c0, t0 := cpuTime(), procCPU(pid)
	var wg sync.WaitGroup
	for range qd {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, size)
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				off := (i % span) * size
				var err error
				if write {
					_, err = l.WriteAt(buf, off)
				} else {
					_, err = l.ReadAt(buf, off)
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-c0).Microseconds())/float64(b.N), "cpu-us/op")
	b.ReportMetric(float64((procCPU(pid)-t0).Microseconds())/float64(b.N), "tgtd-us/op")
}

func BenchmarkSeqRead1M(b *testing.B)  { benchSeq(b, false) }
func BenchmarkSeqWrite1M(b *testing.B) { benchSeq(b, true) }
