package scsi

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCDBs(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		// CDBs seen on the wire in the captures (see vectors_test.go).
		{"TEST UNIT READY (pcap1)", TestUnitReadyCDB(nil), "000000000000"},
		{"INQUIRY 64 (pcap1)", InquiryCDB(nil, 64), "120000004000"},
		{"INQUIRY VPD 0x83 76 (pcap1)", InquiryVPDCDB(nil, VPDDeviceIdentification, 76), "120183004c00"},
		{"INQUIRY VPD 0xb0 64 (pcap1)", InquiryVPDCDB(nil, VPDBlockLimits, 64), "1201b0004000"},
		{"MODE SENSE(6) all pages, DBD (pcap1)", ModeSense6CDB(nil, true, PageCurrent, ModePageAll, 0, 255), "1a083f00ff00"},
		{"READ CAPACITY(16) (pcap1)", ReadCapacity16CDB(nil, DefaultReadCapacity16Len), "9e100000000000000000000000200000"},
		{"READ CAPACITY(10) (pcap2)", ReadCapacity10CDB(nil), "25000000000000000000"},
		{"READ(10) 256 blocks at 0 (pcap1, qemu)", Read10CDB(nil, 0, 256, 0), "28000000000000010000"},
		{"WRITE(10) FUA 384 at 2048 (pcap1, qemu)", Write10CDB(nil, 2048, 384, FUA), "2a080000080000018000"},
		{"READ(10) 384 at 2048 (pcap1, qemu)", Read10CDB(nil, 2048, 384, 0), "28000000080000018000"},
		{"SYNCHRONIZE CACHE(10) all (pcap1, qemu)", SynchronizeCache10CDB(nil, 0, 0, false), "35000000000000000000"},
		{"REPORT LUNS 16 (pcap2)", ReportLUNsCDB(nil, ReportLUNsAll, 16), "a00000000000000000100000"},
		// Built from the SBC-3/SPC-4 layouts.
		{"READ(10) FUA DPO", Read10CDB(nil, 0x01020304, 0x0506, FUA|DPO), "28180102030400050600"},
		{"READ(16)", Read16CDB(nil, 0x0102030405060708, 0x090a0b0c, DPO), "88100102030405060708090a0b0c0000"},
		{"WRITE(16) FUA", Write16CDB(nil, 1<<32, 0x10000, FUA), "8a080000000100000000000100000000"},
		{"SYNCHRONIZE CACHE(10) IMMED", SynchronizeCache10CDB(nil, 8, 16, true), "35020000000800001000"},
		{"SYNCHRONIZE CACHE(16) IMMED", SynchronizeCache16CDB(nil, 8, 16, true), "91020000000000000008000000100000"},
		{"REQUEST SENSE desc", RequestSenseCDB(nil, true, 252), "030100 00fc00"},
		{"MODE SENSE(10) LLBAA changeable caching", ModeSense10CDB(nil, true, false, PageChangeable, ModePageCaching, 0, 512), "5a104800000000020000"},
		{"UNMAP", UnmapCDB(nil, false, 24), "42000000000000001800"},
		{"UNMAP ANCHOR", UnmapCDB(nil, true, 40), "42010000000000002800"},
		{"WRITE SAME(16) UNMAP", WriteSame16CDB(nil, 0x1000, 0x800, WriteSameUnmap), "93080000000000001000000008000000"},
		{"WRITE SAME(16) UNMAP ANCHOR NDOB", WriteSame16CDB(nil, 0, 1, WriteSameUnmap|WriteSameAnchor|WriteSameNDOB), "93190000000000000000000000010000"},
		{"COMPARE AND WRITE", CompareAndWriteCDB(nil, 0x20, 1, FUA), "89080000000000000020000000010000"},
		{"VERIFY(16) BYTCHK 1", Verify16CDB(nil, 0x20, 8, 1, DPO), "8f120000000000000020000000080000"},
		{"START STOP UNIT start", StartStopUnitCDB(nil, false, 0, false, true), "1b0000000100"},
		{"START STOP UNIT immed eject", StartStopUnitCDB(nil, true, 0, true, false), "1b0100000200"},
		{"START STOP UNIT standby", StartStopUnitCDB(nil, false, 3, false, false), "1b0000003000"},
		{"PR IN READ KEYS", PersistentReserveInCDB(nil, PRInReadKeys, 1024), "5e000000000000040000"},
		{"PR IN READ RESERVATION", PersistentReserveInCDB(nil, PRInReadReservation, 24), "5e010000000000001800"},
		{"PR OUT REGISTER", PersistentReserveOutCDB(nil, PROutRegister, 0, PROutParamLen), "5f000000000000001800"},
		{"PR OUT RESERVE WE-RO", PersistentReserveOutCDB(nil, PROutReserve, PRWriteExclusiveRegistrantsOnly, PROutParamLen), "5f010500000000001800"},
		{"PR OUT RELEASE", PersistentReserveOutCDB(nil, PROutRelease, PRExclusiveAccess, PROutParamLen), "5f020300000000001800"},
		{"PR OUT CLEAR", PersistentReserveOutCDB(nil, PROutClear, 0, PROutParamLen), "5f030000000000001800"},
		{"PR OUT PREEMPT", PersistentReserveOutCDB(nil, PROutPreempt, PRWriteExclusive, PROutParamLen), "5f040100000000001800"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := unhex(stripSpaces(tt.want))
			assert.Equal(t, want, tt.got)
		})
	}
}

func stripSpaces(s string) string {
	out := make([]byte, 0, len(s))
	for i := range len(s) {
		if s[i] != ' ' {
			out = append(out, s[i])
		}
	}
	return string(out)
}

func TestCDBAppends(t *testing.T) {
	// Appending keeps what is in dst and does not allocate when there is room.
	buf := make([]byte, 2, 64)
	buf[0], buf[1] = 0xaa, 0xbb
	out := Read10CDB(buf, 1, 2, 0)
	require.Len(t, out, 12)
	assert.Equal(t, []byte{0xaa, 0xbb}, out[:2])
	assert.Equal(t, &buf[:1][0], &out[0], "reused the caller's array")

	// Stale bytes in the spare capacity are cleared.
	dirty := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	out = TestUnitReadyCDB(dirty[:0])
	assert.Equal(t, make([]byte, 6), out)
	out = Read10CDB(dirty[:0], 0, 0, 0)
	assert.Equal(t, unhex("28000000000000000000"), out)
}

func TestUnmapParams(t *testing.T) {
	p := AppendUnmapParams(nil, []UnmapDescriptor{{LBA: 0x1000, Blocks: 0x800}, {LBA: 1 << 33, Blocks: 1}})
	require.Len(t, p, UnmapParamLen(2))
	assert.Equal(t, unhex("0026"+"0020"+"00000000"+
		"0000000000001000"+"00000800"+"00000000"+
		"0000000200000000"+"00000001"+"00000000"), p)
	assert.Equal(t, unhex("000600000000000000"[:16]), AppendUnmapParams(nil, nil))
}

func TestPROutParams(t *testing.T) {
	p := AppendPROutParams(nil, PROutParams{Key: 0x1122334455667788, ServiceActionKey: 0xabcd, AllTgPt: true, APTPL: true, SpecIPT: true})
	assert.Equal(t, unhex("1122334455667788"+"000000000000abcd"+"00000000"+"0d"+"00"+"0000"), p)
	assert.Len(t, AppendPROutParams(nil, PROutParams{}), PROutParamLen)
}
