package scsi

import (
	"errors"
	"fmt"
)

// Sentinel errors matched by *ParseError under errors.Is.
var (
	// ErrTruncated: the data ends before the length it announces (or before
	// the minimum length of the structure). Re-issue the command with an
	// allocation length of at least ParseError.Need.
	ErrTruncated = errors.New("scsi: data truncated")
	// ErrMalformed: a field holds a value that cannot be right.
	ErrMalformed = errors.New("scsi: malformed data")
)

// ParseError reports why a response could not be parsed.
type ParseError struct {
	What   string // which structure, e.g. "INQUIRY data", "VPD page 0x83"
	Need   int    // bytes needed (0 when not known or not relevant)
	Have   int    // bytes available
	Detail string // for malformed data: what is wrong
	Err    error  // ErrTruncated or ErrMalformed
}

func (e *ParseError) Error() string {
	if e.Err == ErrTruncated {
		return fmt.Sprintf("scsi: %s truncated: need %d bytes, have %d", e.What, e.Need, e.Have)
	}
	return fmt.Sprintf("scsi: malformed %s: %s", e.What, e.Detail)
}

// Unwrap returns ErrTruncated or ErrMalformed.
func (e *ParseError) Unwrap() error { return e.Err }

func truncated(what string, need, have int) error {
	return &ParseError{What: what, Need: need, Have: have, Err: ErrTruncated}
}

func malformed(what string, have int, format string, args ...any) error {
	return &ParseError{What: what, Have: have, Detail: fmt.Sprintf(format, args...), Err: ErrMalformed}
}
