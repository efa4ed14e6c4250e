package scsi

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func requireParseErr(t *testing.T, err error, sentinel error, need int) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, sentinel)
	var pe *ParseError
	require.True(t, errors.As(err, &pe), "want *ParseError, got %T", err)
	if need > 0 {
		assert.Equal(t, need, pe.Need)
	}
	assert.NotEmpty(t, pe.Error())
}

func TestParseInquiry(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Inquiry
	}{
		{"tgtd disk LUN 1", hexInquiryDisk, Inquiry{Type: TypeDisk, Version: 5, HiSup: true, ResponseFormat: 2,
			CmdQue: true, Vendor: "IET", Product: "VIRTUAL-DISK", Revision: "0001"}},
		{"tgtd disk, allocation length 64", hexInquiryDisk64, Inquiry{Type: TypeDisk, Version: 5, HiSup: true, ResponseFormat: 2,
			CmdQue: true, Vendor: "IET", Product: "VIRTUAL-DISK", Revision: "0001"}},
		{"tgtd controller LUN 0", hexInquiryController, Inquiry{Type: TypeRAID, Version: 5, HiSup: true, ResponseFormat: 2,
			CmdQue: true, Vendor: "IET", Product: "Controller", Revision: "0001"}},
		{"flags", "7f8006325f" + "f9" + "50" + "02" + "4c494f2d4f524720" + "46494c454f2020202020202020202020" + "342e3000",
			Inquiry{Qualifier: 3, Type: TypeUnknown, Removable: true, Version: 6, NormACA: true, HiSup: true, ResponseFormat: 2,
				SCCS: true, ACC: true, TPGS: 3, ThirdPartyCopy: true, Protect: true, EncServ: true, MultiP: true, CmdQue: true,
				Vendor: "LIO-ORG", Product: "FILEO", Revision: "4.0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseInquiry(unhex(tt.in))
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
	q, err := ParseInquiry(unhex(hexInquiryDisk))
	require.NoError(t, err)
	assert.Equal(t, "SPC-3", q.VersionString())
	assert.True(t, q.Connected())
	absent, err := ParseInquiry(unhex("7f" + hexInquiryDisk[2:]))
	require.NoError(t, err)
	assert.False(t, absent.Connected())
	assert.Equal(t, "disk", q.Type.String())
}

func TestParseInquiryErrors(t *testing.T) {
	b := unhex(hexInquiryDisk)
	for _, n := range []int{0, 1, 4, 5, 35} {
		_, err := ParseInquiry(b[:n])
		requireParseErr(t, err, ErrTruncated, InquiryMinLen)
	}
	short := append([]byte(nil), b...)
	short[4] = 10 // additional length says 15 bytes in all
	_, err := ParseInquiry(short)
	requireParseErr(t, err, ErrMalformed, 0)
}

func TestPeripheralTypeString(t *testing.T) {
	for typ, want := range map[PeripheralType]string{
		TypeDisk: "disk", TypeTape: "tape", TypeRAID: "storage array controller", TypeEnclosure: "enclosure services",
		TypeWellKnownLU: "well known logical unit", TypeUnknown: "unknown or no device type", 0x1b: "peripheral type 0x1b",
	} {
		assert.Equal(t, want, typ.String())
	}
}

func TestParseVPD(t *testing.T) {
	pages, err := ParseVPDSupportedPages(unhex(hexVPD00))
	require.NoError(t, err)
	assert.Equal(t, []uint8{0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2}, pages)

	serial, err := ParseVPDUnitSerial(unhex(hexVPD80))
	require.NoError(t, err)
	assert.Equal(t, "beaf11", serial)

	l, err := VPDPageLength(unhex(hexVPD83At64))
	require.NoError(t, err)
	assert.Equal(t, 76, l)

	_, err = ParseVPDDeviceID(unhex(hexVPD83At64))
	requireParseErr(t, err, ErrTruncated, 76)

	_, err = ParseVPDUnitSerial(unhex(hexVPD00))
	requireParseErr(t, err, ErrMalformed, 0)
}

func TestParseVPDDeviceID(t *testing.T) {
	ds, err := ParseVPDDeviceID(unhex(hexVPD83))
	require.NoError(t, err)
	require.Len(t, ds, 3)
	assert.Equal(t, DesigT10Vendor, ds[0].Type)
	assert.Equal(t, CodeSetASCII, ds[0].CodeSet)
	assert.Equal(t, AssocLU, ds[0].Association)
	assert.False(t, ds[0].PIV)
	assert.Equal(t, "t10.IET     00010001", ds[0].String())
	assert.Equal(t, DesigNAA, ds[1].Type)
	assert.Equal(t, CodeSetBinary, ds[1].CodeSet)
	assert.Equal(t, "naa.3000000100000001", ds[1].String())
	assert.Equal(t, "naa.60000000000000000e00000000010001", ds[2].String())

	ds, err = ParseVPDDeviceID(unhex(hexVPD83LIO))
	require.NoError(t, err)
	require.Len(t, ds, 5)
	type row struct {
		typ   DesignatorType
		cs    CodeSet
		assoc Association
		piv   bool
		proto ProtocolID
		str   string
	}
	want := []row{
		{DesigNAA, CodeSetBinary, AssocLU, false, 0, "naa.6001405ab9f7d9ce4f8499a8b1f1cb2b"},
		{DesigT10Vendor, CodeSetASCII, AssocLU, false, 0, "t10.LIO-ORG disk1 6e7c8a49-f774-4ac8-8b4c-7f3b2c1d0e0f"},
		{DesigRelativePort, CodeSetBinary, AssocTargetPort, true, ProtoISCSI, "relative target port 1"},
		{DesigTargetPortGroup, CodeSetBinary, AssocTargetPort, true, ProtoISCSI, "target port group 0"},
		{DesigSCSINameString, CodeSetUTF8, AssocTargetPort, true, ProtoISCSI, "iqn.2024-01.test:disk1,t,0x0001"},
	}
	for i, w := range want {
		d := ds[i]
		assert.Equal(t, w, row{d.Type, d.CodeSet, d.Association, d.PIV, d.Protocol, d.String()}, "designator %d", i)
	}
	n, ok := ds[2].Number()
	assert.True(t, ok)
	assert.Equal(t, uint16(1), n)
	_, ok = ds[0].Number()
	assert.False(t, ok)
	assert.Equal(t, "iSCSI", ds[2].Protocol.String())
	assert.Equal(t, "target port", ds[2].Association.String())
	assert.Equal(t, "SCSI name string", ds[4].Type.String())

	// A designator running past the page end is malformed.
	bad := unhex(hexVPD83)
	bad[3] = 0x49 // page claims one more byte than the designators fill...
	bad = append(bad, 0)
	_, err = ParseVPDDeviceID(bad)
	requireParseErr(t, err, ErrMalformed, 0)
	bad = unhex(hexVPD83)
	bad[7] = 0xff // first designator length 255
	_, err = ParseVPDDeviceID(bad)
	requireParseErr(t, err, ErrMalformed, 0)
}

func TestParseVPDBlockLimits(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want BlockLimits
	}{
		{"tgtd", hexVPDB0, BlockLimits{PageLength: 0x3c, MaxCompareAndWriteLength: 128}},
		{"limits", hexVPDB0Limits, BlockLimits{PageLength: 0x3c, WSNZ: true, MaxCompareAndWriteLength: 1,
			OptimalTransferGranularity: 8, MaxTransferLength: 2048, OptimalTransferLength: 128,
			MaxUnmapLBACount: 0x400000, MaxUnmapDescriptorCount: 256, OptimalUnmapGranularity: 8,
			UnmapGranularityAlignmentValid: true, UnmapGranularityAlignment: 2, MaxWriteSameLength: 0x400000}},
		{"SBC-2 page", hexVPDB0Old, BlockLimits{PageLength: 12, OptimalTransferGranularity: 1,
			MaxTransferLength: 1024, OptimalTransferLength: 64}},
		{"empty page", "00b00000", BlockLimits{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseVPDBlockLimits(unhex(tt.in))
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
	_, err := ParseVPDBlockLimits(unhex(hexVPDB0)[:40])
	requireParseErr(t, err, ErrTruncated, 64)
}

func TestParseVPDBlockDeviceCharacteristics(t *testing.T) {
	c, err := ParseVPDBlockDeviceCharacteristics(unhex(hexVPDB1))
	require.NoError(t, err)
	assert.Equal(t, BlockDeviceCharacteristics{}, c)
	assert.False(t, c.NonRotating())

	c, err = ParseVPDBlockDeviceCharacteristics(unhex(hexVPDB1SSD))
	require.NoError(t, err)
	assert.Equal(t, BlockDeviceCharacteristics{RotationRate: 1, FormFactor: 3, FUAB: true}, c)
	assert.True(t, c.NonRotating())

	_, err = ParseVPDBlockDeviceCharacteristics(unhex("00b10002" + "0001"))
	requireParseErr(t, err, ErrTruncated, 8)
	_, err = ParseVPDBlockDeviceCharacteristics(unhex(hexVPDB1)[:64]) // cut by allocation length 64
	requireParseErr(t, err, ErrTruncated, 68)
}

func TestParseVPDLogicalBlockProvisioning(t *testing.T) {
	p, err := ParseVPDLogicalBlockProvisioning(unhex(hexVPDB2))
	require.NoError(t, err)
	assert.Equal(t, LogicalBlockProvisioning{}, p)

	p, err = ParseVPDLogicalBlockProvisioning(unhex(hexVPDB2Thin))
	require.NoError(t, err)
	assert.Equal(t, LogicalBlockProvisioning{LBPU: true, LBPWS: true, LBPWS10: true, LBPRZ: 1,
		ProvisioningType: ProvisioningThin}, p)

	_, err = ParseVPDLogicalBlockProvisioning(unhex("00b2000000"))
	requireParseErr(t, err, ErrTruncated, 8)
}

func TestParseReadCapacity(t *testing.T) {
	c, err := ParseReadCapacity16(unhex(hexReadCap16))
	require.NoError(t, err)
	assert.Equal(t, Capacity{LastLBA: 0x1fffff, BlockLength: 512, LogicalPerPhysicalExp: 3}, c)
	assert.Equal(t, uint64(1<<30), c.Bytes())
	assert.Equal(t, uint64(1<<21), c.Blocks())
	assert.Equal(t, uint64(4096), c.PhysicalBlockLength())

	c, err = ParseReadCapacity16(unhex("0000000100000000" + "00001000" + "05" + "21" + "c007"))
	require.NoError(t, err)
	assert.Equal(t, Capacity{LastLBA: 1 << 32, BlockLength: 4096, ProtectionEnabled: true, ProtectionType: 2,
		PIExponent: 2, LogicalPerPhysicalExp: 1, LBPME: true, LBPRZ: true, LowestAlignedLBA: 7}, c)

	c, err = ParseReadCapacity10(unhex(hexReadCap10Disk))
	require.NoError(t, err)
	assert.Equal(t, uint64(64<<20), c.Bytes())
	assert.False(t, c.NeedsReadCapacity16())
	c, err = ParseReadCapacity10(unhex(hexReadCap10Null))
	require.NoError(t, err)
	assert.Equal(t, uint64(1<<40), c.Bytes())
	c, err = ParseReadCapacity10(unhex("ffffffff00000200"))
	require.NoError(t, err)
	assert.True(t, c.NeedsReadCapacity16())

	c = Capacity{LastLBA: ^uint64(0), BlockLength: 512}
	assert.Equal(t, ^uint64(0), c.Bytes(), "saturates")

	_, err = ParseReadCapacity10(unhex("0001ffff0000"))
	requireParseErr(t, err, ErrTruncated, 8)
	_, err = ParseReadCapacity16(unhex(hexReadCap16)[:11])
	requireParseErr(t, err, ErrTruncated, 12)
}

func TestParseReportLUNs(t *testing.T) {
	luns, err := ParseReportLUNs(unhex(hexReportLUNs32))
	require.NoError(t, err)
	assert.Equal(t, []uint64{0, 1, 300}, luns)

	raw, err := ParseReportLUNsRaw(unhex(hexReportLUNs32))
	require.NoError(t, err)
	assert.Equal(t, []uint64{0, 0x0001000000000000, 0x412c000000000000}, raw)

	n, err := ReportLUNsLength(unhex(hexReportLUNs16))
	require.NoError(t, err)
	assert.Equal(t, 32, n)
	_, err = ParseReportLUNs(unhex(hexReportLUNs16))
	requireParseErr(t, err, ErrTruncated, 32)

	_, err = ParseReportLUNs(unhex("0000000900000000" + "000100000000000000"))
	requireParseErr(t, err, ErrMalformed, 0)
	_, err = ParseReportLUNs(unhex("ffffff"))
	requireParseErr(t, err, ErrTruncated, 8)
	_, err = ParseReportLUNs(unhex("fffffff800000000"))
	requireParseErr(t, err, ErrTruncated, 1<<31)
}

func TestParseModeSense6(t *testing.T) {
	m, err := ParseModeSense6(unhex(hexModeSense6))
	require.NoError(t, err)
	assert.Equal(t, 98, m.DataLength)
	assert.False(t, m.WP)
	assert.True(t, m.DPOFUA)
	assert.Empty(t, m.Blocks)
	// tgtd returns a vendor page 0 (empty), disconnect-reconnect, caching,
	// control, control extension (subpage format) and informational
	// exceptions control.
	type id struct{ code, sub uint8 }
	var ids []id
	for _, p := range m.Pages {
		ids = append(ids, id{p.Code, p.Subpage})
	}
	assert.Equal(t, []id{{0, 0}, {2, 0}, {8, 0}, {0x0a, 0}, {0x0a, 1}, {0x1c, 0}}, ids)
	caching, ok := m.Page(ModePageCaching, 0)
	require.True(t, ok)
	assert.Equal(t, unhex("1400ffff0000ffffffff8014000000000000"), caching.Data)
	assert.True(t, caching.Data[0]&0x04 != 0, "WCE set")
	ctlExt, ok := m.Page(ModePageControl, 1)
	require.True(t, ok)
	assert.True(t, ctlExt.SPF)
	assert.Len(t, ctlExt.Data, 28)
	ie, ok := m.Page(ModePageInformationalException, 0)
	require.True(t, ok)
	assert.Len(t, ie.Data, 10)
	dr, ok := m.Page(ModePageDisconnectReconnect, 0)
	require.True(t, ok)
	assert.True(t, dr.Data[0] == 0x80)
	_, ok = m.Page(0x19, 0)
	assert.False(t, ok)

	// Write protected, one short block descriptor, no pages.
	m, err = ParseModeSense6(unhex("0b008008" + "00200000" + "00000200"))
	require.NoError(t, err)
	assert.True(t, m.WP)
	assert.Equal(t, []BlockDescriptor{{Blocks: 0x200000, BlockLength: 512}}, m.Blocks)
	assert.Empty(t, m.Pages)

	_, err = ParseModeSense6(unhex(hexModeSense6)[:60])
	requireParseErr(t, err, ErrTruncated, 98)
	_, err = ParseModeSense6(unhex("07000009" + "0000000000000000"))
	requireParseErr(t, err, ErrMalformed, 0)
	_, err = ParseModeSense6(unhex("0500000008ff0000"[:12]))
	requireParseErr(t, err, ErrMalformed, 0)
}

func TestParseModeSense10(t *testing.T) {
	m, err := ParseModeSense10(unhex("002a" + "00" + "10" + "01" + "00" + "0010" +
		"0000000100000000" + "00000000" + "00001000" + // long LBA descriptor
		"8812" + "1400ffff0000ffffffff8014000000000000"))
	require.NoError(t, err)
	assert.True(t, m.LongLBA)
	assert.True(t, m.DPOFUA)
	assert.Equal(t, []BlockDescriptor{{Blocks: 1 << 32, BlockLength: 4096}}, m.Blocks)
	require.Len(t, m.Pages, 1)
	assert.True(t, m.Pages[0].PS)
	assert.Equal(t, uint8(8), m.Pages[0].Code)

	_, err = ParseModeSense10(unhex("00060000"))
	requireParseErr(t, err, ErrTruncated, 8)
	_, err = ParseModeSense10(unhex("0006" + "0000" + "0000" + "0008"))
	requireParseErr(t, err, ErrMalformed, 0)
	_, err = ParseModeSense10(unhex("0008" + "0000" + "0100" + "0000" + "4a01"))
	requireParseErr(t, err, ErrMalformed, 0) // subpage header cut
}

func TestParsePR(t *testing.T) {
	k, err := ParsePRKeys(unhex("00000007" + "00000010" + "0000000000001234" + "abcdef0123456789"))
	require.NoError(t, err)
	assert.Equal(t, PRKeys{Generation: 7, Keys: []uint64{0x1234, 0xabcdef0123456789}}, k)
	k, err = ParsePRKeys(unhex("0000000100000000"))
	require.NoError(t, err)
	assert.Empty(t, k.Keys)
	_, err = ParsePRKeys(unhex("00000007" + "00000010" + "0000000000001234"))
	requireParseErr(t, err, ErrTruncated, 24)
	_, err = ParsePRKeys(unhex("00000007" + "00000004" + "00000000"))
	requireParseErr(t, err, ErrMalformed, 0)

	r, err := ParsePRReservation(unhex("00000003" + "00000010" + "0000000000001234" + "00000000" + "00" + "05" + "0000"))
	require.NoError(t, err)
	assert.Equal(t, PRReservation{Generation: 3, Reserved: true, Key: 0x1234, Type: PRWriteExclusiveRegistrantsOnly}, r)
	assert.Equal(t, "Write Exclusive - Registrants Only", r.Type.String())
	r, err = ParsePRReservation(unhex("0000000300000000"))
	require.NoError(t, err)
	assert.False(t, r.Reserved)
	_, err = ParsePRReservation(unhex("00000003000000100000"))
	requireParseErr(t, err, ErrTruncated, 24)
	_, err = ParsePRReservation(unhex("0000000300000008"))
	requireParseErr(t, err, ErrMalformed, 0)
	_, err = ParsePRReservation(nil)
	requireParseErr(t, err, ErrTruncated, 8)
}
