package pdu_test

import (
	"bytes"
	"fmt"

	"github.com/gosan/iscsi/pdu"
)

func ExampleSCSICommand_Encode() {
	// READ(10) of 8 blocks at LBA 0x1234 from LUN 0.
	cmd := &pdu.SCSICommand{
		Final:                      true,
		Read:                       true,
		Attr:                       pdu.AttrSimple,
		ITT:                        1,
		ExpectedDataTransferLength: 8 * 512,
		CmdSN:                      1,
		ExpStatSN:                  1,
		CDB:                        []byte{0x28, 0, 0, 0, 0x12, 0x34, 0, 0, 8, 0},
	}
	wire := cmd.Encode(nil)
	fmt.Printf("%d bytes: % x\n", len(wire), wire[:8])

	var back pdu.SCSICommand
	if err := back.Decode(wire); err != nil {
		panic(err)
	}
	fmt.Println(back.Read, back.Attr, back.ExpectedDataTransferLength, back.CDB[0] == 0x28)
	// Output:
	// 48 bytes: 01 c1 00 00 00 00 00 00
	// true Simple 4096 true
}

func ExampleReader() {
	// A target's answer: Data-In with status, written with digests.
	var conn bytes.Buffer
	w := pdu.NewWriter(&conn)
	w.SetDigests(true, true)
	w.QueueMessage(&pdu.DataIn{Final: true, StatusPresent: true, ITT: 1, Data: []byte("hello world")})
	if err := w.Flush(); err != nil {
		panic(err)
	}

	r := pdu.NewReader(&conn, 0)
	r.SetDigests(true, true)
	r.SetMaxDataSegmentLength(8192)
	h, ahs, err := r.ReadHeader()
	if err != nil {
		panic(err)
	}
	var din pdu.DataIn
	if err := din.DecodeHeader(h, ahs); err != nil {
		panic(err)
	}
	buf := make([]byte, 64) // e.g. the caller's read buffer at din.BufferOffset
	if err := r.ReadData(buf); err != nil {
		panic(err)
	}
	fmt.Println(h.Opcode(), din.ITT, din.StatusPresent, string(buf[:h.DataSegmentLength()]))
	// Output: SCSI Data-In 1 true hello world
}

func ExampleParseText() {
	data := pdu.AppendText(nil,
		pdu.KV{Key: "HeaderDigest", Value: "CRC32C,None"},
		pdu.KV{Key: "MaxRecvDataSegmentLength", Value: "0x40000"},
		pdu.KV{Key: "ImmediateData", Value: "Yes"},
	)
	kvs, err := pdu.ParseText(data)
	if err != nil {
		panic(err)
	}
	for _, kv := range kvs {
		switch kv.Key {
		case "HeaderDigest":
			fmt.Println(kv.Key, pdu.SplitList(kv.Value))
		case "MaxRecvDataSegmentLength":
			n, err := pdu.ParseNumber(kv.Value)
			fmt.Println(kv.Key, n, err)
		case "ImmediateData":
			b, err := pdu.ParseBool(kv.Value)
			fmt.Println(kv.Key, b, err)
		}
	}
	// Output:
	// HeaderDigest [CRC32C None]
	// MaxRecvDataSegmentLength 262144 <nil>
	// ImmediateData true <nil>
}

func ExampleSerialLess() {
	// CmdSN wraps around: 0xffffffff comes before 2.
	fmt.Println(pdu.SerialLess(0xffffffff, 2), pdu.SerialLess(2, 0xffffffff))
	// Output: true false
}

func ExampleCRC32C() {
	fmt.Printf("% x\n", pdu.AppendDigest(nil, pdu.CRC32C(make([]byte, 32))))
	// Output: aa 36 91 8a
}
