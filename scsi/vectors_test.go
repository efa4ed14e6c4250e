package scsi

import (
	"encoding/hex"
	"strings"
)

// Byte sequences from real devices.
//
// "pcap1" vectors were extracted once (with a throwaway pcap reader) from
// ../pdu/testdata/libiscsi-tgtd.pcap: libiscsi tools and qemu talking to
// tgtd 1.0.85 (LUN 1, a file-backed disk). Each is the data segment of the
// Data-In PDU (or SCSI Response) answering the CDB named in the comment.
//
// "pcap2" vectors were captured with tcpdump on loopback while libiscsi-bin
// 1.19.0 (iscsi-ls -s, iscsi-inq, iscsi-readcapacity16) queried tgtd 1.0.85
// (Debian 12) serving target iqn.2024-01.test.scsi:disk1 with LUN 1 (64 MiB
// file, --bstype rdwr) and LUN 300 (null-1TiB, --bstype null).
const (
	// pcap1: INQUIRY 12 00 00 00 42 00 (allocation length 66), LUN 1.
	hexInquiryDisk = "000005123d00000249455420202020205649525455414c2d4449534b20202020303030310000000000000000000000000000000000000000000004c0096003000000"
	// pcap1: the same INQUIRY with allocation length 64 (data cut at 64).
	hexInquiryDisk64 = "000005123d00000249455420202020205649525455414c2d4449534b20202020303030310000000000000000000000000000000000000000000004c009600300"
	// pcap2: INQUIRY, allocation length 64, LUN 0 (tgtd's controller LU).
	hexInquiryController = "0c0005123d0000024945542020202020436f6e74726f6c6c6572202020202020303030310000000000000000000000000000000000000000000004c0096001fb"
	// pcap1: MODE SENSE(6) 1a 08 3f 00 ff 00 (DBD, all pages), LUN 1.
	hexModeSense6 = "610010000000020e8080000a0000000000000000000008121400ffff0000ffffffff80140000000000000a0a021000000000000002004a01001c040000000000000000000000000000000000000000000000000000001c0a08000000000000000000"
	// pcap1: READ CAPACITY(16) 9e 10 ... 20 00, LUN 1 (2^21 blocks of 512).
	hexReadCap16 = "00000000001fffff000002000003000000000000000000000000000000000000"
	// pcap2: READ CAPACITY(10), LUN 1 (64 MiB) and LUN 300 (1 TiB, null).
	hexReadCap10Disk = "0001ffff00000200"
	hexReadCap10Null = "7fffffff00000200"
	// pcap1: INQUIRY EVPD page 0x00, allocation length 64.
	hexVPD00 = "00000006008083b0b1b2"
	// pcap2: INQUIRY EVPD page 0x80, allocation length 64.
	hexVPD80 = "00800024202020202020202020202020202020202020202020202020202020202020626561663131"
	// pcap1: INQUIRY EVPD page 0x83, allocation length 76 (whole page) and
	// 64 (truncated: the page is 76 bytes).
	hexVPD83     = "00830048020100244945542020202020303030313030303100000000000000000000000000000000000000000103000830000001000000010103001060000000000000000e00000000010001"
	hexVPD83At64 = "00830048020100244945542020202020303030313030303100000000000000000000000000000000000000000103000830000001000000010103001060000000"
	// pcap1: INQUIRY EVPD page 0xb0, allocation length 64.
	hexVPDB0 = "00b0003c008000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
	// pcap2: INQUIRY EVPD page 0xb1, allocation length 68 (page is 68 bytes).
	hexVPDB1 = "00b1004000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
	// pcap1: INQUIRY EVPD page 0xb2, allocation length 64.
	hexVPDB2 = "00b2000400000000"
	// pcap2: REPORT LUNS a0 ... 10 00 (allocation length 16: cut) and with
	// allocation length 32: LUNs 0, 1 and 300 (flat space 0x412c).
	hexReportLUNs16 = "00000018000000000000000000000000"
	hexReportLUNs32 = "000000180000000000000000000000000001000000000000412c000000000000"
	// pcap1 and pcap2: SCSI Response data segment of the first command of
	// every session: CHECK CONDITION, UNIT ATTENTION 29/00.
	hexSenseSegUA = "0012700006000000000a00000000290000000000"
	// pcap2: SCSI Response to TEST UNIT READY on LUN 0x012c (libiscsi's
	// encoding of LUN 300 in its URL): ILLEGAL REQUEST, 25/00.
	hexSenseSegLUNNotSupported = "0012700005000000000a00000000250000000000"
)

// Synthetic vectors, built by hand from the SPC-4/SBC-3 layouts, for
// fields tgtd leaves at zero.
const (
	// Descriptor-format sense (0x72): ILLEGAL REQUEST 24/00 with an
	// information descriptor (VALID, 0x123456789a), a sense key specific
	// descriptor (SKSV, C/D: in the CDB, field pointer byte 4)
	// and a field replaceable unit descriptor (code 7).
	hexSenseDesc = "7205240000000018000a8000000000123456789a02060000c000040003020007"
	// Deferred descriptor-format sense (0x73): MEDIUM ERROR 11/00 at LBA 0xfffff.
	hexSenseDescDeferred = "730311000000000c000a800000000000000fffff"
	// VPD 0x83 shaped like LIO's: NAA-6, T10 vendor ID, then for the iSCSI
	// target port (PIV, association target port): relative target port 1,
	// target port group 0, SCSI name string "iqn...,t,0x0001".
	hexVPD83LIO = "0083007e010300106001405ab9f7d9ce4f8499a8b1f1cb2b020100324c494f2d4f5247206469736b312036653763386134392d663737342d346163382d386234632d376633623263316430653066519400040000000151950004000000005398002069716e2e323032342d30312e746573743a6469736b312c742c30783030303100"
	// VPD 0xb0 with limits set (SBC-3 page, length 0x3c).
	hexVPDB0Limits = "00b0003c" + "01" + "01" + "0008" + "00000800" + "00000080" + "00000000" +
		"00400000" + "00000100" + "00000008" + "80000002" + "0000000000400000" +
		"0000000000000000000000000000000000000000"
	// VPD 0xb0 of an SBC-2 era device: page length 0x0c.
	hexVPDB0Old = "00b0000c" + "0000" + "0001" + "00000400" + "00000040"
	// VPD 0xb2 of a thin LU: LBPU, LBPWS, LBPWS10, LBPRZ=1, thin provisioned.
	hexVPDB2Thin = "00b20004" + "00" + "e4" + "02" + "00"
)

// VPD 0xb1 of an SSD: non-rotating, 2.5" form factor, FUAB.
var hexVPDB1SSD = "00b1003c" + "0001" + "00" + "03" + "02" + strings.Repeat("00", 55)

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}
