//go:build linux

package iscsinl

import "strconv"

// Netlink facts for NETLINK_ISCSI (include/scsi/iscsi_if.h, kept in sync with
// open-iscsi's include/iscsi_if.h).
const (
	// GroupISCSID is ISCSI_NL_GRP_ISCSID, the multicast group on which the
	// kernel publishes asynchronous events (RECV_PDU, CONN_ERROR, ...).
	GroupISCSID = 1
	// GroupUIP is ISCSI_NL_GRP_UIP (offload path requests; not used here).
	GroupUIP = 2

	// UEventSize is sizeof(struct iscsi_uevent) (8-byte aligned).
	UEventSize = 56
	// NLMsgHdrLen is sizeof(struct nlmsghdr).
	NLMsgHdrLen = 16
	// NLMsgAlignTo is NLMSG_ALIGNTO.
	NLMsgAlignTo = 4

	// Offsets inside struct iscsi_uevent.
	offType            = 0
	offIfError         = 4
	offTransportHandle = 8
	offU               = 16 // union u (requests), 24 bytes
	offR               = 40 // union r (replies and events), 16 bytes
	sizeU              = 24
	sizeR              = 16

	// BHSLen is the length of an iSCSI Basic Header Segment.
	BHSLen = 48
)

// nlmAlign rounds n up to NLMSG_ALIGNTO.
func nlmAlign(n int) int { return (n + NLMsgAlignTo - 1) &^ (NLMsgAlignTo - 1) }

// Netlink core control message types (linux/netlink.h).
const (
	nlmsgNoop    = 0x1
	nlmsgError   = 0x2
	nlmsgDone    = 0x3
	nlmsgOverrun = 0x4
)

// MsgType is enum iscsi_uevent_e: the type of an iscsi_uevent.
type MsgType uint32

// UEventBase and KEventBase are the bases of the down (user to kernel) and up
// (kernel to user) message numbers.
const (
	UEventBase MsgType = 10
	KEventBase MsgType = 100
)

// Requests (user to kernel).
const (
	UEventUnknown                       MsgType = 0
	UEventCreateSession                 MsgType = UEventBase + 1
	UEventDestroySession                MsgType = UEventBase + 2
	UEventCreateConn                    MsgType = UEventBase + 3
	UEventDestroyConn                   MsgType = UEventBase + 4
	UEventBindConn                      MsgType = UEventBase + 5
	UEventSetParam                      MsgType = UEventBase + 6
	UEventStartConn                     MsgType = UEventBase + 7
	UEventStopConn                      MsgType = UEventBase + 8
	UEventSendPDU                       MsgType = UEventBase + 9
	UEventGetStats                      MsgType = UEventBase + 10
	UEventGetParam                      MsgType = UEventBase + 11
	UEventTransportEPConnect            MsgType = UEventBase + 12
	UEventTransportEPPoll               MsgType = UEventBase + 13
	UEventTransportEPDisconnect         MsgType = UEventBase + 14
	UEventTgtDscvr                      MsgType = UEventBase + 15
	UEventSetHostParam                  MsgType = UEventBase + 16
	UEventUnbindSession                 MsgType = UEventBase + 17
	UEventCreateBoundSession            MsgType = UEventBase + 18
	UEventTransportEPConnectThroughHost MsgType = UEventBase + 19
	UEventPathUpdate                    MsgType = UEventBase + 20
	UEventSetIfaceParams                MsgType = UEventBase + 21
	UEventPing                          MsgType = UEventBase + 22
	UEventGetCHAP                       MsgType = UEventBase + 23
	UEventDeleteCHAP                    MsgType = UEventBase + 24
	UEventSetFlashnodeParams            MsgType = UEventBase + 25
	UEventNewFlashnode                  MsgType = UEventBase + 26
	UEventDelFlashnode                  MsgType = UEventBase + 27
	UEventLoginFlashnode                MsgType = UEventBase + 28
	UEventLogoutFlashnode               MsgType = UEventBase + 29
	UEventLogoutFlashnodeSID            MsgType = UEventBase + 30
	UEventSetCHAP                       MsgType = UEventBase + 31
	UEventGetHostStats                  MsgType = UEventBase + 32
	UEventDestroySessionAsync           MsgType = UEventBase + 33
)

// Events (kernel to user).
const (
	KEventRecvPDU        MsgType = KEventBase + 1
	KEventConnError      MsgType = KEventBase + 2
	KEventIfError        MsgType = KEventBase + 3
	KEventDestroySession MsgType = KEventBase + 4
	KEventUnbindSession  MsgType = KEventBase + 5
	KEventCreateSession  MsgType = KEventBase + 6
	KEventPathReq        MsgType = KEventBase + 7
	KEventIfDown         MsgType = KEventBase + 8
	KEventConnLoginState MsgType = KEventBase + 9
	KEventHostEvent      MsgType = KEventBase + 10
	KEventPingComp       MsgType = KEventBase + 11
)

var msgTypeNames = map[MsgType]string{
	UEventUnknown:                       "UNKNOWN",
	UEventCreateSession:                 "CREATE_SESSION",
	UEventDestroySession:                "DESTROY_SESSION",
	UEventCreateConn:                    "CREATE_CONN",
	UEventDestroyConn:                   "DESTROY_CONN",
	UEventBindConn:                      "BIND_CONN",
	UEventSetParam:                      "SET_PARAM",
	UEventStartConn:                     "START_CONN",
	UEventStopConn:                      "STOP_CONN",
	UEventSendPDU:                       "SEND_PDU",
	UEventGetStats:                      "GET_STATS",
	UEventGetParam:                      "GET_PARAM",
	UEventTransportEPConnect:            "TRANSPORT_EP_CONNECT",
	UEventTransportEPPoll:               "TRANSPORT_EP_POLL",
	UEventTransportEPDisconnect:         "TRANSPORT_EP_DISCONNECT",
	UEventTgtDscvr:                      "TGT_DSCVR",
	UEventSetHostParam:                  "SET_HOST_PARAM",
	UEventUnbindSession:                 "UNBIND_SESSION",
	UEventCreateBoundSession:            "CREATE_BOUND_SESSION",
	UEventTransportEPConnectThroughHost: "TRANSPORT_EP_CONNECT_THROUGH_HOST",
	UEventPathUpdate:                    "PATH_UPDATE",
	UEventSetIfaceParams:                "SET_IFACE_PARAMS",
	UEventPing:                          "PING",
	UEventGetCHAP:                       "GET_CHAP",
	UEventDeleteCHAP:                    "DELETE_CHAP",
	UEventSetFlashnodeParams:            "SET_FLASHNODE_PARAMS",
	UEventNewFlashnode:                  "NEW_FLASHNODE",
	UEventDelFlashnode:                  "DEL_FLASHNODE",
	UEventLoginFlashnode:                "LOGIN_FLASHNODE",
	UEventLogoutFlashnode:               "LOGOUT_FLASHNODE",
	UEventLogoutFlashnodeSID:            "LOGOUT_FLASHNODE_SID",
	UEventSetCHAP:                       "SET_CHAP",
	UEventGetHostStats:                  "GET_HOST_STATS",
	UEventDestroySessionAsync:           "DESTROY_SESSION_ASYNC",
	KEventRecvPDU:                       "KEVENT_RECV_PDU",
	KEventConnError:                     "KEVENT_CONN_ERROR",
	KEventIfError:                       "KEVENT_IF_ERROR",
	KEventDestroySession:                "KEVENT_DESTROY_SESSION",
	KEventUnbindSession:                 "KEVENT_UNBIND_SESSION",
	KEventCreateSession:                 "KEVENT_CREATE_SESSION",
	KEventPathReq:                       "KEVENT_PATH_REQ",
	KEventIfDown:                        "KEVENT_IF_DOWN",
	KEventConnLoginState:                "KEVENT_CONN_LOGIN_STATE",
	KEventHostEvent:                     "KEVENT_HOST_EVENT",
	KEventPingComp:                      "KEVENT_PING_COMP",
}

func (t MsgType) String() string {
	if s, ok := msgTypeNames[t]; ok {
		return s
	}
	return "MsgType(" + strconv.FormatUint(uint64(t), 10) + ")"
}

// isRequest reports whether t is a down (user to kernel) message number.
func (t MsgType) isRequest() bool { return t > UEventBase && t < KEventBase }

// Param is enum iscsi_param, the parameter of a SET_PARAM request.
type Param uint32

// enum iscsi_param values. Values are sent as NUL-terminated ASCII strings;
// booleans are "0"/"1", numbers decimal.
const (
	ParamMaxRecvDLength Param = iota
	ParamMaxXmitDLength
	ParamHdrDgstEn
	ParamDataDgstEn
	ParamInitialR2TEn
	ParamMaxR2T
	ParamImmDataEn
	ParamFirstBurst
	ParamMaxBurst
	ParamPDUInOrderEn
	ParamDataSeqInOrderEn
	ParamERL
	ParamIFMarkerEn
	ParamOFMarkerEn
	ParamExpStatSN
	ParamTargetName
	ParamTPGT
	ParamPersistentAddress
	ParamPersistentPort
	ParamSessRecoveryTmo
	ParamConnPort
	ParamConnAddress
	ParamUsername
	ParamUsernameIn
	ParamPassword
	ParamPasswordIn
	ParamFastAbort
	ParamAbortTmo
	ParamLUResetTmo
	ParamHostResetTmo
	ParamPingTmo
	ParamRecvTmo
	ParamIfaceName
	ParamISID
	ParamInitiatorName
	ParamTgtResetTmo
	ParamTargetAlias
	ParamCHAPInIdx
	ParamCHAPOutIdx
	ParamBootRoot
	ParamBootNIC
	ParamBootTarget
	ParamAutoSndTgtDisable
	ParamDiscoverySess
	ParamPortalType
	ParamCHAPAuthEn
	ParamDiscoveryLogoutEn
	ParamBidiCHAPEn
	ParamDiscoveryAuthOptional
	ParamDefTime2Wait
	ParamDefTime2Retain
	ParamMaxSegmentSize
	ParamStatSN
	ParamKeepaliveTmo
	ParamLocalPort
	ParamTSID
	ParamDefTaskmgmtTmo
	ParamTCPTimestampStat
	ParamTCPWSFDisable
	ParamTCPNagleDisable
	ParamTCPTimerScale
	ParamTCPTimestampEn
	ParamTCPXmitWSF
	ParamTCPRecvWSF
	ParamIPFragmentDisable
	ParamIPv4TOS
	ParamIPv6TC
	ParamIPv6FlowLabel
	ParamIsFWAssignedIPv6
	ParamDiscoveryParentIdx
	ParamDiscoveryParentType
	ParamLocalIPAddr
	// ParamMax is ISCSI_PARAM_MAX (72): one past the last parameter.
	ParamMax
)

var paramNames = [...]string{
	"MAX_RECV_DLENGTH", "MAX_XMIT_DLENGTH", "HDRDGST_EN", "DATADGST_EN",
	"INITIAL_R2T_EN", "MAX_R2T", "IMM_DATA_EN", "FIRST_BURST", "MAX_BURST",
	"PDU_INORDER_EN", "DATASEQ_INORDER_EN", "ERL", "IFMARKER_EN", "OFMARKER_EN",
	"EXP_STATSN", "TARGET_NAME", "TPGT", "PERSISTENT_ADDRESS", "PERSISTENT_PORT",
	"SESS_RECOVERY_TMO", "CONN_PORT", "CONN_ADDRESS", "USERNAME", "USERNAME_IN",
	"PASSWORD", "PASSWORD_IN", "FAST_ABORT", "ABORT_TMO", "LU_RESET_TMO",
	"HOST_RESET_TMO", "PING_TMO", "RECV_TMO", "IFACE_NAME", "ISID",
	"INITIATOR_NAME", "TGT_RESET_TMO", "TARGET_ALIAS", "CHAP_IN_IDX",
	"CHAP_OUT_IDX", "BOOT_ROOT", "BOOT_NIC", "BOOT_TARGET",
	"AUTO_SND_TGT_DISABLE", "DISCOVERY_SESS", "PORTAL_TYPE", "CHAP_AUTH_EN",
	"DISCOVERY_LOGOUT_EN", "BIDI_CHAP_EN", "DISCOVERY_AUTH_OPTIONAL",
	"DEF_TIME2WAIT", "DEF_TIME2RETAIN", "MAX_SEGMENT_SIZE", "STATSN",
	"KEEPALIVE_TMO", "LOCAL_PORT", "TSID", "DEF_TASKMGMT_TMO",
	"TCP_TIMESTAMP_STAT", "TCP_WSF_DISABLE", "TCP_NAGLE_DISABLE",
	"TCP_TIMER_SCALE", "TCP_TIMESTAMP_EN", "TCP_XMIT_WSF", "TCP_RECV_WSF",
	"IP_FRAGMENT_DISABLE", "IPV4_TOS", "IPV6_TC", "IPV6_FLOW_LABEL",
	"IS_FW_ASSIGNED_IPV6", "DISCOVERY_PARENT_IDX", "DISCOVERY_PARENT_TYPE",
	"LOCAL_IPADDR",
}

func (p Param) String() string {
	if int(p) < len(paramNames) {
		return "ISCSI_PARAM_" + paramNames[p]
	}
	return "Param(" + strconv.FormatUint(uint64(p), 10) + ")"
}

// secret reports whether values of p must never be logged.
func (p Param) secret() bool {
	return p == ParamPassword || p == ParamPasswordIn
}

// HostParam is enum iscsi_host_param, the parameter of SET_HOST_PARAM.
type HostParam uint32

// enum iscsi_host_param values.
const (
	HostParamHWAddress HostParam = iota
	HostParamInitiatorName
	HostParamNetdevName
	HostParamIPAddress
	HostParamPortState
	HostParamPortSpeed
	HostParamMax
)

var hostParamNames = [...]string{"HWADDRESS", "INITIATOR_NAME", "NETDEV_NAME", "IPADDRESS", "PORT_STATE", "PORT_SPEED"}

func (p HostParam) String() string {
	if int(p) < len(hostParamNames) {
		return "ISCSI_HOST_PARAM_" + hostParamNames[p]
	}
	return "HostParam(" + strconv.FormatUint(uint64(p), 10) + ")"
}

// StopFlag is the reason of a STOP_CONN request.
type StopFlag uint32

// STOP_CONN flags.
const (
	StopConnTerm    StopFlag = 1 // STOP_CONN_TERM: connection is going away
	StopConnSuspend StopFlag = 2 // STOP_CONN_SUSPEND
	StopConnRecover StopFlag = 3 // STOP_CONN_RECOVER: keep the session, block I/O, reconnect
)

func (f StopFlag) String() string {
	switch f {
	case StopConnTerm:
		return "STOP_CONN_TERM"
	case StopConnSuspend:
		return "STOP_CONN_SUSPEND"
	case StopConnRecover:
		return "STOP_CONN_RECOVER"
	}
	return "StopFlag(" + strconv.FormatUint(uint64(f), 10) + ")"
}

// ErrCode is enum iscsi_err, carried by CONN_ERROR events.
type ErrCode uint32

// ErrBase is ISCSI_ERR_BASE.
const ErrBase ErrCode = 1000

// enum iscsi_err values.
const (
	ErrOK               ErrCode = 0
	ErrDataSN           ErrCode = ErrBase + 1
	ErrDataOffset       ErrCode = ErrBase + 2
	ErrMaxCmdSN         ErrCode = ErrBase + 3
	ErrExpCmdSN         ErrCode = ErrBase + 4
	ErrBadOpcode        ErrCode = ErrBase + 5
	ErrDataLen          ErrCode = ErrBase + 6
	ErrAHSLen           ErrCode = ErrBase + 7
	ErrProto            ErrCode = ErrBase + 8
	ErrLUN              ErrCode = ErrBase + 9
	ErrBadITT           ErrCode = ErrBase + 10
	ErrConnFailed       ErrCode = ErrBase + 11
	ErrR2TSN            ErrCode = ErrBase + 12
	ErrSessionFailed    ErrCode = ErrBase + 13
	ErrHdrDgst          ErrCode = ErrBase + 14
	ErrDataDgst         ErrCode = ErrBase + 15
	ErrParamNotFound    ErrCode = ErrBase + 16
	ErrNoSCSICmd        ErrCode = ErrBase + 17
	ErrInvalidHost      ErrCode = ErrBase + 18
	ErrXmitFailed       ErrCode = ErrBase + 19
	ErrTCPConnClose     ErrCode = ErrBase + 20
	ErrSCSIEHSessionRst ErrCode = ErrBase + 21
	ErrNOPTimedOut      ErrCode = ErrBase + 22
)

var errCodeNames = [...]string{
	"DATASN", "DATA_OFFSET", "MAX_CMDSN", "EXP_CMDSN", "BAD_OPCODE", "DATALEN",
	"AHSLEN", "PROTO", "LUN", "BAD_ITT", "CONN_FAILED", "R2TSN", "SESSION_FAILED",
	"HDR_DGST", "DATA_DGST", "PARAM_NOT_FOUND", "NO_SCSI_CMD", "INVALID_HOST",
	"XMIT_FAILED", "TCP_CONN_CLOSE", "SCSI_EH_SESSION_RST", "NOP_TIMEDOUT",
}

func (e ErrCode) String() string {
	if e == ErrOK {
		return "ISCSI_OK"
	}
	if e > ErrBase && int(e-ErrBase) <= len(errCodeNames) {
		return "ISCSI_ERR_" + errCodeNames[e-ErrBase-1]
	}
	return "ErrCode(" + strconv.FormatUint(uint64(e), 10) + ")"
}

// ConnState is enum iscsi_conn_state, carried by CONN_LOGIN_STATE events
// (offload drivers only).
type ConnState uint32

// enum iscsi_conn_state values.
const (
	ConnStateFree ConnState = iota
	ConnStateXptWait
	ConnStateInLogin
	ConnStateLoggedIn
	ConnStateInLogout
	ConnStateLogoutRequested
	ConnStateCleanupWait
)

var connStateNames = [...]string{"FREE", "XPT_WAIT", "IN_LOGIN", "LOGGED_IN", "IN_LOGOUT", "LOGOUT_REQUESTED", "CLEANUP_WAIT"}

func (s ConnState) String() string {
	if int(s) < len(connStateNames) {
		return "ISCSI_CONN_STATE_" + connStateNames[s]
	}
	return "ConnState(" + strconv.FormatUint(uint64(s), 10) + ")"
}
