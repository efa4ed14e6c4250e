package pdu

// Serial number arithmetic for 32-bit sequence numbers (CmdSN, StatSN,
// DataSN, ...) as RFC 1982 defines it. Two numbers exactly 2^31 apart are
// not comparable: every comparison between them reports false (except the
// equality part of the *Eq forms, which is also false for them).

const serialHalf = 1 << 31

// SerialLess reports a < b in serial number arithmetic.
func SerialLess(a, b uint32) bool {
	return a != b && ((a < b && b-a < serialHalf) || (a > b && a-b > serialHalf))
}

// SerialGreater reports a > b in serial number arithmetic.
func SerialGreater(a, b uint32) bool { return SerialLess(b, a) }

// SerialLessEq reports a <= b in serial number arithmetic.
func SerialLessEq(a, b uint32) bool { return a == b || SerialLess(a, b) }

// SerialGreaterEq reports a >= b in serial number arithmetic.
func SerialGreaterEq(a, b uint32) bool { return a == b || SerialLess(b, a) }

// SerialAdd returns a + n modulo 2^32. RFC 1982 defines addition only for
// n < 2^31; larger n are the caller's error.
func SerialAdd(a, n uint32) uint32 { return a + n }

// SerialDiff returns the signed distance a - b. It is meaningful only when
// the two are less than 2^31 apart; at exactly 2^31 it returns math.MinInt32.
func SerialDiff(a, b uint32) int32 { return int32(a - b) }

// SerialInWindow reports whether sn lies in [lo, hi] (serially), the test
// an initiator applies to CmdSN against [ExpCmdSN, MaxCmdSN]. An empty
// window (hi == lo-1) contains nothing.
func SerialInWindow(sn, lo, hi uint32) bool {
	return SerialLessEq(lo, sn) && SerialLessEq(sn, hi)
}
