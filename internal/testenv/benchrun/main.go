//go:build linux

// Command benchrun is `make bench`: it starts tgtd with a LUN on tmpfs, then
// measures iscsictl bench and libiscsi (fio's libiscsi engine, built from
// Debian's source package by scripts/fio-libiscsi.sh) against the same LUN in
// the same run, alternating, and prints a Markdown table of medians with the
// ratio ours/libiscsi and each side's CPU time per I/O. Ours runs twice per
// round: with Go's default GOMAXPROCS (2 here) and with GOMAXPROCS=1. fio's
// libiscsi engine is one thread; with one P the Go runtime stops waking an
// idle OS thread for every completion (futex, epoll and nanosleep calls that
// cost more than the I/O itself at QD32 on 2 cores), which a user of a
// latency-bound tool can choose too.
//
// On these shared 2-core machines target and initiator compete for the CPU,
// so absolute figures move between runs; compare only within one run.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/gosan/iscsi/internal/testenv/tgtd"
)

type workload struct {
	name string
	rw   string // fio and iscsictl share the names
	bs   string
	qd   int
	mib  bool // report MiB/s rather than IOPS
}

var workloads = []workload{
	{"sequential read 1 MiB QD8", "read", "1M", 8, true},
	{"sequential write 1 MiB QD8", "write", "1M", 8, true},
	{"4 KiB random read QD1", "randread", "4k", 1, false},
	{"4 KiB random read QD32", "randread", "4k", 32, false},
	{"4 KiB random write QD1", "randwrite", "4k", 1, false},
	{"4 KiB random write QD32", "randwrite", "4k", 32, false},
}

type sample struct {
	value    float64 // IOPS or MiB/s
	cpuPerIO float64 // µs of the initiator process per I/O
	sysPerIO float64 // system calls of the initiator process per I/O (perf)
	csPerIO  float64 // context switches of the initiator process per I/O (perf)
}

func main() {
	dur := flag.Duration("time", 8*time.Second, "length of each run")
	reps := flag.Int("reps", 3, "runs of each initiator per workload (median reported)")
	fio := flag.String("fio", "", "fio binary with the libiscsi engine")
	ctl := flag.String("iscsictl", "", "iscsictl binary")
	size := flag.Int64("size", 1<<30, "LUN size in bytes (a file on /dev/shm)")
	only := flag.String("only", "", "run only workloads whose name contains this")
	hold := flag.Bool("hold", false, "only start the target, print its URL and wait for SIGINT (for profiling by hand)")
	flag.Parse()
	if !*hold && (*fio == "" || *ctl == "") {
		log.Fatal("benchrun: --fio and --iscsictl are required (make bench sets them)")
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("/dev/shm", "gosan-bench-")
	if err != nil {
		log.Fatalf("benchrun: %v", err)
	}
	defer os.RemoveAll(dir)
	srv, err := tgtd.StartServer(ctx, tgtd.Options{Dir: dir})
	if err != nil {
		log.Fatalf("benchrun: start tgtd: %v", err)
	}
	defer srv.Close()
	const iqn = "iqn.2026-11.org.gosan.bench:ram"
	img := filepath.Join(dir, "lun1.img")
	f, err := os.Create(img)
	if err != nil {
		log.Fatalf("benchrun: %v", err)
	}
	// Fill the LUN so reads hit real pages, as the baseline measurement did.
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for off := int64(0); off < *size; off += int64(len(buf)) {
		if _, err := f.Write(buf); err != nil {
			log.Fatalf("benchrun: fill LUN: %v", err)
		}
	}
	f.Close()
	must(srv.NewTarget(ctx, 1, iqn))
	must(srv.AddLUN(ctx, 1, 1, img, 512))
	must(srv.BindAddress(ctx, 1, "ALL"))
	url := fmt.Sprintf("iscsi://%s/%s/1", srv.Portal(), iqn)
	fioURL := strings.ReplaceAll(url, ":", `\:`)
	if *hold {
		fmt.Printf("%s\nfio --filename=%s\n", url, fioURL)
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		return
	}

	fmt.Printf("tgtd %s, LUN of %d MiB on tmpfs, %s per run, %d runs each, alternating; %s\n\n",
		srv.Portal(), *size>>20, *dur, *reps, time.Now().UTC().Format(time.RFC3339))
	fmt.Println("| workload | libiscsi (fio) | gosan/iscsi | ratio | gosan/iscsi GOMAXPROCS=1 | ratio | CPU µs/IO libiscsi | CPU µs/IO gosan | CPU µs/IO gosan GOMAXPROCS=1 | syscalls/IO libiscsi, gosan, P=1 | ctx switches/IO libiscsi, gosan, P=1 |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, w := range workloads {
		if *only != "" && !strings.Contains(w.name, *only) {
			continue
		}
		var ours, ours1, theirs []sample
		for range *reps {
			s, err := runFio(ctx, *fio, fioURL, w, *dur)
			if err != nil {
				log.Fatalf("benchrun: fio %s: %v", w.name, err)
			}
			theirs = append(theirs, s)
			s, err = runOurs(ctx, *ctl, url, w, *dur, 0)
			if err != nil {
				log.Fatalf("benchrun: iscsictl %s: %v", w.name, err)
			}
			ours = append(ours, s)
			s, err = runOurs(ctx, *ctl, url, w, *dur, 1)
			if err != nil {
				log.Fatalf("benchrun: iscsictl %s (GOMAXPROCS=1): %v", w.name, err)
			}
			ours1 = append(ours1, s)
		}
		t, o, o1 := median(theirs), median(ours), median(ours1)
		unit := " IOPS"
		if w.mib {
			unit = " MiB/s"
		}
		fmt.Printf("| %s | %.0f%s | %.0f%s | %.2f | %.0f%s | %.2f | %.1f | %.1f | %.1f | %.2f, %.2f, %.2f | %.2f, %.2f, %.2f |\n", w.name, t.value, unit,
			o.value, unit, o.value/t.value, o1.value, unit, o1.value/t.value, t.cpuPerIO, o.cpuPerIO, o1.cpuPerIO,
			t.sysPerIO, o.sysPerIO, o1.sysPerIO, t.csPerIO, o.csPerIO, o1.csPerIO)
	}
}

func must(err error) {
	if err != nil {
		log.Fatalf("benchrun: %v", err)
	}
}

func median(s []sample) sample {
	v := slices.Clone(s)
	slices.SortFunc(v, func(a, b sample) int {
		switch {
		case a.value < b.value:
			return -1
		case a.value > b.value:
			return 1
		}
		return 0
	})
	return v[len(v)/2]
}

// cpuOf returns the user+system CPU time a finished command used.
func cpuOf(c *exec.Cmd) time.Duration {
	ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// perfCmd runs argv under perf stat, which counts the system calls and
// context switches of the process and its threads into the returned file.
func perfCmd(ctx context.Context, argv ...string) (*exec.Cmd, string) {
	f, err := os.CreateTemp("", "gosan-perf-*.csv")
	if err != nil {
		log.Fatalf("benchrun: %v", err)
	}
	f.Close()
	args := append([]string{"stat", "-x,", "-e", "raw_syscalls:sys_enter,context-switches", "-o", f.Name(), "--"}, argv...)
	return exec.CommandContext(ctx, "perf", args...), f.Name()
}

// perfCounts reads perf stat's CSV output: system calls, context switches.
func perfCounts(path string) (syscalls, switches float64, err error) {
	defer os.Remove(path)
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	found := 0
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ",")
		if len(f) < 3 {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(f[0], &v); err != nil {
			continue
		}
		switch f[2] {
		case "raw_syscalls:sys_enter":
			syscalls = v
			found++
		case "context-switches":
			switches = v
			found++
		}
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("perf stat gave no counts: %q", b)
	}
	return syscalls, switches, nil
}

func (s *sample) setCounts(path string, ios int64) error {
	sys, cs, err := perfCounts(path)
	if err != nil {
		return err
	}
	if ios > 0 {
		s.sysPerIO, s.csPerIO = sys/float64(ios), cs/float64(ios)
	}
	return nil
}

func runFio(ctx context.Context, fio, url string, w workload, dur time.Duration) (sample, error) {
	c, counts := perfCmd(ctx, fio, "--name=bench", "--ioengine=libiscsi", "--filename="+url,
		"--rw="+w.rw, "--bs="+w.bs, fmt.Sprintf("--iodepth=%d", w.qd),
		fmt.Sprintf("--runtime=%d", int(dur.Seconds())), "--time_based", "--output-format=json")
	out, err := c.Output()
	if err != nil {
		return sample{}, fmt.Errorf("%w: %s", err, out)
	}
	var r struct {
		Jobs []struct {
			Read, Write struct {
				IOPS    float64 `json:"iops"`
				BW      float64 `json:"bw_bytes"`
				TotalIO int64   `json:"total_ios"`
			}
		} `json:"jobs"`
	}
	// fio may print notes before the JSON.
	if i := strings.IndexByte(string(out), '{'); i > 0 {
		out = out[i:]
	}
	if err := json.Unmarshal(out, &r); err != nil || len(r.Jobs) == 0 {
		return sample{}, fmt.Errorf("unreadable fio output: %v", err)
	}
	st := r.Jobs[0].Read
	if strings.Contains(w.rw, "write") {
		st = r.Jobs[0].Write
	}
	s := sample{value: st.IOPS}
	if w.mib {
		s.value = st.BW / (1 << 20)
	}
	if st.TotalIO > 0 {
		s.cpuPerIO = float64(cpuOf(c).Microseconds()) / float64(st.TotalIO)
	}
	return s, s.setCounts(counts, st.TotalIO)
}

// runOurs runs iscsictl bench; procs > 0 sets GOMAXPROCS.
func runOurs(ctx context.Context, ctl, url string, w workload, dur time.Duration, procs int) (sample, error) {
	c, counts := perfCmd(ctx, ctl, "bench", url, "--rw", w.rw, "--bs", w.bs,
		"--qd", fmt.Sprint(w.qd), "--duration", dur.String(), "--json")
	if procs > 0 {
		c.Env = append(os.Environ(), fmt.Sprintf("GOMAXPROCS=%d", procs))
	}
	c.Stderr = os.Stderr
	out, err := c.Output()
	if err != nil {
		return sample{}, err
	}
	var r struct {
		IOs   int64   `json:"ios"`
		IOPS  float64 `json:"iops"`
		MiBps float64 `json:"mib_per_s"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return sample{}, fmt.Errorf("unreadable iscsictl output: %v", err)
	}
	s := sample{value: r.IOPS}
	if w.mib {
		s.value = r.MiBps
	}
	if r.IOs > 0 {
		s.cpuPerIO = float64(cpuOf(c).Microseconds()) / float64(r.IOs)
	}
	return s, s.setCounts(counts, r.IOs)
}
