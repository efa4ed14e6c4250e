package pdu

import (
	"bytes"
	"io"
	"testing"
)

func benchSCSICommand() *SCSICommand {
	return &SCSICommand{Final: true, Read: true, Attr: AttrSimple, LUN: 0x0001000000000000, ITT: 0x1234,
		ExpectedDataTransferLength: 4096, CmdSN: 100, ExpStatSN: 200,
		CDB: []byte{0x88, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 8, 0, 0}}
}

func benchDataIn() *DataIn {
	return &DataIn{Final: true, StatusPresent: true, LUN: 0x0001000000000000, ITT: 0x1234, TTT: ReservedTag,
		StatSN: 7, ExpCmdSN: 8, MaxCmdSN: 40, DataSN: 0, BufferOffset: 0, Data: make([]byte, 4096)}
}

func BenchmarkEncodeSCSICommandHeader(b *testing.B) {
	m := benchSCSICommand()
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = m.AppendHeader(buf[:0])
	}
}

func BenchmarkDecodeSCSICommandHeader(b *testing.B) {
	wire := benchSCSICommand().Encode(nil)
	var m SCSICommand
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Decode(wire); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeDataInHeader(b *testing.B) {
	m := benchDataIn()
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = m.AppendHeader(buf[:0])
	}
}

func BenchmarkDecodeDataInHeader(b *testing.B) {
	m0 := benchDataIn()
	hdr := m0.AppendHeader(nil)
	h := (*BHS)(hdr)
	var m DataIn
	b.ReportAllocs()
	for b.Loop() {
		if err := m.DecodeHeader(h, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeDataIn(b *testing.B) {
	wire := benchDataIn().Encode(nil)
	var m DataIn
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Decode(wire); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReaderHeaderData reads 4 KiB Data-In PDUs from an endless stream.
func BenchmarkReaderHeaderData(b *testing.B) {
	for _, dig := range []bool{false, true} {
		name := "nodigest"
		if dig {
			name = "crc32c"
		}
		b.Run(name, func(b *testing.B) {
			var buf bytes.Buffer
			w := NewWriter(&buf)
			w.SetDigests(dig, dig)
			for range 16 {
				w.QueueMessage(benchDataIn())
			}
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
			r := NewReader(&repeatReader{b: buf.Bytes()}, 256<<10)
			r.SetDigests(dig, dig)
			r.SetMaxDataSegmentLength(8192)
			dst := make([]byte, 4096)
			var m DataIn
			b.SetBytes(4096)
			b.ReportAllocs()
			for b.Loop() {
				h, ahs, err := r.ReadHeader()
				if err != nil {
					b.Fatal(err)
				}
				if err := m.DecodeHeader(h, ahs); err != nil {
					b.Fatal(err)
				}
				if err := r.ReadData(dst); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkWriterQueueFlush queues a SCSI Command and a 4 KiB Data-Out and
// flushes them together.
func BenchmarkWriterQueueFlush(b *testing.B) {
	for _, dig := range []bool{false, true} {
		name := "nodigest"
		if dig {
			name = "crc32c"
		}
		b.Run(name, func(b *testing.B) {
			w := NewWriter(io.Discard)
			w.SetDigests(dig, dig)
			cmd := benchSCSICommand()
			out := &DataOut{Final: true, ITT: 1, TTT: ReservedTag, Data: make([]byte, 4096)}
			b.SetBytes(4096)
			b.ReportAllocs()
			for b.Loop() {
				w.QueueMessage(cmd)
				w.QueueMessage(out)
				if err := w.Flush(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestHotPathsDoNotAllocate(t *testing.T) {
	cmd := benchSCSICommand()
	din := benchDataIn()
	cmdWire := cmd.Encode(nil)
	dinHdr := din.AppendHeader(nil)
	buf := make([]byte, 0, 256)
	var mc SCSICommand
	var md DataIn

	var stream bytes.Buffer
	w := NewWriter(&stream)
	w.SetDigests(true, true)
	for range 4 {
		w.QueueMessage(din)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r := NewReader(&repeatReader{b: stream.Bytes()}, 64<<10)
	r.SetDigests(true, true)
	dst := make([]byte, 4096)

	wd := NewWriter(io.Discard)
	wd.SetDigests(true, true)
	out := &DataOut{Data: make([]byte, 4096)}

	for name, f := range map[string]func(){
		"SCSICommand.AppendHeader": func() { buf = cmd.AppendHeader(buf[:0]) },
		"SCSICommand.Decode": func() {
			if err := mc.Decode(cmdWire); err != nil {
				t.Fatal(err)
			}
		},
		"DataIn.AppendHeader": func() { buf = din.AppendHeader(buf[:0]) },
		"DataIn.DecodeHeader": func() {
			if err := md.DecodeHeader((*BHS)(dinHdr), nil); err != nil {
				t.Fatal(err)
			}
		},
		"Reader.ReadHeader+ReadData": func() {
			h, ahs, err := r.ReadHeader()
			if err == nil {
				err = md.DecodeHeader(h, ahs)
			}
			if err == nil {
				err = r.ReadData(dst)
			}
			if err != nil {
				t.Fatal(err)
			}
		},
		"Writer.Queue+Flush": func() {
			wd.QueueMessage(cmd)
			wd.QueueMessage(out)
			wd.Queue(cmdWire[:BHSLen], nil)
			if err := wd.Flush(); err != nil {
				t.Fatal(err)
			}
		},
	} {
		f() // warm up internal buffers
		if a := testing.AllocsPerRun(200, f); a != 0 {
			t.Errorf("%s: %v allocs/op, want 0", name, a)
		}
	}
}
