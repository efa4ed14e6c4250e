package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gosan/iscsi/initiator"
)

// benchResult is what `iscsictl bench --json` prints: one object.
type benchResult struct {
	RW        string     `json:"rw"`
	Engine    string     `json:"engine"`
	BlockSize int        `json:"bs"`
	QD        int        `json:"qd"`
	Seconds   float64    `json:"seconds"`
	IOs       int64      `json:"ios"`
	IOPS      float64    `json:"iops"`
	MiBps     float64    `json:"mib_per_s"`
	Latency   latencyRes `json:"latency_us"`
	CPUPerIO  float64    `json:"cpu_us_per_io"`
	Errors    int64      `json:"errors"`
}

type latencyRes struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
}

func cmdBench(ctx context.Context, g *globals, args []string) error {
	fs := g.flagSet("bench")
	rw := fs.String("rw", "randread", "read, write, randread or randwrite")
	var bs sizeFlag
	bs.n = 4096
	fs.Var(&bs, "bs", "I/O size (4k, 64k, 1M, ...)")
	qd := fs.Int("qd", 32, "I/Os in flight")
	reapMin := fs.Int("reap-min", 1, "with --engine queue: completions to wait for before submitting again (io_uring's min_complete, fio's iodepth_batch_complete_min; more means fewer, larger batches)")
	dur := fs.Duration("duration", 10*time.Second, "how long to run")
	var span sizeFlag
	fs.Var(&span, "span", "bytes of the LUN to use from offset 0 (default: all)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile (pprof) of the run to this file")
	traceFile := fs.String("trace", "", "write a Go execution trace (go tool trace) of the run to this file")
	engine := fs.String("engine", "queue", "queue (one goroutine, the asynchronous Queue) or sync (a goroutine per I/O in flight, ReadAt/WriteAt)")
	pos, err := g.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one LUN URL")
	}
	write, random := false, false
	switch *rw {
	case "read":
	case "write":
		write = true
	case "randread":
		random = true
	case "randwrite":
		write, random = true, true
	default:
		return usagef("--rw must be read, write, randread or randwrite")
	}
	if *qd < 1 || *qd > 1024 {
		return usagef("--qd must be 1..1024")
	}
	if *reapMin < 1 || *reapMin > *qd {
		return usagef("--reap-min must be 1..qd")
	}
	if *dur <= 0 {
		return usagef("--duration must be positive")
	}
	if *engine != "queue" && *engine != "sync" {
		return usagef("--engine must be queue or sync")
	}
	s, l, err := g.openLUN(ctx, pos[0], initiator.WithQueueDepth(max(*qd, initiator.DefaultQueueDepth)))
	if err != nil {
		return err
	}
	defer s.Close()
	size := int(bs.n)
	if size <= 0 || size%l.BlockSize() != 0 {
		return usagef("--bs %d is not a multiple of the block size %d", size, l.BlockSize())
	}
	region := l.Size()
	if span.set && span.n < region {
		region = span.n
	}
	region -= region % int64(size)
	if region < int64(size) {
		return fmt.Errorf("LUN of %d bytes is smaller than one I/O of %d", l.Size(), size)
	}
	for _, p := range []struct {
		name, path string
		start      func(io.Writer) error
		stop       func()
	}{{"cpuprofile", *cpuprofile, pprof.StartCPUProfile, pprof.StopCPUProfile}, {"trace", *traceFile, trace.Start, trace.Stop}} {
		if p.path == "" {
			continue
		}
		f, err := os.Create(p.path)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		defer f.Close()
		if err := p.start(f); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		defer p.stop()
	}
	spec := benchSpec{write: write, random: random, bs: size, qd: *qd, reapMin: *reapMin, dur: *dur, region: region}
	if *engine == "queue" && size > l.MaxIOSize() {
		*engine = "sync" // one I/O is several commands: ReadAt/WriteAt split it
	}
	var res *benchResult
	if *engine == "queue" {
		res, err = runBenchQueue(ctx, l, spec)
	} else {
		res, err = runBench(ctx, l, spec)
	}
	if err != nil {
		return err
	}
	res.RW, res.Engine = *rw, *engine
	if *asJSON {
		return writeJSON(g.stdout, res)
	}
	fmt.Fprintf(g.stdout, "%s bs=%d qd=%d engine=%s %.1fs: %.0f IOPS, %.1f MiB/s, latency µs mean %.0f p50 %.0f p90 %.0f p99 %.0f p99.9 %.0f max %.0f, CPU %.1f µs/IO\n",
		res.RW, res.BlockSize, res.QD, res.Engine, res.Seconds, res.IOPS, res.MiBps,
		res.Latency.Mean, res.Latency.P50, res.Latency.P90, res.Latency.P99, res.Latency.P999, res.Latency.Max, res.CPUPerIO)
	return nil
}

type benchSpec struct {
	write, random bool
	bs, qd        int
	reapMin       int
	dur           time.Duration
	region        int64
}

// runBench keeps qd I/Os in flight on l for spec.dur and measures them.
func runBench(ctx context.Context, l *initiator.LUN, spec benchSpec) (*benchResult, error) {
	ctx, cancel := context.WithTimeout(ctx, spec.dur)
	defer cancel()
	var (
		next    atomic.Int64 // sequential: next offset index
		ios     atomic.Int64
		nerrs   atomic.Int64
		firstMu sync.Mutex
		first   error
		wg      sync.WaitGroup
	)
	blocks := spec.region / int64(spec.bs)
	lats := make([][]time.Duration, spec.qd)
	cpu0 := cpuTime()
	start := time.Now()
	for w := range spec.qd {
		buf := make([]byte, spec.bs)
		if spec.write {
			rand.Read(buf)
		}
		// Preallocate room for the latencies so the loop does not allocate.
		lats[w] = make([]time.Duration, 0, max(1<<12, int(spec.dur.Seconds()*60000)/spec.qd+1024))
		rng := mrand.New(mrand.NewPCG(uint64(w)+1, uint64(start.UnixNano())))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				var idx int64
				if spec.random {
					idx = rng.Int64N(blocks)
				} else {
					idx = (next.Add(1) - 1) % blocks
				}
				off := idx * int64(spec.bs)
				t0 := time.Now()
				var err error
				if spec.write {
					_, err = l.WriteAtContext(ctx, buf, off)
				} else {
					_, err = l.ReadAtContext(ctx, buf, off)
				}
				if err != nil {
					if ctx.Err() != nil {
						return // the run ended while this I/O was in flight
					}
					nerrs.Add(1)
					firstMu.Lock()
					if first == nil {
						first = err
					}
					firstMu.Unlock()
					cancel()
					return
				}
				lats[w] = append(lats[w], time.Since(t0))
				ios.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1 := cpuTime()
	if first != nil {
		return nil, fmt.Errorf("bench: %w", first)
	}
	var all []time.Duration
	for _, ls := range lats {
		all = append(all, ls...)
	}
	return benchSummary(spec, all, ios.Load(), nerrs.Load(), elapsed, time.Duration(cpu1-cpu0)), nil
}

// benchSummary computes the result of a run from its latencies.
func benchSummary(spec benchSpec, all []time.Duration, n, nerrs int64, elapsed, cpu time.Duration) *benchResult {
	slices.Sort(all)
	res := &benchResult{
		BlockSize: spec.bs, QD: spec.qd, Seconds: elapsed.Seconds(), IOs: n, Errors: nerrs,
		IOPS:  float64(n) / elapsed.Seconds(),
		MiBps: float64(n) * float64(spec.bs) / (1 << 20) / elapsed.Seconds(),
	}
	if len(all) > 0 {
		var sum time.Duration
		for _, d := range all {
			sum += d
		}
		us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
		pct := func(p float64) float64 { return us(all[min(len(all)-1, int(p*float64(len(all))))]) }
		res.Latency = latencyRes{Mean: us(sum) / float64(len(all)), P50: pct(0.50), P90: pct(0.90),
			P99: pct(0.99), P999: pct(0.999), Max: us(all[len(all)-1])}
	}
	if n > 0 {
		res.CPUPerIO = float64(cpu) / 1e3 / float64(n)
	}
	return res
}

// runBenchQueue keeps qd I/Os in flight on l for spec.dur from this one
// goroutine, through an initiator.Queue.
func runBenchQueue(ctx context.Context, l *initiator.LUN, spec benchSpec) (*benchResult, error) {
	runCtx, cancel := context.WithTimeout(ctx, spec.dur)
	defer cancel()
	blocks := spec.region / int64(spec.bs)
	q := l.NewQueue()
	defer q.Close()
	rng := mrand.New(mrand.NewPCG(1, uint64(time.Now().UnixNano())))
	var next int64
	offset := func() int64 {
		if spec.random {
			return rng.Int64N(blocks) * int64(spec.bs)
		}
		next++
		return ((next - 1) % blocks) * int64(spec.bs)
	}
	ios := make([]initiator.IO, spec.qd)
	started := make([]time.Time, spec.qd)
	for i := range ios {
		ios[i] = initiator.IO{Write: spec.write, Buf: make([]byte, spec.bs), Tag: uint64(i)}
		if spec.write {
			rand.Read(ios[i].Buf)
		}
	}
	lats := make([]time.Duration, 0, max(1<<12, int(spec.dur.Seconds()*100000)))
	out := make([]initiator.Completion, spec.qd)
	var n, nerrs int64
	var first error
	cpu0 := cpuTime()
	start := time.Now()
	// Each round submits everything that is ready in one Submit, so the
	// commands share a writev.
	batch := make([]initiator.IO, 0, spec.qd)
	submit := func() error {
		now := time.Now()
		for i := range batch {
			batch[i].Off = offset()
			started[batch[i].Tag] = now
		}
		k, err := q.Submit(runCtx, batch...)
		if err == nil && k < len(batch) {
			err = fmt.Errorf("%d of %d I/Os submitted with %d in flight", k, len(batch), q.Inflight())
		}
		batch = batch[:0]
		return err
	}
	batch = append(batch, ios...)
	first = submit()
	for first == nil && runCtx.Err() == nil {
		m, err := q.Reap(runCtx, out, spec.reapMin)
		now := time.Now()
		for _, c := range out[:m] {
			if c.Err != nil {
				nerrs++
				if first == nil {
					first = c.Err
				}
				continue
			}
			lats = append(lats, now.Sub(started[c.Tag]))
			n++
			batch = append(batch, ios[c.Tag])
		}
		if err != nil && runCtx.Err() == nil {
			first = err
		}
		if len(batch) > 0 && runCtx.Err() == nil && first == nil {
			if err := submit(); err != nil && runCtx.Err() == nil {
				first = err
			}
		}
	}
	elapsed := time.Since(start)
	cpu1 := cpuTime()
	// Let what is still in flight finish (bounded), so Close aborts nothing.
	drain, stop := context.WithTimeout(ctx, 30*time.Second)
	for q.Inflight() > 0 && drain.Err() == nil {
		_, _ = q.Reap(drain, out, q.Inflight())
	}
	stop()
	if first != nil {
		return nil, fmt.Errorf("bench: %w", first)
	}
	return benchSummary(spec, lats, n, nerrs, elapsed, time.Duration(cpu1-cpu0)), nil
}
