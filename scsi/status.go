package scsi

import (
	"errors"
	"fmt"
)

// Status is a SCSI status code (SAM-5).
type Status uint8

// SCSI status codes.
const (
	StatusGood                Status = 0x00
	StatusCheckCondition      Status = 0x02
	StatusConditionMet        Status = 0x04
	StatusBusy                Status = 0x08
	StatusIntermediate        Status = 0x10 // obsolete
	StatusIntermediateCondMet Status = 0x14 // obsolete
	StatusReservationConflict Status = 0x18
	StatusCommandTerminated   Status = 0x22 // obsolete
	StatusTaskSetFull         Status = 0x28
	StatusACAActive           Status = 0x30
	StatusTaskAborted         Status = 0x40
)

func (s Status) String() string {
	switch s {
	case StatusGood:
		return "GOOD"
	case StatusCheckCondition:
		return "CHECK CONDITION"
	case StatusConditionMet:
		return "CONDITION MET"
	case StatusBusy:
		return "BUSY"
	case StatusIntermediate:
		return "INTERMEDIATE"
	case StatusIntermediateCondMet:
		return "INTERMEDIATE-CONDITION MET"
	case StatusReservationConflict:
		return "RESERVATION CONFLICT"
	case StatusCommandTerminated:
		return "COMMAND TERMINATED"
	case StatusTaskSetFull:
		return "TASK SET FULL"
	case StatusACAActive:
		return "ACA ACTIVE"
	case StatusTaskAborted:
		return "TASK ABORTED"
	}
	return fmt.Sprintf("status 0x%02x", uint8(s))
}

// Sentinel errors for non-GOOD status, matched by *StatusError (and by
// *SenseError for its Status) under errors.Is.
var (
	ErrBusy                = errors.New("scsi: BUSY")
	ErrReservationConflict = errors.New("scsi: RESERVATION CONFLICT")
	ErrTaskSetFull         = errors.New("scsi: TASK SET FULL")
	ErrACAActive           = errors.New("scsi: ACA ACTIVE")
	ErrTaskAborted         = errors.New("scsi: TASK ABORTED")
	// ErrCheckCondition matches a CHECK CONDITION whose sense data was
	// missing or unreadable (a *StatusError); a *SenseError matches it too.
	ErrCheckCondition = errors.New("scsi: CHECK CONDITION")
)

func statusSentinel(s Status) error {
	switch s {
	case StatusBusy:
		return ErrBusy
	case StatusReservationConflict:
		return ErrReservationConflict
	case StatusTaskSetFull:
		return ErrTaskSetFull
	case StatusACAActive:
		return ErrACAActive
	case StatusTaskAborted:
		return ErrTaskAborted
	case StatusCheckCondition:
		return ErrCheckCondition
	}
	return nil
}

// StatusError is a non-GOOD status that came without (usable) sense data.
type StatusError struct {
	Status Status
	// SenseErr is why sense data accompanying CHECK CONDITION could not be
	// used (nil when there was none).
	SenseErr error
}

func (e *StatusError) Error() string {
	if e.SenseErr != nil {
		return fmt.Sprintf("scsi: status %s (sense data unusable: %v)", e.Status, e.SenseErr)
	}
	return "scsi: status " + e.Status.String()
}

// Is matches the sentinel for the status (ErrBusy, ErrReservationConflict, ...).
func (e *StatusError) Is(target error) bool {
	t := statusSentinel(e.Status)
	return t != nil && t == target
}

// Unwrap returns the sense parsing error, if any.
func (e *StatusError) Unwrap() error { return e.SenseErr }

// ResponseError interprets the status of a completed command and the sense
// segment that came with it (the iSCSI SCSI Response data segment: 2-byte
// SenseLength followed by sense data; may be empty). It returns nil for GOOD
// and CONDITION MET, a *SenseError for CHECK CONDITION with parseable sense
// data, and a *StatusError otherwise.
func ResponseError(status Status, senseSegment []byte) error {
	switch status {
	case StatusGood, StatusConditionMet, StatusIntermediate, StatusIntermediateCondMet:
		return nil
	case StatusCheckCondition:
		if len(senseSegment) == 0 {
			return &StatusError{Status: status}
		}
		s, err := ParseSenseSegment(senseSegment)
		if err != nil {
			return &StatusError{Status: status, SenseErr: err}
		}
		return &SenseError{Status: status, Sense: s}
	}
	return &StatusError{Status: status}
}
