package iscsitest

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/gosan/iscsi/pdu"
	"github.com/gosan/iscsi/scsi"
)

// FuzzServerConn logs in properly, then feeds arbitrary bytes to the
// server: it must neither panic nor hang, and it keeps serving others.
func FuzzServerConn(f *testing.F) {
	cmd := &pdu.SCSICommand{Final: true, Read: true, LUN: scsi.EncodeLUN(1), ITT: 1, ExpectedDataTransferLength: 512, CmdSN: 1, CDB: scsi.Read10CDB(nil, 0, 1, 0)}
	f.Add(cmd.Encode(nil))
	w := &pdu.SCSICommand{Write: true, LUN: scsi.EncodeLUN(1), ITT: 2, ExpectedDataTransferLength: 1 << 20, CmdSN: 1, CDB: scsi.Write10CDB(nil, 0, 2048, 0), Data: make([]byte, 100)}
	d := &pdu.DataOut{Final: true, LUN: scsi.EncodeLUN(1), ITT: 2, TTT: pdu.ReservedTag, BufferOffset: 100, Data: make([]byte, 412)}
	f.Add(d.Encode(w.Encode(nil)))
	f.Add((&pdu.NOPOut{ITT: 3, TTT: pdu.ReservedTag, CmdSN: 1, Data: []byte("x")}).Encode(nil))
	f.Add((&pdu.TaskMgmtRequest{Immediate: true, Function: pdu.TMFAbortTask, ITT: 4, ReferencedTaskTag: 2}).Encode(w.Encode(nil)))
	f.Add([]byte{0x05, 0x80, 0, 0, 0, 0xff, 0xff, 0xff})

	cfg := oneTarget()
	cfg.Negotiation = Negotiation{InitialR2T: Bool(false)}
	srv, err := NewServer(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srv.Close() })

	f.Fuzz(func(t *testing.T, in []byte) {
		cli, srvEnd := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.ServeConn(srvEnd)
		}()
		c := newRawClient(t, cli)
		c.mustLogin(testIQN, pdu.KV{Key: "InitialR2T", Value: "No"})
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			io.Copy(io.Discard, cli)
		}()
		cli.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, werr := cli.Write(in)
		cli.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("server still serving 5 s after the client closed (write: %v)", werr)
		}
		<-drained
	})
}
