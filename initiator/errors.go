package initiator

import (
	"errors"
	"fmt"

	"github.com/gosan/iscsi/pdu"
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
	Reason pdu.RejectReason
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("iscsi: target rejected the PDU (reason 0x%02x: %v)", uint8(e.Reason), e.Reason)
}

// CommandError reports an iSCSI-level (not SCSI) failure of a command:
// the SCSI Response PDU's Response field was not "Command Completed at Target".
type CommandError struct {
	Response pdu.ServiceResponse
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("iscsi: target failure (response 0x%02x)", uint8(e.Response))
}

// TMFError reports a task management response other than "function complete".
type TMFError struct {
	Function pdu.TMFunction
	Response pdu.TMFResponse
}

func (e *TMFError) Error() string {
	return fmt.Sprintf("iscsi: task management function %v failed: response %d (%v)", e.Function, uint8(e.Response), e.Response)
}

// LogoutError reports a Logout Response other than success.
type LogoutError struct {
	Response pdu.LogoutResponseCode
}

func (e *LogoutError) Error() string {
	return fmt.Sprintf("iscsi: logout failed (response %d: %v)", uint8(e.Response), e.Response)
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
