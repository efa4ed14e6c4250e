// Package initiator is a pure-Go iSCSI initiator (RFC 7143) over TCP:
// discovery, login (with one-way or mutual CHAP), the full feature phase and
// logout, with logical units exposed as io.ReaderAt / io.WriterAt.
//
//	s, err := initiator.Dial(ctx, "192.0.2.10:3260", "iqn.2024-01.example:disk1",
//		initiator.WithCHAP(iscsi.CHAP{User: "u", Secret: "s3cret-s3cret"}))
//	...
//	defer s.Close()
//	lun, err := s.LUN(ctx, 1)
//	n, err := lun.ReadAt(buf, 0) // block-aligned offset and length
//
// Configuration uses functional options (WithInitiatorName, WithCHAP,
// WithHeaderDigest, WithQueueDepth, WithLogger, WithDialer, ...), applied
// in order; the zero set of options gives working defaults.
//
// # Design
//
// A connection has one reader at a time, but not always the same
// goroutine: the reader role passes to a caller waiting for its own
// command (at queue depth 1 it reads its own response, without a
// goroutine hand-off) and back to a background reader while no caller
// reads. The reader decodes each header into a per-connection pdu struct
// of its opcode (DecodeHeader, no allocation), applies StatSN, ExpCmdSN
// and MaxCmdSN in one place, and hands the PDU to that opcode's handler,
// which routes it by Initiator Task Tag to a preallocated table of task
// slots (ITT = slot index | generation<<16, so answers to finished
// tasks are recognised and dropped). Data-In payload is read straight into
// the caller's buffer at its BufferOffset after checking that it lies inside
// the buffer and that DataSN and offsets are in order; anything else fails
// the command and drops the connection, so a hostile target can never write
// outside the buffer. Status carried in the last Data-In is honoured and
// residuals are reported in Result.
//
// On Linux the socket leaves Go's network poller after login: reads and
// writes are non-blocking system calls, and a goroutine that must wait
// does so in ppoll(2), as a C initiator's event loop would. Go's poller
// would wake an idle OS thread for every segment that arrives. The price
// is one OS thread per connection while it waits for the target (an idle
// session keeps its background reader's thread in ppoll), so a process
// with thousands of sessions may need debug.SetMaxThreads.
//
// Sending needs no goroutine: the caller queues its PDUs (the command,
// immediate data, unsolicited Data-Out) under the command-window lock, so
// CmdSNs leave in order, and whoever finds the socket idle writes
// everything queued in one writev (flat combining). R2Ts are answered from
// the reader by queueing Data-Out PDUs (never larger than the target's
// MaxRecvDataSegmentLength, DataSN from 0 per sequence, F on the last); the
// reader never blocks on the socket's send side. Completion is signalled
// through a per-slot channel allocated once, so a 4 KiB read or write
// allocates nothing in the steady state.
//
// Callers block (honouring their context) while the target's command
// window is closed or all slots are busy. Cancelling the context of a
// command in flight sends ABORT TASK; the slot (and the caller's buffer) is
// released only after the task management response or the loss of the
// connection. NOP-In pings from the target are answered, and with
// WithNOP an idle connection is probed and declared dead when the probe is
// not answered; the probe runs in a goroutine that never writes to the
// socket itself, so a send stuck behind a target that stopped reading
// cannot silence it. A send that does not complete within WithSendTimeout
// (default 30 s) also fails the connection (ErrSendStalled). A UNIT
// ATTENTION (after login or a reset) is absorbed by retrying the command
// once; other CHECK CONDITIONs become *scsi.SenseError.
//
// # Timeouts
//
// No command waits forever, with or without a context: every SCSI command
// has a timeout (WithCommandTimeout, default 30 s as for Linux disks;
// ContextWithCommandTimeout for one call). A command past it is settled
// as the Linux SCSI error handler does, each step bounded by the TMF
// timeout: ABORT TASK; if that is not answered or fails, LOGICAL UNIT
// RESET (other commands of the LUN then end with ErrTaskAborted); if that
// fails too, the connection is dropped and recovery reinstates the session.
// The command is then issued once more; a second timeout fails the call
// with *CommandTimeoutError (errors.Is ErrCommandTimeout), which lists the
// steps. A write is acknowledged only on GOOD status, so a timed-out write
// is never reported as written. Commands do not time out while the
// session recovers (the replacement timeout bounds that). Session.Stats
// counts timeouts, ABORT TASKs and LUN RESETs.
//
// # Recovery
//
// A connection that fails (EOF, reset, unanswered keepalive, stalled send,
// digest error, protocol error, a command timeout that task management did
// not settle, a target-requested logout) is replaced at error recovery
// level 0 with session reinstatement: after the target's DefaultTime2Wait
// (or the Time2Wait of its Async Message announcing the drop) the session
// logs in again with its ISID and TSIH 0 (so the target drops
// the old session's tasks), trying the connected portal, the Dial portal
// and WithPortals in turn with a 1 s..30 s back-off, and re-issues every
// command that had not completed in CmdSN order with new CmdSNs and all
// its data (partial Data-In is read again). Callers see latency, not
// errors; a write is acknowledged only on the target's GOOD status, and one
// whose outcome was unknown is written again. Commands submitted meanwhile
// wait within their context. A UNIT ATTENTION caused by the reinstatement
// is absorbed. TMFs and pings in flight fail instead of being replayed.
//
// WithReplacementTimeout (default 120 s, open-iscsi's replacement_timeout)
// bounds the recovery; past it, or at once with 0, pending and new commands
// fail with *SessionFailedError (errors.Is ErrSessionFailed, and errors.As
// the *ConnectionError cause) and Session.Err reports it. WithStateFunc
// reports state changes and Session.Stats the counters (reconnects,
// re-issued commands, digest errors, keepalive and send timeouts).
package initiator
