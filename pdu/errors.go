package pdu

import (
	"errors"
	"fmt"
)

// ErrUnknownOpcode is wrapped by the *FormatError returned for an opcode
// that RFC 7143 does not define.
var ErrUnknownOpcode = errors.New("pdu: unknown opcode")

// ErrTruncated is wrapped by the *FormatError returned for input shorter
// than the lengths in its header say.
var ErrTruncated = errors.New("pdu: truncated")

// FormatError reports a PDU that cannot be decoded: short input, an
// unexpected or unknown opcode, or lengths that do not fit.
type FormatError struct {
	Opcode Opcode // opcode byte of the offending PDU (0 if not even a BHS was present)
	Reason string
	Err    error // ErrUnknownOpcode, ErrTruncated or nil
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("pdu: malformed %v: %s", e.Opcode, e.Reason)
}

func (e *FormatError) Unwrap() error { return e.Err }

// DataSegmentTooLargeError reports a PDU whose DataSegmentLength exceeds the
// limit set with Reader.SetMaxDataSegmentLength. Nothing was allocated for it.
type DataSegmentTooLargeError struct {
	Opcode Opcode
	Length int
	Max    int
}

func (e *DataSegmentTooLargeError) Error() string {
	return fmt.Sprintf("pdu: %v data segment of %d bytes exceeds MaxRecvDataSegmentLength %d", e.Opcode, e.Length, e.Max)
}

// DigestError reports a CRC32C mismatch on a received header (Header true)
// or data segment.
type DigestError struct {
	Header bool
	Got    uint32 // digest found on the wire
	Want   uint32 // digest computed over the received bytes
}

func (e *DigestError) Error() string {
	what := "data"
	if e.Header {
		what = "header"
	}
	return fmt.Sprintf("pdu: %s digest mismatch: got %#08x, computed %#08x", what, e.Got, e.Want)
}

func formatErr(op Opcode, err error, format string, args ...any) *FormatError {
	return &FormatError{Opcode: op, Reason: fmt.Sprintf(format, args...), Err: err}
}
