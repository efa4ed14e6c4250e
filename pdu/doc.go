// Package pdu is the iSCSI wire format of RFC 7143: the 48-byte Basic
// Header Segment (BHS), additional header segments (AHS), data segments
// with their padding, CRC32C header and data digests, a framing Reader and
// a gathering Writer, the text key=value codec used by Login and Text
// PDUs, and RFC 1982 serial number arithmetic for CmdSN/StatSN windows.
//
// Every PDU type has one struct (NOPOut, SCSICommand, DataIn, ...) that
// implements Message. Decoding aliases the input: the Data, AHS and CDB
// slices of a decoded struct point into the buffer given to Decode, so a
// decode allocates nothing. Encoding appends to a caller-owned slice.
//
// A decoded PDU re-encodes byte-identically: every field RFC 7143 defines is
// named, and additional header segments this package does not interpret are
// kept verbatim. Reserved bytes are written as zero.
//
// Integers in PDUs are big-endian. Digests are CRC32C (Castagnoli) and go on
// the wire least significant byte first.
package pdu
