//go:build linux

package tgtd

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"
)

// rawLogin is a minimal iSCSI login (no CHAP) used to create a session on
// the harness's tgtd: it starts in the operational stage and asks to go to
// full feature phase. It returns the open connection on success, or the
// login status (class<<8 | detail) the target answered.
func rawLogin(ctx context.Context, portal, initiator, target string) (net.Conn, uint16, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", portal)
	if err != nil {
		return nil, 0, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	} else {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	}
	keys := "InitiatorName=" + initiator + "\x00TargetName=" + target + "\x00SessionType=Normal\x00"
	var tsih uint16
	var expStatSN uint32
	for round := 0; round < 4; round++ {
		data := []byte(keys)
		if round > 0 {
			data = nil
		}
		var h [48]byte
		h[0] = 0x40 | 0x03
		h[1] = 0x80 | 1<<2 | 3 // Transit, CSG operational, NSG full feature
		dsl := len(data)
		h[5], h[6], h[7] = byte(dsl>>16), byte(dsl>>8), byte(dsl)
		copy(h[8:14], []byte{0x80, 0x47, 0x6f, 0x53, 0x41, 0x4e})
		binary.BigEndian.PutUint16(h[14:], tsih)
		binary.BigEndian.PutUint32(h[16:], 1)
		binary.BigEndian.PutUint32(h[24:], 1)
		binary.BigEndian.PutUint32(h[28:], expStatSN)
		msg := append(h[:], data...)
		for len(msg)%4 != 0 {
			msg = append(msg, 0)
		}
		if _, err := c.Write(msg); err != nil {
			c.Close()
			return nil, 0, err
		}
		var r [48]byte
		if _, err := io.ReadFull(c, r[:]); err != nil {
			c.Close()
			return nil, 0, fmt.Errorf("read login response: %w", err)
		}
		if r[0]&0x3f != 0x23 {
			c.Close()
			return nil, 0, fmt.Errorf("opcode %#x, want login response", r[0]&0x3f)
		}
		rl := int(r[5])<<16 | int(r[6])<<8 | int(r[7])
		if rl > 1<<16 {
			c.Close()
			return nil, 0, fmt.Errorf("data segment %d too long", rl)
		}
		body := make([]byte, (rl+3)&^3)
		if _, err := io.ReadFull(c, body); err != nil {
			c.Close()
			return nil, 0, err
		}
		status := uint16(r[36])<<8 | uint16(r[37])
		if status != 0 {
			c.Close()
			return nil, status, nil
		}
		tsih = binary.BigEndian.Uint16(r[14:])
		expStatSN = binary.BigEndian.Uint32(r[24:]) + 1
		if r[1]&0x80 != 0 && r[1]&3 == 3 {
			_ = c.SetDeadline(time.Time{})
			return c, 0, nil
		}
	}
	c.Close()
	return nil, 0, fmt.Errorf("target did not move to full feature phase")
}
