package scsi

import (
	"encoding/binary"
	"fmt"
)

// PRInAction is a PERSISTENT RESERVE IN service action.
type PRInAction uint8

// PERSISTENT RESERVE IN service actions.
const (
	PRInReadKeys           PRInAction = 0x00
	PRInReadReservation    PRInAction = 0x01
	PRInReportCapabilities PRInAction = 0x02
	PRInReadFullStatus     PRInAction = 0x03
)

// PROutAction is a PERSISTENT RESERVE OUT service action.
type PROutAction uint8

// PERSISTENT RESERVE OUT service actions.
const (
	PROutRegister                  PROutAction = 0x00
	PROutReserve                   PROutAction = 0x01
	PROutRelease                   PROutAction = 0x02
	PROutClear                     PROutAction = 0x03
	PROutPreempt                   PROutAction = 0x04
	PROutPreemptAndAbort           PROutAction = 0x05
	PROutRegisterAndIgnoreExisting PROutAction = 0x06
	PROutRegisterAndMove           PROutAction = 0x07
	PROutParamLen                              = 24 // basic parameter list length
)

// PRType is a persistent reservation type.
type PRType uint8

// Persistent reservation types.
const (
	PRWriteExclusive                 PRType = 0x1
	PRExclusiveAccess                PRType = 0x3
	PRWriteExclusiveRegistrantsOnly  PRType = 0x5
	PRExclusiveAccessRegistrantsOnly PRType = 0x6
	PRWriteExclusiveAllRegistrants   PRType = 0x7
	PRExclusiveAccessAllRegistrants  PRType = 0x8
)

func (t PRType) String() string {
	switch t {
	case PRWriteExclusive:
		return "Write Exclusive"
	case PRExclusiveAccess:
		return "Exclusive Access"
	case PRWriteExclusiveRegistrantsOnly:
		return "Write Exclusive - Registrants Only"
	case PRExclusiveAccessRegistrantsOnly:
		return "Exclusive Access - Registrants Only"
	case PRWriteExclusiveAllRegistrants:
		return "Write Exclusive - All Registrants"
	case PRExclusiveAccessAllRegistrants:
		return "Exclusive Access - All Registrants"
	}
	return fmt.Sprintf("reservation type 0x%x", uint8(t))
}

// PersistentReserveInCDB appends PERSISTENT RESERVE IN (10 bytes).
func PersistentReserveInCDB(dst []byte, sa PRInAction, allocLen uint16) []byte {
	dst, c := grow(dst, 10)
	c[0] = OpPersistentReserveIn
	c[1] = byte(sa) & 0x1f
	binary.BigEndian.PutUint16(c[7:], allocLen)
	return dst
}

// PersistentReserveOutCDB appends PERSISTENT RESERVE OUT (10 bytes) with
// LU_SCOPE (scope 0). typ matters for RESERVE, RELEASE and PREEMPT.
// paramLen is normally PROutParamLen.
func PersistentReserveOutCDB(dst []byte, sa PROutAction, typ PRType, paramLen uint32) []byte {
	dst, c := grow(dst, 10)
	c[0] = OpPersistentReserveOut
	c[1] = byte(sa) & 0x1f
	c[2] = byte(typ) & 0x0f
	binary.BigEndian.PutUint32(c[5:], paramLen)
	return dst
}

// PROutParams is the basic PERSISTENT RESERVE OUT parameter list.
type PROutParams struct {
	Key              uint64 // RESERVATION KEY: ours (0 when registering anew)
	ServiceActionKey uint64 // new key (REGISTER) or the key to preempt (PREEMPT)
	SpecIPT          bool   // SPEC_I_PT
	AllTgPt          bool   // ALL_TG_PT: register on every target port
	APTPL            bool   // activate persist through power loss
}

// AppendPROutParams appends the 24-byte parameter list.
func AppendPROutParams(dst []byte, p PROutParams) []byte {
	dst, c := grow(dst, PROutParamLen)
	binary.BigEndian.PutUint64(c[0:], p.Key)
	binary.BigEndian.PutUint64(c[8:], p.ServiceActionKey)
	if p.SpecIPT {
		c[20] |= 0x08
	}
	if p.AllTgPt {
		c[20] |= 0x04
	}
	if p.APTPL {
		c[20] |= 0x01
	}
	return dst
}

// PRKeys is the READ KEYS answer.
type PRKeys struct {
	Generation uint32
	Keys       []uint64
}

// ParsePRKeys parses PERSISTENT RESERVE IN / READ KEYS data.
func ParsePRKeys(b []byte) (PRKeys, error) {
	const what = "PERSISTENT RESERVE IN READ KEYS data"
	var r PRKeys
	if len(b) < 8 {
		return r, truncated(what, 8, len(b))
	}
	r.Generation = binary.BigEndian.Uint32(b)
	l := binary.BigEndian.Uint32(b[4:])
	if l%8 != 0 {
		return r, malformed(what, len(b), "additional length %d not a multiple of 8", l)
	}
	if uint64(l) > uint64(len(b)-8) {
		return r, truncated(what, int(min(uint64(l)+8, 1<<31)), len(b))
	}
	r.Keys = make([]uint64, l/8)
	for i := range r.Keys {
		r.Keys[i] = binary.BigEndian.Uint64(b[8+8*i:])
	}
	return r, nil
}

// PRReservation is the READ RESERVATION answer.
type PRReservation struct {
	Generation uint32
	Reserved   bool // a reservation is held; the fields below are valid
	Key        uint64
	Scope      uint8
	Type       PRType
}

// ParsePRReservation parses PERSISTENT RESERVE IN / READ RESERVATION data.
func ParsePRReservation(b []byte) (PRReservation, error) {
	const what = "PERSISTENT RESERVE IN READ RESERVATION data"
	var r PRReservation
	if len(b) < 8 {
		return r, truncated(what, 8, len(b))
	}
	r.Generation = binary.BigEndian.Uint32(b)
	switch l := binary.BigEndian.Uint32(b[4:]); l {
	case 0:
		return r, nil
	case 16:
		if len(b) < 24 {
			return r, truncated(what, 24, len(b))
		}
	default:
		return r, malformed(what, len(b), "additional length %d (want 0 or 16)", l)
	}
	r.Reserved = true
	r.Key = binary.BigEndian.Uint64(b[8:])
	r.Scope = b[21] >> 4
	r.Type = PRType(b[21] & 0x0f)
	return r, nil
}
