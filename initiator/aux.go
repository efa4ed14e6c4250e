package initiator

import (
	"context"
	"fmt"
	"time"

	"github.com/gosan/iscsi/pdu"
)

type pingReq struct {
	ttt  uint32
	lun  uint64
	data []byte
}

// auxLoop answers target pings and sends keepalive NOP-Outs, so the reader
// never blocks on the socket's send side.
func (c *conn) auxLoop() {
	defer close(c.auxDone)
	s := c.s
	interval := s.cfg.nopInterval
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	last := c.rxCount.Load()
	for {
		select {
		case <-c.dead:
			return
		case <-c.renegKick:
			if !c.closing.Load() {
				s.renegotiate(c)
			}
		case <-c.flushKick:
			c.qmu.Lock()
			c.kickLocked()
		case <-c.auxKick:
			c.pingMu.Lock()
			pings := c.pings
			c.pings = nil
			c.pingMu.Unlock()
			for _, p := range pings {
				var hdr pdu.BHS
				answer := pdu.NOPOut{Immediate: true, LUN: p.lun, ITT: pdu.ReservedTag, TTT: p.ttt, Data: p.data}
				answer.AppendHeader(hdr[:0])
				s.win.mu.Lock()
				hdr.SetCmdSN(s.win.cmdSN)
				c.qmu.Lock()
				s.win.mu.Unlock()
				c.enqueueLocked(&hdr, p.data)
				c.kickLocked()
			}
		case <-tick:
			now := c.rxCount.Load()
			if now != last || c.closing.Load() {
				// Traffic proves the target alive; a connection logging
				// out is bounded by the logout timeout instead.
				last = now
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.nopTimeout)
			err := s.ping(ctx, c)
			cancel()
			if err != nil && !c.isDead() {
				s.stats.nopTimeouts.Add(1)
				c.fail(&ConnectionError{Op: "keepalive", Err: fmt.Errorf("no NOP-In within %v: %w", s.cfg.nopTimeout, err)})
				return
			}
			last = c.rxCount.Load()
		}
	}
}
