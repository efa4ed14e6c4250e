package blockdev

// ConnStats are the kernel's counters of one iSCSI connection
// (ISCSI_UEVENT_GET_STATS, struct iscsi_stats), as iscsiadm -s shows them.
type ConnStats struct {
	TxDataOctets, RxDataOctets uint64
	// PDUs sent.
	NOPOut, SCSICmd, TMFCmd, Login, Text, DataOut, Logout, SNACK uint32
	// PDUs received.
	NOPIn, SCSIRsp, TMFRsp, TextRsp, DataIn, LogoutRsp, R2T, Async, Reject uint32
	// Errors: data digest mismatches and command timeouts.
	DigestErr, TimeoutErr uint32
}
