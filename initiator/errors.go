package initiator

import (
	"errors"
	"fmt"
)

// ErrSessionClosed is returned for operations on a closed session.
var ErrSessionClosed = errors.New("iscsi: session closed")

// ErrTaskAborted is returned for a command that a task management function
// (ABORT TASK SET, LUN RESET, a target reset) ended: the target sends no
// response for such tasks.
var ErrTaskAborted = errors.New("iscsi: command aborted by task management")

// ConnectionError reports that the connection carrying a command failed; the
// command's outcome on the target is unknown. The session is marked failed.
type ConnectionError struct {
	Op  string // what the connection was doing
	Err error
}

func (e *ConnectionError) Error() string {
	return "iscsi: connection failed: " + e.Op + ": " + e.Err.Error()
}
func (e *ConnectionError) Unwrap() error { return e.Err }

// ProtocolError reports a PDU from the target that violates RFC 7143 (for
// example Data-In outside the command's buffer, DataSN out of order, or an
// R2T outside the write). The command fails and the connection is dropped.
type ProtocolError struct {
	Reason string
}

func (e *ProtocolError) Error() string { return "iscsi: protocol error: " + e.Reason }

// AlignmentError reports an offset or length that is not a multiple of the
// LUN's block size, or a transfer beyond the end of the LUN.
type AlignmentError struct {
	Offset    int64
	Length    int
	BlockSize uint32
	Size      int64 // LUN size in bytes
}

func (e *AlignmentError) Error() string {
	if e.Offset+int64(e.Length) > e.Size && e.Size > 0 {
		return fmt.Sprintf("iscsi: I/O at offset %d length %d beyond end of LUN (%d bytes)", e.Offset, e.Length, e.Size)
	}
	return fmt.Sprintf("iscsi: offset %d / length %d not aligned to block size %d", e.Offset, e.Length, e.BlockSize)
}

// RejectError reports a Reject PDU for one of our requests.
type RejectError struct {
	Reason uint8
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("iscsi: target rejected the PDU (reason 0x%02x: %s)", e.Reason, rejectReason(e.Reason))
}

func rejectReason(r uint8) string {
	switch r {
	case 0x02:
		return "data digest error"
	case 0x03:
		return "SNACK reject"
	case 0x04:
		return "protocol error"
	case 0x05:
		return "command not supported"
	case 0x06:
		return "immediate command reject"
	case 0x07:
		return "task in progress"
	case 0x08:
		return "invalid data ack"
	case 0x09:
		return "invalid PDU field"
	case 0x0a:
		return "long operation reject"
	case 0x0c:
		return "waiting for logout"
	}
	return "reserved"
}

// CommandError reports an iSCSI-level (not SCSI) failure of a command:
// the SCSI Response PDU's Response field was not "Command Completed at Target".
type CommandError struct {
	Response uint8
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("iscsi: target failure (response 0x%02x)", e.Response)
}

// TMFError reports a task management response other than "function complete".
type TMFError struct {
	Function uint8
	Response uint8
}

func (e *TMFError) Error() string {
	return fmt.Sprintf("iscsi: task management function %d failed: response %d (%s)", e.Function, e.Response, tmfResponse(e.Response))
}

func tmfResponse(r uint8) string {
	switch r {
	case 0:
		return "function complete"
	case 1:
		return "task does not exist"
	case 2:
		return "LUN does not exist"
	case 3:
		return "task still allegiant"
	case 4:
		return "task allegiance reassignment not supported"
	case 5:
		return "task management function not supported"
	case 6:
		return "function authorization failed"
	case 255:
		return "function rejected"
	}
	return "unknown"
}

// LogoutError reports a Logout Response other than success.
type LogoutError struct {
	Response uint8
}

func (e *LogoutError) Error() string {
	return fmt.Sprintf("iscsi: logout failed (response %d)", e.Response)
}

// ErrSessionFailed matches (errors.Is) a *SessionFailedError.
var ErrSessionFailed = errors.New("iscsi: session failed")

// ErrSendStalled is the cause of a connection failure when a send made no
// progress for the send timeout (WithSendTimeout): the target stopped
// reading. The session recovers as from any other connection failure.
var ErrSendStalled = errors.New("iscsi: send stalled")

// SessionFailedError reports that the session lost its connection and could
// not be recovered within the replacement timeout (immediately when the
// timeout is 0). Commands pending at that moment and every later one fail
// with it; the outcome on the target of those that were in flight is
// unknown. Cause is the connection failure (usually a *ConnectionError)
// and, when reconnection was tried, the last reconnection error.
type SessionFailedError struct {
	Cause error
}

func (e *SessionFailedError) Error() string {
	return "iscsi: session failed: " + e.Cause.Error()
}

// Unwrap returns ErrSessionFailed and the cause, so errors.Is(err,
// ErrSessionFailed) and errors.As(err, &connErr) both work.
func (e *SessionFailedError) Unwrap() []error { return []error{ErrSessionFailed, e.Cause} }
