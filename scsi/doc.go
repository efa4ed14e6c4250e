// Package scsi builds SCSI command descriptor blocks (CDBs) and parses the
// answers to them, independent of the transport that carries them.
//
// # CDB builders
//
// Every builder has the form
//
//	func XxxCDB(dst []byte, args...) []byte
//
// and appends the CDB to dst, returning the extended slice, like the append
// functions of strconv. With a dst that has room (for example buf[:0] where
// buf is a [16]byte inside an iSCSI header) no builder allocates; READ and
// WRITE builders are benchmarked at 0 allocs/op. Parameter lists (UNMAP,
// PERSISTENT RESERVE OUT) are built the same way with AppendXxx functions.
//
// # Parsers
//
// Parsers take the Data-In bytes the device returned and never panic on
// short, truncated or inconsistent input: they return a *ParseError, which
// matches ErrTruncated (the buffer ends before the length the data claims;
// Need tells how large an allocation length the command needs) or
// ErrMalformed (a field is impossible) under errors.Is. What they allocate
// is bounded by a small constant multiple of the input size. Returned byte slices are
// copies: the caller may reuse its buffer.
//
// # Sense data and status
//
// ParseSense decodes fixed (0x70/0x71) and descriptor (0x72/0x73) sense data;
// ParseSenseSegment decodes the iSCSI SCSI Response data segment, whose sense
// data is preceded by a two-byte SenseLength. ResponseError turns a status
// and sense segment into nil, a *SenseError or a *StatusError; both match
// sentinel errors (ErrUnitAttention, ErrNotReady, ErrReservationConflict, ...)
// under errors.Is.
//
// # LUNs
//
// EncodeLUN and DecodeLUN convert between LUN numbers and the 8-byte SAM
// encoding carried in an iSCSI header (the uint64 LUN field of package pdu):
// peripheral device addressing below 256, flat space addressing below 16384,
// extended flat space addressing above. ParseLUN describes any address method.
//
// # Transfer planning
//
// PlanRW splits a block transfer at the device's MAXIMUM TRANSFER LENGTH and
// chooses READ/WRITE(10) or (16) for each piece, without allocating.
package scsi
