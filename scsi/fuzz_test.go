package scsi

import (
	"errors"
	"testing"
)

// checkErr fails unless err is nil or a *ParseError matching one of the
// two sentinels.
func checkErr(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("error %T is not a *ParseError: %v", err, err)
	}
	if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrMalformed) {
		t.Fatalf("error matches neither sentinel: %v", err)
	}
	_ = err.Error()
}

func addSeeds(f *testing.F, seeds ...string) {
	for _, s := range seeds {
		f.Add(unhex(s))
	}
	f.Add([]byte{})
}

func FuzzParseInquiry(f *testing.F) {
	addSeeds(f, hexInquiryDisk, hexInquiryDisk64, hexInquiryController)
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := ParseInquiry(b)
		checkErr(t, err)
		if err == nil {
			if len(q.Vendor) > 8 || len(q.Product) > 16 || len(q.Revision) > 4 || len(b) < InquiryMinLen {
				t.Fatalf("bad parse of %x: %+v", b, q)
			}
			_ = q.Type.String() + q.VersionString()
		}
	})
}

func FuzzParseVPD83(f *testing.F) {
	addSeeds(f, hexVPD83, hexVPD83At64, hexVPD83LIO)
	f.Fuzz(func(t *testing.T, b []byte) {
		ds, err := ParseVPDDeviceID(b)
		checkErr(t, err)
		total := 0
		for i := range ds {
			total += 4 + len(ds[i].Value)
			_ = ds[i].String() + ds[i].Type.String() + ds[i].CodeSet.String() + ds[i].Association.String() + ds[i].Protocol.String()
			ds[i].Number()
		}
		if total > len(b) {
			t.Fatalf("designators (%d bytes) larger than the input (%d)", total, len(b))
		}
	})
}

// FuzzParseVPD covers the other VPD parsers; the first byte selects one.
func FuzzParseVPD(f *testing.F) {
	for _, s := range []string{hexVPD00, hexVPD80, hexVPDB0, hexVPDB0Limits, hexVPDB0Old, hexVPDB1, hexVPDB1SSD, hexVPDB2, hexVPDB2Thin} {
		b := unhex(s)
		f.Add(append([]byte{b[1]}, b...))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		b := in[1:]
		var err error
		switch in[0] {
		case 0x00:
			var p []uint8
			p, err = ParseVPDSupportedPages(b)
			if len(p) > len(b) {
				t.Fatal("more pages than bytes")
			}
		case 0x80:
			var s string
			s, err = ParseVPDUnitSerial(b)
			if len(s) > len(b) {
				t.Fatal("serial longer than input")
			}
		case 0xb0:
			_, err = ParseVPDBlockLimits(b)
		case 0xb1:
			var c BlockDeviceCharacteristics
			c, err = ParseVPDBlockDeviceCharacteristics(b)
			c.NonRotating()
		case 0xb2:
			_, err = ParseVPDLogicalBlockProvisioning(b)
		default:
			var n int
			n, err = VPDPageLength(b)
			if err == nil && (n < 4 || n > 65539) {
				t.Fatalf("page length %d", n)
			}
		}
		checkErr(t, err)
	})
}

func FuzzParseSense(f *testing.F) {
	addSeeds(f, hexSenseDesc, hexSenseDescDeferred, "f00003000123450a00000000110000000000",
		"700006000000000a000000002a09", "7206290700000010"+"05020020"+"000a8000000000")
	// The segment seeds start with the 2-byte SenseLength.
	addSeeds(f, hexSenseSegUA, hexSenseSegLUNNotSupported)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSense(b)
		checkErr(t, err)
		if err == nil {
			if s.Key > 15 || s.ResponseCode < 0x70 || s.ResponseCode > 0x73 {
				t.Fatalf("bad sense %+v", s)
			}
			_ = s.String()
		}
		s, err = ParseSenseSegment(b)
		checkErr(t, err)
		if err == nil {
			_ = s.String()
		}
		rerr := ResponseError(StatusCheckCondition, b)
		var se *SenseError
		var ste *StatusError
		if !errors.As(rerr, &se) && !errors.As(rerr, &ste) {
			t.Fatalf("ResponseError gave %T", rerr)
		}
		_ = rerr.Error()
	})
}

func FuzzParseReportLUNs(f *testing.F) {
	addSeeds(f, hexReportLUNs16, hexReportLUNs32, "00000008"+"00000000"+"c101000000000000")
	f.Fuzz(func(t *testing.T, b []byte) {
		luns, err := ParseReportLUNs(b)
		checkErr(t, err)
		if len(luns)*8 > len(b) {
			t.Fatalf("%d LUNs from %d bytes", len(luns), len(b))
		}
		raw, _ := ParseReportLUNsRaw(b)
		for i, r := range raw {
			a := ParseLUN(r)
			_ = a.String()
			if a.Numbered {
				if n := DecodeLUN(r); DecodeLUN(EncodeLUN(n)) != n || n != luns[i] {
					t.Fatalf("LUN %#x: decoded %d does not round trip", r, n)
				}
			} else if luns[i] != r {
				t.Fatalf("LUN %#x without a number decoded to %d", r, luns[i])
			}
		}
		ReportLUNsLength(b)
	})
}

func FuzzEncodeLUN(f *testing.F) {
	for _, n := range []uint64{0, 1, 255, 256, 300, 16383, 16384, MaxExtendedFlatLUN, MaxLongExtendedFlatLUN, 1 << 40} {
		f.Add(n)
	}
	f.Fuzz(func(t *testing.T, n uint64) {
		raw := EncodeLUN(n)
		if n <= MaxLongExtendedFlatLUN {
			if got := DecodeLUN(raw); got != n {
				t.Fatalf("EncodeLUN(%d) = %#x decodes to %d", n, raw, got)
			}
		} else if raw != n {
			t.Fatalf("EncodeLUN(%#x) changed a value beyond the LUN range", n)
		}
		if a := ParseLUN(n); !a.Numbered && DecodeLUN(n) != n {
			t.Fatalf("undecodable %#x was decoded", n)
		}
	})
}

func FuzzParseReadCapacity16(f *testing.F) {
	addSeeds(f, hexReadCap16, hexReadCap10Disk, hexReadCap10Null)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseReadCapacity16(b)
		checkErr(t, err)
		if err == nil {
			c.Bytes()
			c.PhysicalBlockLength()
			if c.LowestAlignedLBA > 0x3fff {
				t.Fatal("lowest aligned LBA has 14 bits")
			}
		}
		c, err = ParseReadCapacity10(b)
		checkErr(t, err)
		if err == nil && c.LastLBA > 0xffffffff {
			t.Fatal("READ CAPACITY(10) LBA beyond 32 bits")
		}
	})
}

func FuzzParseModeSense(f *testing.F) {
	f.Add(append([]byte{6}, unhex(hexModeSense6)...))
	f.Add(append([]byte{6}, unhex("0b008008"+"00200000"+"00000200")...))
	f.Add(append([]byte{10}, unhex("002a"+"00"+"10"+"01"+"00"+"0010"+"0000000100000000"+"00000000"+"00001000"+
		"8812"+"1400ffff0000ffffffff8014000000000000")...))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		var m ModeSense
		var err error
		if in[0]&1 == 0 {
			m, err = ParseModeSense6(in[1:])
		} else {
			m, err = ParseModeSense10(in[1:])
		}
		checkErr(t, err)
		total := 0
		for _, p := range m.Pages {
			total += 2 + len(p.Data)
		}
		if total+8*len(m.Blocks) > len(in) {
			t.Fatalf("pages and descriptors (%d) larger than the input (%d)", total+8*len(m.Blocks), len(in))
		}
		m.Page(ModePageCaching, 0)
	})
}

func FuzzParsePR(f *testing.F) {
	addSeeds(f, "00000007"+"00000010"+"0000000000001234"+"abcdef0123456789",
		"00000003"+"00000010"+"0000000000001234"+"00000000"+"00"+"05"+"0000")
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParsePRKeys(b)
		checkErr(t, err)
		if len(k.Keys)*8 > len(b) {
			t.Fatal("more keys than bytes")
		}
		r, err := ParsePRReservation(b)
		checkErr(t, err)
		_ = r.Type.String()
	})
}

func FuzzPlanRW(f *testing.F) {
	f.Add(uint64(0), uint32(2500), uint32(1024))
	f.Add(uint64(0xffffff00), uint32(0x200), uint32(0x100))
	f.Add(uint64(1)<<63, uint32(0xffffffff), uint32(1))
	f.Fuzz(func(t *testing.T, lba uint64, blocks, maxT uint32) {
		if maxT != 0 && uint64(blocks)/uint64(maxT) > 1<<16 {
			maxT = blocks>>16 + 1 // keep the run short
		}
		p := PlanRW(lba, blocks, maxT)
		var sum uint64
		next := lba
		var cdb [16]byte
		for c, ok := p.Next(); ok; c, ok = p.Next() {
			if c.Blocks == 0 || (maxT != 0 && c.Blocks > maxT) || c.LBA != next || c.Offset != sum {
				t.Fatalf("bad chunk %+v (lba %d blocks %d max %d)", c, lba, blocks, maxT)
			}
			out := c.AppendReadCDB(cdb[:0], 0)
			if (len(out) == 16) != c.Use16 {
				t.Fatalf("chunk %+v gave a %d-byte CDB", c, len(out))
			}
			sum += uint64(c.Blocks)
			next += uint64(c.Blocks)
		}
		if sum != uint64(blocks) {
			t.Fatalf("chunks cover %d of %d blocks", sum, blocks)
		}
	})
}
