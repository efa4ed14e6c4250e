package scsi_test

import (
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/gosan/iscsi/scsi"
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// Build a READ(10) into a buffer that lives in the command header.
func ExampleRead10CDB() {
	var cdb [16]byte
	b := scsi.Read10CDB(cdb[:0], 2048, 384, scsi.FUA)
	fmt.Printf("% x\n", b)
	// Output: 28 08 00 00 08 00 00 01 80 00
}

// Split a transfer at the device's MAXIMUM TRANSFER LENGTH (VPD page 0xB0).
func ExamplePlanRW() {
	var cdb [16]byte
	p := scsi.PlanRW(0xfffffc00, 3000, 1024)
	for c, ok := p.Next(); ok; c, ok = p.Next() {
		b := c.AppendWriteCDB(cdb[:0], 0)
		fmt.Printf("lba %#x blocks %d offset %d: % x\n", c.LBA, c.Blocks, c.Offset, b[:2])
	}
	// Output:
	// lba 0xfffffc00 blocks 1024 offset 0: 2a 00
	// lba 0x100000000 blocks 1024 offset 1024: 8a 00
	// lba 0x100000400 blocks 952 offset 2048: 8a 00
}

// Parse the standard INQUIRY data tgtd returns for a disk.
func ExampleParseInquiry() {
	data := mustHex("000005123d00000249455420202020205649525455414c2d4449534b20202020303030310000000000000000000000000000000000000000000004c0096003000000")
	q, err := scsi.ParseInquiry(data)
	if err != nil {
		panic(err)
	}
	fmt.Println(q.Type, q.VersionString(), q.Vendor, q.Product, q.Revision, "CmdQue:", q.CmdQue)
	// Output: disk SPC-3 IET VIRTUAL-DISK 0001 CmdQue: true
}

// Turn a SCSI Response (status and data segment) into an error the caller
// can branch on.
func ExampleResponseError() {
	seg := mustHex("0012700006000000000a00000000290000000000") // tgtd, first command of a session
	err := scsi.ResponseError(scsi.StatusCheckCondition, seg)
	fmt.Println(err)
	fmt.Println("unit attention:", errors.Is(err, scsi.ErrUnitAttention))
	var se *scsi.SenseError
	if errors.As(err, &se) {
		fmt.Printf("key %v asc %02x ascq %02x\n", se.Key, se.ASC, se.ASCQ)
	}
	// Output:
	// scsi: CHECK CONDITION: UNIT ATTENTION: power on, reset, or bus device reset occurred (29/00)
	// unit attention: true
	// key UNIT ATTENTION asc 29 ascq 00
}

// Re-issue REPORT LUNS when the first allocation length was too small.
func ExampleParseReportLUNs() {
	first := mustHex("00000018000000000000000000000000") // answer to allocation length 16
	_, err := scsi.ParseReportLUNs(first)
	var pe *scsi.ParseError
	if errors.As(err, &pe) && errors.Is(err, scsi.ErrTruncated) {
		fmt.Println("ask again with allocation length", pe.Need)
	}
	second := mustHex("000000180000000000000000000000000001000000000000412c000000000000")
	luns, err := scsi.ParseReportLUNs(second)
	fmt.Println(luns, err)
	// Output:
	// ask again with allocation length 32
	// [0 1 300] <nil>
}

func ExampleEncodeLUN() {
	for _, n := range []uint64{1, 300, 20000} {
		raw := scsi.EncodeLUN(n)
		fmt.Printf("%d -> %016x -> %v\n", n, raw, scsi.ParseLUN(raw))
	}
	// Output:
	// 1 -> 0001000000000000 -> 1 (peripheral device)
	// 300 -> 412c000000000000 -> 300 (flat space)
	// 20000 -> d2004e2000000000 -> 20000 (extended flat space)
}

// List the designators of VPD page 0x83.
func ExampleParseVPDDeviceID() {
	page := mustHex("00830048020100244945542020202020303030313030303100000000000000000000000000000000000000000103000830000001000000010103001060000000000000000e00000000010001")
	ds, err := scsi.ParseVPDDeviceID(page)
	if err != nil {
		panic(err)
	}
	for _, d := range ds {
		fmt.Printf("%v, %v: %v\n", d.Association, d.Type, d.String())
	}
	// Output:
	// logical unit, T10 vendor ID: t10.IET     00010001
	// logical unit, NAA: naa.3000000100000001
	// logical unit, NAA: naa.60000000000000000e00000000010001
}

// Unmap two ranges.
func ExampleAppendUnmapParams() {
	params := scsi.AppendUnmapParams(nil, []scsi.UnmapDescriptor{{LBA: 0, Blocks: 2048}, {LBA: 1 << 20, Blocks: 8}})
	cdb := scsi.UnmapCDB(nil, false, uint16(len(params)))
	fmt.Printf("cdb % x\nparameter list %d bytes\n", cdb, len(params))
	// Output:
	// cdb 42 00 00 00 00 00 00 00 28 00
	// parameter list 40 bytes
}
