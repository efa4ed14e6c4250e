package main

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/gosan/iscsi/initiator"
)

// queueCopy copies [0,total) like parallelCopy, but from one goroutine:
// the LUN sides go through initiator.Queues (depth pieces in flight), the
// file sides are read and written in place. Each of depth buffers cycles
// through read, then write. The pieces must be whole destination blocks
// and at most MaxIOSize of each LUN side (the caller checks).
func queueCopy(ctx context.Context, src, dst *endpoint, total, step int64, depth int, done *atomic.Int64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var srcQ, dstQ *initiator.Queue
	if src.lun != nil {
		srcQ = src.lun.NewQueue()
		defer srcQ.Close()
	}
	if dst.lun != nil {
		dstQ = dst.lun.NewQueue()
		defer dstQ.Close()
	}
	type piece struct {
		buf []byte
		off int64
		n   int64
	}
	pieces := make([]piece, depth)
	free := make([]int, 0, depth) // buffers with nothing in flight
	for i := range pieces {
		pieces[i].buf = make([]byte, step)
		free = append(free, i)
	}
	var next int64
	out := make([]initiator.Completion, depth)
	busy := 0

	// write hands a piece that was read to the destination.
	write := func(i int) error {
		p := &pieces[i]
		if dstQ == nil {
			if err := writeFull(ctx, dst, p.buf[:p.n], p.off); err != nil {
				return err
			}
			done.Add(p.n)
			free = append(free, i)
			busy--
			return nil
		}
		n, err := dstQ.Submit(ctx, initiator.IO{Write: true, Buf: p.buf[:p.n], Off: p.off, Tag: uint64(i)})
		if err == nil && n == 0 {
			err = fmt.Errorf("write %s at %d: no command slot free", dst.name, p.off)
		}
		return err
	}
	// reaped handles completions: a read goes on to be written, a write
	// frees its buffer.
	reaped := func(cs []initiator.Completion, isWrite bool, e *endpoint) error {
		for _, c := range cs {
			p := &pieces[c.Tag]
			if c.Err != nil {
				op := "read"
				if isWrite {
					op = "write"
				}
				return fmt.Errorf("%s %s at %d: %w", op, e.name, p.off, c.Err)
			}
			if isWrite {
				done.Add(p.n)
				free = append(free, int(c.Tag))
				busy--
			} else if err := write(int(c.Tag)); err != nil {
				return err
			}
		}
		return nil
	}
	for {
		// Start reading into every free buffer.
		for len(free) > 0 && next < total {
			i := free[len(free)-1]
			free = free[:len(free)-1]
			p := &pieces[i]
			p.off, p.n = next, min(step, total-next)
			next += p.n
			busy++
			if srcQ == nil {
				if err := readFull(ctx, src, p.buf[:p.n], p.off); err != nil {
					return err
				}
				if err := write(i); err != nil {
					return err
				}
				continue
			}
			n, err := srcQ.Submit(ctx, initiator.IO{Buf: p.buf[:p.n], Off: p.off, Tag: uint64(i)})
			if err == nil && n == 0 {
				err = fmt.Errorf("read %s at %d: no command slot free", src.name, p.off)
			}
			if err != nil {
				return err
			}
		}
		if busy == 0 {
			return ctx.Err()
		}
		// Take what has completed on either side without waiting, then
		// wait on a side with commands in flight.
		progress := false
		for _, side := range []struct {
			q       *initiator.Queue
			isWrite bool
			e       *endpoint
		}{{srcQ, false, src}, {dstQ, true, dst}} {
			if side.q == nil || side.q.Inflight() == 0 {
				continue
			}
			min := 0
			if !progress && (side.isWrite || dstQ == nil || dstQ.Inflight() == 0) {
				min = 1 // nothing else to do: wait here
			}
			n, err := side.q.Reap(ctx, out, min)
			if err != nil {
				return err
			}
			progress = progress || n > 0
			if err := reaped(out[:n], side.isWrite, side.e); err != nil {
				return err
			}
		}
	}
}
