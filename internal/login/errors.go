package login

import (
	"fmt"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/internal/portal"
)

// ParseTargetAddress parses a TargetAddress value (RFC 7143 §13.8):
// domainname[:port][,portal-group-tag], where domainname is a DNS name, an
// IPv4 address or an IPv6 address in brackets. A bare IPv6 address without
// brackets is accepted when no port follows. The port defaults to 3260.
// The syntax is internal/portal's; errors wrap iscsi.ErrLoginProtocol and a
// *portal.Error, and repeat at most 64 bytes of v.
func ParseTargetAddress(v string) (host string, port int, tag uint16, hasTag bool, err error) {
	a, err := portal.Parse(v)
	if err != nil {
		return "", 0, 0, false, fmt.Errorf("%w: TargetAddress: %w", iscsi.ErrLoginProtocol, err)
	}
	return a.Host, a.Port, a.Tag, a.HasTag, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// protoErr builds an error wrapping iscsi.ErrLoginProtocol.
func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{iscsi.ErrLoginProtocol}, args...)...)
}
