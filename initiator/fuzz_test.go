package initiator

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/gosan/iscsi/pdu"
)

// FuzzTargetStream feeds arbitrary bytes as the target's side of a
// connection while a 1 KiB read is outstanding (ITT 0x00010000: slot 0,
// generation 1). The session must not panic, must not write outside the
// read buffer, and the read must finish once the stream ends.
func FuzzTargetStream(f *testing.F) {
	dataIn := func(off, n uint32, flags byte, sn uint32) []byte {
		var h pdu.BHS
		h[0] = byte(pdu.OpDataIn)
		h[1] = flags
		h.SetITT(0x00010000)
		putWord(h[:], 20, 0xffffffff)
		putWord(h[:], 36, sn)
		putWord(h[:], 40, off)
		h.SetDataSegmentLength(int(n))
		return append(h[:], make([]byte, (n+3)&^3)...)
	}
	f.Add(dataIn(0, 1024, 0x81, 0))
	f.Add(append(dataIn(0, 512, 0x00, 0), dataIn(512, 512, 0x81, 1)...))
	f.Add(dataIn(4096, 512, 0x81, 0))
	f.Add(dataIn(768, 512, 0x81, 0))
	var r2t pdu.BHS
	r2t[0] = byte(pdu.OpR2T)
	r2t.SetITT(0x00010000)
	putWord(r2t[:], 44, 1<<30)
	f.Add(r2t[:])
	var rej pdu.BHS
	rej[0] = byte(pdu.OpReject)
	rej.SetDataSegmentLength(48)
	f.Add(append(rej[:], make([]byte, 48)...))
	var async pdu.BHS
	async[0] = byte(pdu.OpAsyncMessage)
	async[36] = 4
	f.Add(async[:])
	f.Fuzz(fuzzBody)
}

func fuzzBody(t *testing.T, stream []byte) {
	{
		ic, tc := net.Pipe()
		defer tc.Close()
		cfg := buildConfig([]Option{WithNOP(0, 0), WithQueueDepth(2), WithTMFTimeout(100 * time.Millisecond), WithLogoutTimeout(100 * time.Millisecond)})
		s := &Session{cfg: cfg, log: cfg.logger}
		c := newConn(s, ic, pdu.NewReader(ic, 4096), pdu.NewWriter(ic), 8192, 8192, 0)
		c.r.SetMaxDataSegmentLength(8192)
		s.attach(c, testNeg, 1, 1, 1, 64)
		go func() { // drain what the initiator sends
			buf := make([]byte, 4096)
			for {
				if _, err := tc.Read(buf); err != nil {
					return
				}
			}
		}()
		backing := make([]byte, 2048)
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			done <- s.execute(ctx, 0, []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 2, 0}, backing[:1024], nil, &Result{})
		}()
		time.Sleep(time.Millisecond) // let the command go out first
		_ = tc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = tc.Write(stream)
		_ = tc.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("command did not finish after the stream ended")
		}
		_ = s.Close()
		for i, b := range backing[1024:] {
			if b != 0 {
				t.Fatalf("byte %d past the read buffer written", 1024+i)
			}
		}
	}
}
