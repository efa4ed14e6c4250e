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

// auxLoop flushes what the reader queued and answers target pings, so the
// reader never blocks on the socket's send side. It runs the keepalive
// beside it, in a goroutine of its own that never writes to the socket.
func (c *conn) auxLoop() {
	defer close(c.auxDone)
	s := c.s
	if s.cfg.nopInterval > 0 {
		kaDone := make(chan struct{})
		go func() {
			defer close(kaDone)
			c.keepalive()
		}()
		defer func() { <-kaDone }()
	}
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
		}
	}
}

// keepalive sends a NOP-Out after NOPInterval of receive silence and
// declares the connection dead when no NOP-In answers within NOPTimeout.
// It only queues its NOP-Out (flushViaAuxLocked), so a send stuck in
// writev, whichever goroutine made it, cannot stop it from noticing.
func (c *conn) keepalive() {
	s := c.s
	t := time.NewTicker(s.cfg.nopInterval)
	defer t.Stop()
	last := c.rxCount.Load()
	for {
		select {
		case <-c.dead:
			return
		case <-t.C:
			now := c.rxCount.Load()
			if now != last || c.closing.Load() {
				// Traffic proves the target alive; a connection logging
				// out is bounded by the logout timeout instead.
				last = now
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.nopTimeout)
			err := s.ping(ctx, c, true)
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
