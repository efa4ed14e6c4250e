package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gosan/iscsi/initiator"
)

// endpoint is one side of `iscsictl copy`: a LUN or a local file.
type endpoint struct {
	name string
	size int64
	bs   int64 // alignment: the LUN's block size, 1 for files
	r    io.ReaderAt
	w    io.WriterAt
	lun  *initiator.LUN
	file *os.File
	sess *initiator.Session
}

func (e *endpoint) close() error {
	var err error
	if e.lun != nil {
		err = e.lun.SynchronizeCache(context.Background())
	}
	if e.sess != nil {
		e.sess.Close()
	}
	if e.file != nil {
		if cerr := e.file.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

func (g *globals) openEndpoint(ctx context.Context, spec string, dst bool) (*endpoint, error) {
	if strings.HasPrefix(strings.ToLower(spec), "iscsi://") {
		s, l, err := g.openLUN(ctx, spec)
		if err != nil {
			return nil, err
		}
		return &endpoint{name: spec, size: l.Size(), bs: int64(l.BlockSize()), r: l, w: l, lun: l, sess: s}, nil
	}
	var f *os.File
	var err error
	if dst {
		f, err = os.OpenFile(spec, os.O_RDWR|os.O_CREATE, 0o644)
	} else {
		f, err = os.Open(spec)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", spec, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", spec, err)
	}
	return &endpoint{name: spec, size: st.Size(), bs: 1, r: f, w: f, file: f}, nil
}

func cmdCopy(ctx context.Context, g *globals, args []string) error {
	fs := g.flagSet("copy")
	workers := fs.Int("jobs", 4, "transfers in flight (through one goroutine and initiator.Queue when each fits in one command)")
	var chunk sizeFlag
	chunk.n = 1 << 20
	fs.Var(&chunk, "chunk", "bytes per transfer")
	progress := fs.Bool("progress", isTerminal(g.stderr), "show a progress bar on stderr (default: when stderr is a terminal)")
	pos, err := g.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("want SRC and DST (each a LUN URL or a local file)")
	}
	if *workers < 1 || *workers > 64 {
		return usagef("--jobs must be 1..64")
	}
	src, err := g.openEndpoint(ctx, pos[0], false)
	if err != nil {
		return err
	}
	defer src.close()
	dst, err := g.openEndpoint(ctx, pos[1], true)
	if err != nil {
		return err
	}
	total := src.size
	if dst.lun != nil && total > dst.size {
		dst.close()
		return fmt.Errorf("copy: %s has %d bytes, more than %s holds (%d)", pos[0], total, pos[1], dst.size)
	}
	if dst.file != nil {
		if err := dst.file.Truncate(total); err != nil {
			dst.close()
			return fmt.Errorf("truncate %s: %w", pos[1], err)
		}
	}
	align := max(src.bs, dst.bs)
	step := chunk.n - chunk.n%align
	if step <= 0 {
		step = align
	}
	var done atomic.Int64
	stopBar := func() {}
	if *progress {
		stopBar = startProgress(g, &done, total)
	}
	if qstep := queueStep(src, dst, step); useQueue(src, dst, total, qstep) {
		step = qstep
		err = queueCopy(ctx, src, dst, total, step, *workers, &done)
	} else {
		err = parallelCopy(ctx, src, dst, total, step, *workers, &done)
	}
	stopBar()
	if cerr := dst.close(); err == nil && cerr != nil {
		err = fmt.Errorf("finish %s: %w", pos[1], cerr)
	}
	return err
}

// queueStep is step cut to one command on each LUN side (MaxIOSize),
// whole blocks of both sides.
func queueStep(src, dst *endpoint, step int64) int64 {
	align := max(src.bs, dst.bs)
	for _, e := range []*endpoint{src, dst} {
		if e.lun != nil {
			step = min(step, int64(e.lun.MaxIOSize()))
		}
	}
	return max(step-step%align, align)
}

// useQueue tells whether queueCopy can do the copy: every piece, the last
// one included, is whole destination blocks and one command on each LUN
// side. Otherwise parallelCopy (a goroutine per transfer, ReadAt/WriteAt,
// which split large transfers and merge a short tail) does it.
func useQueue(src, dst *endpoint, total, step int64) bool {
	if total%dst.bs != 0 || total%src.bs != 0 {
		return false
	}
	for _, e := range []*endpoint{src, dst} {
		if e.lun != nil && step > int64(e.lun.MaxIOSize()) {
			return false
		}
	}
	return true
}

// parallelCopy copies [0,total) in pieces of step bytes with n workers. A
// final piece shorter than a destination block is merged with what the
// destination holds.
func parallelCopy(ctx context.Context, src, dst *endpoint, total, step int64, n int, done *atomic.Int64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next  atomic.Int64
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
		cancel()
	}
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, step+dst.bs)
			for ctx.Err() == nil {
				off := next.Add(step) - step
				if off >= total {
					return
				}
				m := min(step, total-off)
				b := buf[:m]
				if err := readFull(ctx, src, b, off); err != nil {
					fail(err)
					return
				}
				if rem := m % dst.bs; rem != 0 {
					// Short tail on a LUN: read the block, overlay, write it whole.
					whole := m - rem
					blk := buf[whole : whole+dst.bs]
					tail := make([]byte, rem)
					copy(tail, blk[:rem])
					if err := readFull(ctx, dst, blk, off+whole); err != nil {
						fail(err)
						return
					}
					copy(blk, tail)
					b = buf[:whole+dst.bs]
				}
				if err := writeFull(ctx, dst, b, off); err != nil {
					fail(err)
					return
				}
				done.Add(m)
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

func readFull(ctx context.Context, e *endpoint, b []byte, off int64) error {
	var err error
	if e.lun != nil {
		_, err = e.lun.ReadAtContext(ctx, b, off)
	} else {
		_, err = e.r.ReadAt(b, off)
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("%s shrank while copying: %w", e.name, io.ErrUnexpectedEOF)
		}
	}
	if err != nil {
		return fmt.Errorf("read %s at %d: %w", e.name, off, err)
	}
	return nil
}

func writeFull(ctx context.Context, e *endpoint, b []byte, off int64) error {
	var err error
	if e.lun != nil {
		_, err = e.lun.WriteAtContext(ctx, b, off)
	} else {
		_, err = e.w.WriteAt(b, off)
	}
	if err != nil {
		return fmt.Errorf("write %s at %d: %w", e.name, off, err)
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// startProgress draws a progress bar on stderr until the returned func is called.
func startProgress(g *globals, done *atomic.Int64, total int64) func() {
	stop := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	draw := func() {
		d := done.Load()
		frac := 1.0
		if total > 0 {
			frac = float64(d) / float64(total)
		}
		const width = 30
		bar := strings.Repeat("#", int(frac*width)) + strings.Repeat(".", width-int(frac*width))
		rate := float64(d) / (1 << 20) / max(time.Since(start).Seconds(), 1e-3)
		fmt.Fprintf(g.stderr, "\r[%s] %5.1f%% %d/%d MiB %.1f MiB/s", bar, frac*100, d>>20, total>>20, rate)
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				draw()
				fmt.Fprintln(g.stderr)
				return
			case <-t.C:
				draw()
			}
		}
	}()
	return func() { close(stop); <-finished }
}
