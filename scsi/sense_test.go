package scsi

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSenseSegment(t *testing.T) {
	tests := []struct {
		name string
		seg  string
		want Sense
		text string
	}{
		{"tgtd unit attention (pcap1)", hexSenseSegUA,
			Sense{ResponseCode: 0x70, Key: SenseUnitAttention, ASC: 0x29},
			"UNIT ATTENTION: power on, reset, or bus device reset occurred (29/00)"},
		{"tgtd LU not supported (pcap2)", hexSenseSegLUNNotSupported,
			Sense{ResponseCode: 0x70, Key: SenseIllegalRequest, ASC: 0x25},
			"ILLEGAL REQUEST: logical unit not supported (25/00)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSenseSegment(unhex(tt.seg))
			require.NoError(t, err)
			assert.Equal(t, tt.want, s)
			assert.Equal(t, tt.text, s.String())
		})
	}
}

func TestParseSense(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Sense
		text string
	}{
		{"fixed, VALID, medium error with LBA",
			"f00003" + "00012345" + "0a" + "00000000" + "1100" + "00" + "000000",
			Sense{ResponseCode: 0x70, Key: SenseMediumError, ASC: 0x11, InfoValid: true, Information: 0x12345},
			"MEDIUM ERROR: unrecovered read error (11/00), information 0x12345"},
		{"fixed deferred, ILI, command specific, FRU, field pointer",
			"71" + "00" + "25" + "00000000" + "0a" + "deadbeef" + "2400" + "07" + "cb" + "0002",
			Sense{ResponseCode: 0x71, Deferred: true, Key: SenseIllegalRequest, ASC: 0x24, ILI: true,
				CommandSpecific: 0xdeadbeef, FRU: 7, SenseKeySpecific: SenseKeySpecific{Valid: true, Raw: [3]byte{0x4b, 0, 2}}},
			"deferred ILLEGAL REQUEST: invalid field in CDB (24/00), CDB byte 2 bit 3"},
		{"fixed, additional length 4: ASC not included",
			"70000200000000" + "04" + "00000000" + "0401",
			Sense{ResponseCode: 0x70, Key: SenseNotReady},
			"NOT READY: no additional sense information (00/00)"},
		{"fixed, cut by the allocation length at 14 bytes",
			"700006000000000a000000002a09",
			Sense{ResponseCode: 0x70, Key: SenseUnitAttention, ASC: 0x2a, ASCQ: 0x09},
			"UNIT ATTENTION: capacity data has changed (2a/09)"},
		{"descriptor with information, SKS and FRU", hexSenseDesc,
			Sense{ResponseCode: 0x72, Descriptor: true, Key: SenseIllegalRequest, ASC: 0x24, InfoValid: true, Information: 0x123456789a,
				SenseKeySpecific: SenseKeySpecific{Valid: true, Raw: [3]byte{0x40, 0, 4}}, FRU: 7},
			"ILLEGAL REQUEST: invalid field in CDB (24/00), information 0x123456789a, CDB byte 4"},
		{"descriptor deferred", hexSenseDescDeferred,
			Sense{ResponseCode: 0x73, Deferred: true, Descriptor: true, Key: SenseMediumError, ASC: 0x11, InfoValid: true, Information: 0xfffff},
			"deferred MEDIUM ERROR: unrecovered read error (11/00), information 0xfffff"},
		{"descriptor, last descriptor cut: kept what is whole",
			"7206290700000010" + "05020020" + "000a8000000000",
			Sense{ResponseCode: 0x72, Descriptor: true, Key: SenseUnitAttention, ASC: 0x29, ASCQ: 0x07, ILI: true},
			"UNIT ATTENTION: I_T nexus loss occurred (29/07)"},
		{"descriptor, stream and command-specific",
			"720000000000001c" + "040200e0" + "010a0000000000000000abcd" + "7702aaaa" + "03",
			Sense{ResponseCode: 0x72, Descriptor: true, FileMark: true, EOM: true, ILI: true, CommandSpecific: 0xabcd},
			"NO SENSE: no additional sense information (00/00)"},
		{"unknown ASC", "72 0e 99 99 00000000",
			Sense{ResponseCode: 0x72, Descriptor: true, Key: SenseMiscompare, ASC: 0x99, ASCQ: 0x99},
			"MISCOMPARE: additional sense code (99/99)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSense(unhex(stripSpaces(tt.in)))
			require.NoError(t, err)
			assert.Equal(t, tt.want, s)
			assert.Equal(t, tt.text, s.String())
		})
	}
}

func TestParseSenseErrors(t *testing.T) {
	_, err := ParseSense(nil)
	requireParseErr(t, err, ErrTruncated, 8)
	_, err = ParseSense(unhex("70000600"))
	requireParseErr(t, err, ErrTruncated, 8)
	_, err = ParseSense(unhex("7f000600000000000000"))
	requireParseErr(t, err, ErrMalformed, 0)
	_, err = ParseSense(unhex("00000000000000000000"))
	requireParseErr(t, err, ErrMalformed, 0)

	_, err = ParseSenseSegment(unhex("00"))
	requireParseErr(t, err, ErrTruncated, 2)
	_, err = ParseSenseSegment(unhex("0000"))
	requireParseErr(t, err, ErrMalformed, 0)
	_, err = ParseSenseSegment(unhex(hexSenseSegUA)[:12])
	requireParseErr(t, err, ErrTruncated, 20)
}

func TestSenseKeySpecific(t *testing.T) {
	s := SenseKeySpecific{Valid: true, Raw: [3]byte{0x4d, 0x01, 0x02}}
	cdb, off, bit, bv := s.FieldPointer()
	assert.True(t, cdb)
	assert.Equal(t, uint16(0x0102), off)
	assert.Equal(t, uint8(5), bit)
	assert.True(t, bv)
	assert.Equal(t, uint16(0x0102), s.Progress())
}

func TestSenseError(t *testing.T) {
	all := []error{ErrRecoveredError, ErrNotReady, ErrMediumError, ErrHardwareError, ErrIllegalRequest,
		ErrUnitAttention, ErrDataProtect, ErrBlankCheck, ErrCopyAborted, ErrAbortedCommand, ErrVolumeOverflow,
		ErrMiscompare}
	keys := []SenseKey{SenseRecoveredError, SenseNotReady, SenseMediumError, SenseHardwareError, SenseIllegalRequest,
		SenseUnitAttention, SenseDataProtect, SenseBlankCheck, SenseCopyAborted, SenseAbortedCommand, SenseVolumeOverflow,
		SenseMiscompare}
	for i, k := range keys {
		var err error = &SenseError{Status: StatusCheckCondition, Sense: Sense{Key: k}}
		err = fmt.Errorf("read at 0: %w", err)
		for j, target := range all {
			assert.Equal(t, i == j, errors.Is(err, target), "key %v target %v", k, target)
		}
		assert.ErrorIs(t, err, ErrCheckCondition)
		assert.NotErrorIs(t, err, ErrBusy)
		var se *SenseError
		require.ErrorAs(t, err, &se)
		assert.Equal(t, k, se.Key)
	}
	assert.NotErrorIs(t, &SenseError{Status: StatusCheckCondition, Sense: Sense{Key: SenseNoSense}}, ErrUnitAttention)

	err := ResponseError(StatusCheckCondition, unhex(hexSenseSegUA))
	require.ErrorIs(t, err, ErrUnitAttention)
	assert.Equal(t, "scsi: CHECK CONDITION: UNIT ATTENTION: power on, reset, or bus device reset occurred (29/00)", err.Error())
	var se *SenseError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, uint8(0x29), se.ASC)
	assert.Equal(t, uint8(0x00), se.ASCQ)
	assert.False(t, se.InfoValid)

	err = ResponseError(StatusCheckCondition, unhex("7203110000000018000a8000000000123456789a02060000c0000400030200070000"[:4]))
	require.Error(t, err)
	var ste *StatusError
	require.ErrorAs(t, err, &ste)
	assert.ErrorIs(t, err, ErrCheckCondition)
	assert.ErrorIs(t, err, ErrTruncated)
	assert.Contains(t, err.Error(), "sense data unusable")
}

func TestStatus(t *testing.T) {
	tests := []struct {
		s        Status
		text     string
		sentinel error
	}{
		{StatusGood, "GOOD", nil},
		{StatusCheckCondition, "CHECK CONDITION", ErrCheckCondition},
		{StatusConditionMet, "CONDITION MET", nil},
		{StatusBusy, "BUSY", ErrBusy},
		{StatusReservationConflict, "RESERVATION CONFLICT", ErrReservationConflict},
		{StatusTaskSetFull, "TASK SET FULL", ErrTaskSetFull},
		{StatusACAActive, "ACA ACTIVE", ErrACAActive},
		{StatusTaskAborted, "TASK ABORTED", ErrTaskAborted},
		{Status(0x7e), "status 0x7e", nil},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.text, tt.s.String())
		err := ResponseError(tt.s, nil)
		if tt.sentinel == nil && (tt.s == StatusGood || tt.s == StatusConditionMet) {
			assert.NoError(t, err)
			continue
		}
		require.Error(t, err, tt.text)
		var se *StatusError
		require.ErrorAs(t, err, &se)
		assert.Equal(t, tt.s, se.Status)
		assert.Equal(t, "scsi: status "+tt.text, err.Error())
		if tt.sentinel != nil {
			assert.ErrorIs(t, err, tt.sentinel)
		}
		assert.NotErrorIs(t, err, ErrUnitAttention)
	}
}

func TestSenseKeyStrings(t *testing.T) {
	for k := SenseKey(0); k < 16; k++ {
		assert.NotEmpty(t, k.String())
	}
	assert.Equal(t, "sense key 0xc", SenseKey(0xc).String())
	assert.Equal(t, "DATA PROTECT", SenseDataProtect.String())
}

func TestASCText(t *testing.T) {
	tests := []struct {
		asc, ascq uint8
		want      string
	}{
		{0x04, 0x01, "logical unit is in process of becoming ready"},
		{0x04, 0x0a, "logical unit not accessible, asymmetric access state transition"},
		{0x29, 0x07, "I_T nexus loss occurred"},
		{0x2a, 0x09, "capacity data has changed"},
		{0x11, 0x00, "unrecovered read error"},
		{0x20, 0x00, "invalid command operation code"},
		{0x21, 0x00, "logical block address out of range"},
		{0x24, 0x00, "invalid field in CDB"},
		{0x26, 0x00, "invalid field in parameter list"},
		{0x27, 0x00, "write protected"},
		{0x27, 0x07, "space allocation failed write protect"},
		{0x38, 0x07, "thin provisioning soft threshold reached"},
		{0x1d, 0x00, "miscompare during verify operation"},
		{0x3f, 0x0e, "reported LUNs data has changed"},
		{0x7f, 0x7f, ""},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, ASCText(tt.asc, tt.ascq))
	}
	// The table covers at least the ~60 common codes asked for.
	n := 0
	for c := range 1 << 16 {
		if ASCText(uint8(c>>8), uint8(c)) != "" {
			n++
		}
	}
	assert.GreaterOrEqual(t, n, 100)
}
