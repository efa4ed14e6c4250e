// Package iscsitest provides an in-process iSCSI target for tests and
// demos, in the spirit of net/http/httptest.
//
// A Server listens on 127.0.0.1 and serves targets with memory-backed LUNs:
//
//	srv, err := iscsitest.NewServer(iscsitest.Config{Targets: []iscsitest.Target{{
//		Name: "iqn.2024-01.test:disk",
//		LUNs: []iscsitest.LUN{{Number: 1, Blocks: 2048, BlockSize: 512}},
//	}}})
//	defer srv.Close()
//	// dial srv.Addr() with any initiator
//
// NewTestServer does the same and registers Close with t.Cleanup.
//
// # What it implements
//
// Login: security stage with AuthMethod None or CHAP (one-way or mutual;
// MD5, SHA-1, SHA-256, SHA3-256), operational negotiation following RFC
// 7143 (InitialR2T OR, ImmediateData AND, burst lengths minimum, digests
// from the target's accepted list), TargetPortalGroupTag and TargetAlias
// in the first response, TSIH assignment, session reinstatement (a login
// with the ISID of a live session and TSIH 0 drops the old connection),
// status 0x0201 (authentication), 0x0202 (ACL), 0x0203 (unknown target),
// and, like tgtd, 0x0200 for a Login Request without the Immediate bit
// (Config.AcceptNonImmediateLogin accepts it like LIO). The answers are
// set in Config.Negotiation; by default they are tgtd's, including not
// declaring MaxRecvDataSegmentLength. Discovery sessions answer
// SendTargets=All with TargetName and TargetAddress=127.0.0.1:port,tpgt
// for every target whose ACL admits the initiator.
//
// Full feature phase: READ/WRITE (6, 10, 16) with immediate data,
// unsolicited Data-Out (InitialR2T=No) and R2T sequences honouring
// MaxBurstLength and MaxOutstandingR2T; Data-Out is validated (DataSN,
// BufferOffset, TTT, F bit, burst limits) and every violation recorded;
// Data-In is split at the initiator's MaxRecvDataSegmentLength with the
// status in the last PDU (S bit) and residuals. INQUIRY (standard, VPD
// 0x00, 0x80, 0x83, 0xB0 with LUN.MaxTransferBlocks, 0xB1, 0xB2), READ
// CAPACITY (10/16), REPORT LUNS, TEST UNIT READY, REQUEST SENSE,
// SYNCHRONIZE CACHE (10/16), UNMAP and WRITE SAME(16) (zeroing), MODE
// SENSE (6/10), START STOP UNIT. Unknown opcodes get CHECK CONDITION
// ILLEGAL REQUEST 20/00, LBAs out of range 21/00. Every new session gets
// a UNIT ATTENTION 29/00 on its first command to each LUN (INQUIRY, REPORT
// LUNS and REQUEST SENSE excepted), as tgtd does; Config.NoUnitAttention
// turns it off. NOP-Out, Logout, and Task Management (ABORT TASK, ABORT
// TASK SET, CLEAR TASK SET, LOGICAL UNIT RESET, TARGET WARM/COLD RESET)
// are answered. The command window (Negotiation.CmdWindow) sets MaxCmdSN;
// commands outside it are ignored and recorded as violations.
//
// # Observing
//
// Records returns, per connection, every PDU received and sent (opcode,
// flags, ITT, TTT, CmdSN, ExpStatSN, StatSN, DataSN, BufferOffset, data
// length, CDB), the protocol violations seen, and the NOP-In pings with
// their answers. LUNData and WriteLUN read and preload LUN contents.
//
// # Faults
//
// Server.Faults returns controls a test may use at any time: drop the
// connection after N PDUs or on the Nth command, stall (for a duration or
// until released), corrupt the next header or data digests sent, answer
// matching commands with a Reject or with CHECK CONDITION and given sense,
// send NOP-In pings at an interval, and mutate any outgoing PDU. The
// Server itself can send Asynchronous Messages (SendAsync), change the
// command window (SetCmdWindow, 0 closes it) and drop every connection.
//
// The server is a test double: one goroutine per connection, everything
// bounded (tasks, buffered write data, records) so a hostile initiator
// cannot make it allocate without limit.
package iscsitest
