// Package portal parses and formats iSCSI portal addresses: the
// "host[:port]" strings users give and the TargetAddress values targets send
// (RFC 7143 §13.8: domainname[:port][,portal-group-tag]).
//
// One parser serves the whole module so that every package accepts the same
// spellings and prints the same normal form:
//
//	10.0.0.1               -> 10.0.0.1:3260
//	host.example:3261      -> host.example:3261
//	[2001:db8::1]          -> [2001:db8::1]:3260
//	[fe80::1%eth0]:3262    -> [fe80::1%eth0]:3262
//	2001:db8::1            -> [2001:db8::1]:3260  (bare IPv6: no port possible)
//	10.0.0.1:3260,1        -> 10.0.0.1:3260       (tag parsed, not printed)
//
// The host is kept as written (IP addresses are not canonicalized), so a
// normalized portal stays byte-for-byte stable across versions.
package portal

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// DefaultPort is the IANA iSCSI port, used when the input names none.
const DefaultPort = 3260

// Bounds on the input. A DNS name has at most 253 bytes; an IPv6 address
// with a zone is shorter than that.
const (
	maxHostLen  = 253
	maxInputLen = maxHostLen + len("[]:65535,65535")
	// maxEchoLen is how much of a bad input an Error repeats.
	maxEchoLen = 64
)

// Addr is a parsed portal address.
type Addr struct {
	Host   string // IP address (IPv6 without brackets, zone kept) or host name
	Port   int    // 1..65535; DefaultPort when the input named none
	Tag    uint16 // portal group tag, valid when HasTag
	HasTag bool
}

// String returns "host:port" with IPv6 addresses in brackets, the form
// net.Dial takes. The portal group tag is not printed.
func (a Addr) String() string { return net.JoinHostPort(a.Host, strconv.Itoa(a.Port)) }

// Error is returned for an address that cannot be parsed. Input holds at
// most the first 64 bytes of what was given (longer inputs end in "..."), so
// the message stays short whatever a peer sends.
type Error struct {
	Input  string // the offending input, truncated
	Reason string // why it was refused; never contains input
}

func (e *Error) Error() string { return "portal " + strconv.Quote(e.Input) + ": " + e.Reason }

func fail(in, reason string) (Addr, error) {
	if len(in) > maxEchoLen {
		in = in[:maxEchoLen] + "..."
	}
	return Addr{}, &Error{Input: in, Reason: reason}
}

// Parse parses host[:port][,tag].
//
// The host is an IPv4 address, an IPv6 address in brackets (with an
// optional %zone), or a host name made of letters, digits, '-', '.' and '_'
// that starts with a letter, digit or '_'. A bare IPv6 address without
// brackets is accepted when the whole string (before any ",tag") is one:
// it cannot carry a port. The port is decimal, 1..65535, DefaultPort when
// absent. A ",tag" suffix (decimal, 0..65535) is accepted everywhere, since
// targets send it in TargetAddress and open-iscsi prints portals as
// "ip:port,tag"; callers that must not take one check HasTag.
//
// Whitespace, control characters and '/' are refused anywhere. Errors are
// *Error.
func Parse(s string) (Addr, error) {
	switch {
	case s == "":
		return fail(s, "empty")
	case len(s) > maxInputLen:
		return fail(s, "too long")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f || c == '/' {
			return fail(s, "contains whitespace, a control character or '/'")
		}
	}
	var a Addr
	addr := s
	if i := strings.LastIndexByte(s, ','); i >= 0 {
		t, ok := decimal(s[i+1:], 0)
		if !ok {
			return fail(s, "bad portal group tag")
		}
		addr, a.Tag, a.HasTag = s[:i], uint16(t), true
	}
	port := ""
	hasPort := false
	switch {
	case strings.HasPrefix(addr, "["):
		end := strings.IndexByte(addr, ']')
		if end < 0 {
			return fail(s, "unterminated '['")
		}
		a.Host = addr[1:end]
		switch after := addr[end+1:]; {
		case after == "":
		case after[0] == ':':
			port, hasPort = after[1:], true
		default:
			return fail(s, "junk after ']'")
		}
		if a.Host == "" {
			return fail(s, "empty host")
		}
		if !isIPv6(a.Host) {
			return fail(s, "brackets hold no IPv6 address")
		}
	case strings.Count(addr, ":") > 1:
		if !isIPv6(addr) {
			return fail(s, "IPv6 address must be in brackets to carry a port")
		}
		a.Host = addr
	default:
		a.Host = addr
		if i := strings.IndexByte(addr, ':'); i >= 0 {
			a.Host, port, hasPort = addr[:i], addr[i+1:], true
		}
		if a.Host == "" {
			return fail(s, "empty host")
		}
		if !isIPv4(a.Host) && !isHostName(a.Host) {
			return fail(s, "host is neither an IP address nor a host name")
		}
	}
	a.Port = DefaultPort
	if hasPort {
		p, ok := decimal(port, 1)
		if !ok {
			return fail(s, "bad port (want 1..65535)")
		}
		a.Port = p
	}
	return a, nil
}

// Normalize parses s and returns its normal form, "host:port" (see
// Addr.String). Normalize of a normal form returns it unchanged.
func Normalize(s string) (string, error) {
	a, err := Parse(s)
	if err != nil {
		return "", err
	}
	return a.String(), nil
}

// decimal parses 1 to 5 ASCII digits as a number in min..65535.
func decimal(s string, min int) (int, bool) {
	if s == "" || len(s) > 5 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, n >= min && n <= 65535
}

// isIPv6 reports whether h is an IPv6 address, with an optional zone made
// of host-name characters.
func isIPv6(h string) bool {
	ip, err := netip.ParseAddr(h)
	if err != nil || !ip.Is6() {
		return false
	}
	if z := ip.Zone(); z != "" && !isHostName(z) {
		return false
	}
	return true
}

func isIPv4(h string) bool {
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.Is4()
}

// isHostName reports whether h is made of the characters a DNS name may
// hold (letters, digits, '-', '.', '_'), starts with a letter, digit or '_',
// and fits in a DNS name.
func isHostName(h string) bool {
	if h == "" || len(h) > maxHostLen || h[0] == '-' || h[0] == '.' {
		return false
	}
	for i := 0; i < len(h); i++ {
		switch c := h[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '.', c == '_':
		default:
			return false
		}
	}
	return true
}
