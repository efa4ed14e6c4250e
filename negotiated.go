package iscsi

// Negotiated holds the outcome of a login: every operational value in force
// for the session and connection (RFC 7143 §13). initiator.Session's
// Negotiated method returns it; the kernel binding hands the same values to
// the kernel.
type Negotiated struct {
	SessionType   string        // "Normal" or "Discovery"
	AuthMethod    string        // "CHAP" or "None"
	CHAPAlgorithm CHAPAlgorithm // 0 unless AuthMethod is CHAP

	HeaderDigest, DataDigest bool // CRC32C in force
	// MaxRecvDataSegmentLength is ours (what we declared): the largest data
	// segment the target may send us.
	MaxRecvDataSegmentLength uint32
	// MaxXmitDataSegmentLength is the target's declared
	// MaxRecvDataSegmentLength, or 8192 when it declared none (tgtd): the
	// largest data segment we may send.
	MaxXmitDataSegmentLength uint32
	MaxBurstLength           uint32
	FirstBurstLength         uint32
	DefaultTime2Wait         uint32 // seconds
	DefaultTime2Retain       uint32 // seconds
	MaxOutstandingR2T        uint32
	MaxConnections           uint32
	ErrorRecoveryLevel       uint32
	InitialR2T               bool
	ImmediateData            bool
	DataPDUInOrder           bool
	DataSequenceInOrder      bool
	IFMarker, OFMarker       bool   // always false: markers are never enabled
	TaskReporting            string // "RFC3720" unless the target proposed and we accepted otherwise (never)

	TargetAlias             string
	TargetPortalGroupTag    uint16
	HasTargetPortalGroupTag bool
}
