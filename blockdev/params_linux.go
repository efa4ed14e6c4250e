package blockdev

import (
	"fmt"
	"strconv"
	"time"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/internal/iscsinl"
)

// paramValue is one SET_PARAM. Optional ones may be refused by a kernel
// (ENOSYS/EINVAL on older or other transports) without failing the attach.
type paramValue struct {
	Param    iscsinl.Param
	Value    string
	Optional bool
}

// sessionConfig is what the non-negotiated parameters are built from.
type sessionConfig struct {
	InitiatorName string
	TargetName    string
	Addr          string // IP literal, as the kernel shows it in sysfs
	Port          int
	Iface         string
	ISID          [6]byte
	User, UserIn  string // CHAP names (not secrets)
	Timeouts      Timeouts
}

// kbool is the kernel's boolean form.
func kbool(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func secs(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}

// isidFor builds the ISID as iscsid does: the OUI-format prefix 00 02 3D
// and the kernel session id in the low three bytes. It is stable for the
// life of the kernel session, so a reconnect reinstates the same I_T nexus.
func isidFor(sid uint32) [6]byte {
	return [6]byte{0x00, 0x02, 0x3d, byte(sid >> 16), byte(sid >> 8), byte(sid)}
}

// sessionParams are the SET_PARAMs sent after BIND_CONN and before login
// (iscsid's iscsi_session_set_params). CHAP passwords are deliberately
// absent: the kernel only stores them to show them in sysfs.
func sessionParams(c sessionConfig) []paramValue {
	t := c.Timeouts
	ps := []paramValue{
		{Param: iscsinl.ParamInitiatorName, Value: c.InitiatorName},
		{Param: iscsinl.ParamTargetName, Value: c.TargetName},
		{Param: iscsinl.ParamPersistentAddress, Value: c.Addr},
		{Param: iscsinl.ParamPersistentPort, Value: strconv.Itoa(c.Port)},
		{Param: iscsinl.ParamSessRecoveryTmo, Value: secs(t.Recovery)},
		{Param: iscsinl.ParamIfaceName, Value: normIface(c.Iface), Optional: true},
		{Param: iscsinl.ParamISID, Value: fmt.Sprintf("%x", c.ISID[:]), Optional: true},
		{Param: iscsinl.ParamFastAbort, Value: "1", Optional: true},
		{Param: iscsinl.ParamAbortTmo, Value: secs(t.Abort), Optional: true},
		{Param: iscsinl.ParamLUResetTmo, Value: secs(t.LUReset), Optional: true},
		{Param: iscsinl.ParamTgtResetTmo, Value: secs(t.TgtReset), Optional: true},
		{Param: iscsinl.ParamPingTmo, Value: secs(t.NOPTimeout), Optional: true},
		{Param: iscsinl.ParamRecvTmo, Value: secs(t.NOPInterval), Optional: true},
	}
	if c.User != "" {
		ps = append(ps, paramValue{Param: iscsinl.ParamUsername, Value: c.User, Optional: true})
	}
	if c.UserIn != "" {
		ps = append(ps, paramValue{Param: iscsinl.ParamUsernameIn, Value: c.UserIn, Optional: true})
	}
	return ps
}

// negotiatedParams are the SET_PARAMs sent after login and before
// START_CONN (iscsid's iscsi_session_set_neg_params): the outcome of the
// negotiation, markers off, and ExpStatSN = StatSN of the last Login
// Response + 1.
func negotiatedParams(n iscsi.Negotiated, statSN uint32) []paramValue {
	u := func(v uint32) string { return strconv.FormatUint(uint64(v), 10) }
	ps := []paramValue{
		{Param: iscsinl.ParamMaxRecvDLength, Value: u(n.MaxRecvDataSegmentLength)},
		{Param: iscsinl.ParamMaxXmitDLength, Value: u(n.MaxXmitDataSegmentLength)},
		{Param: iscsinl.ParamHdrDgstEn, Value: kbool(n.HeaderDigest)},
		{Param: iscsinl.ParamDataDgstEn, Value: kbool(n.DataDigest)},
		{Param: iscsinl.ParamInitialR2TEn, Value: kbool(n.InitialR2T)},
		{Param: iscsinl.ParamMaxR2T, Value: u(n.MaxOutstandingR2T)},
		{Param: iscsinl.ParamImmDataEn, Value: kbool(n.ImmediateData)},
		{Param: iscsinl.ParamFirstBurst, Value: u(n.FirstBurstLength)},
		{Param: iscsinl.ParamMaxBurst, Value: u(n.MaxBurstLength)},
		{Param: iscsinl.ParamPDUInOrderEn, Value: kbool(n.DataPDUInOrder)},
		{Param: iscsinl.ParamDataSeqInOrderEn, Value: kbool(n.DataSequenceInOrder)},
		{Param: iscsinl.ParamERL, Value: u(n.ErrorRecoveryLevel)},
		{Param: iscsinl.ParamIFMarkerEn, Value: "0"},
		{Param: iscsinl.ParamOFMarkerEn, Value: "0"},
		{Param: iscsinl.ParamExpStatSN, Value: u(statSN + 1)},
		{Param: iscsinl.ParamDefTime2Wait, Value: u(n.DefaultTime2Wait), Optional: true},
		{Param: iscsinl.ParamDefTime2Retain, Value: u(n.DefaultTime2Retain), Optional: true},
	}
	if n.HasTargetPortalGroupTag {
		ps = append(ps, paramValue{Param: iscsinl.ParamTPGT, Value: u(uint32(n.TargetPortalGroupTag))})
	}
	if n.TargetAlias != "" {
		ps = append(ps, paramValue{Param: iscsinl.ParamTargetAlias, Value: n.TargetAlias, Optional: true})
	}
	return ps
}
