package login

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/gosan/iscsi/internal/portal"
)

// Login status classes (RFC 7143 §11.13.5).
const (
	StatusClassSuccess        = 0
	StatusClassRedirection    = 1
	StatusClassInitiatorError = 2
	StatusClassTargetError    = 3
)

// Errors matched with errors.Is against a *LoginError, one per Status-Class
// and Status-Detail pair defined by RFC 7143 §11.13.5. A detail this package
// does not know matches ErrInitiatorError (class 2) or ErrTargetError
// (class 3).
var (
	ErrInitiatorError          = errors.New("login: initiator error")                     // 0x0200
	ErrAuthentication          = errors.New("login: authentication failure")              // 0x0201
	ErrAuthorization           = errors.New("login: authorization failure")               // 0x0202
	ErrTargetNotFound          = errors.New("login: target not found")                    // 0x0203
	ErrTargetRemoved           = errors.New("login: target removed")                      // 0x0204
	ErrUnsupportedVersion      = errors.New("login: unsupported version")                 // 0x0205
	ErrTooManyConnections      = errors.New("login: too many connections")                // 0x0206
	ErrMissingParameter        = errors.New("login: missing parameter")                   // 0x0207
	ErrCantIncludeInSession    = errors.New("login: can't include connection in session") // 0x0208
	ErrSessionTypeNotSupported = errors.New("login: session type not supported")          // 0x0209
	ErrSessionDoesNotExist     = errors.New("login: session does not exist")              // 0x020a
	ErrInvalidDuringLogin      = errors.New("login: invalid request during login")        // 0x020b
	ErrTargetError             = errors.New("login: target error")                        // 0x0300
	ErrServiceUnavailable      = errors.New("login: service unavailable")                 // 0x0301
	ErrOutOfResources          = errors.New("login: target out of resources")             // 0x0302
)

// Errors of the engine itself (not a status from the target).
var (
	// ErrProtocol is wrapped by every error caused by a target that breaks
	// RFC 7143 (bad flags, bad stage transition, malformed text, a key
	// repeated, an answer outside what was offered...).
	ErrProtocol = errors.New("login: protocol error")
	// ErrCHAPReflection: the target sent a CHAP challenge identical to ours.
	ErrCHAPReflection = errors.New("login: CHAP challenge reflected by the target")
	// ErrMutualAuth: mutual CHAP was configured and the target failed to
	// prove it knows the target secret (wrong CHAP_R or CHAP_N, missing
	// answer, or the target refused CHAP).
	ErrMutualAuth = errors.New("login: target failed mutual CHAP authentication")
	// ErrNoProgress: the negotiation did not finish within the round-trip
	// bound.
	ErrNoProgress = errors.New("login: negotiation does not complete")
	// ErrTextTooLarge: the target's text exceeded the size bound.
	ErrTextTooLarge = errors.New("login: text from target too large")
	// ErrConfig: the Config (or CHAP settings) cannot be used.
	ErrConfig = errors.New("login: invalid configuration")
)

type statusInfo struct {
	sentinel  error
	retryable bool
}

var statusTable = map[uint16]statusInfo{
	0x0200: {ErrInitiatorError, false},
	0x0201: {ErrAuthentication, false},
	0x0202: {ErrAuthorization, false},
	0x0203: {ErrTargetNotFound, false},
	0x0204: {ErrTargetRemoved, false},
	0x0205: {ErrUnsupportedVersion, false},
	0x0206: {ErrTooManyConnections, false},
	0x0207: {ErrMissingParameter, false},
	0x0208: {ErrCantIncludeInSession, false},
	0x0209: {ErrSessionTypeNotSupported, false},
	0x020a: {ErrSessionDoesNotExist, false},
	0x020b: {ErrInvalidDuringLogin, false},
	0x0300: {ErrTargetError, true},
	0x0301: {ErrServiceUnavailable, true},
	0x0302: {ErrOutOfResources, true},
}

// LoginError is a Login Response with a failing Status-Class (2 or 3, or
// a class this package does not know). Use errors.Is with the Err*
// variables above to branch on the status.
type LoginError struct {
	Class, Detail uint8
	Stage         int // CSG of the request that failed (0 security, 1 operational)
}

// Status returns Class<<8 | Detail.
func (e *LoginError) Status() uint16 { return uint16(e.Class)<<8 | uint16(e.Detail) }

func (e *LoginError) sentinel() error {
	if s, ok := statusTable[e.Status()]; ok {
		return s.sentinel
	}
	switch e.Class {
	case StatusClassInitiatorError:
		return ErrInitiatorError
	case StatusClassTargetError:
		return ErrTargetError
	}
	return nil
}

func (e *LoginError) Error() string {
	msg := "login: unknown status"
	if s := e.sentinel(); s != nil {
		msg = s.Error()
	}
	return fmt.Sprintf("%s (status 0x%04x, %s stage)", msg, e.Status(), stageName(e.Stage))
}

// Unwrap returns the Err* value matching the status, so errors.Is works.
func (e *LoginError) Unwrap() error { return e.sentinel() }

// Retryable reports whether the same login may succeed later: the target
// errors of class 3 (target error, service unavailable, out of resources).
func (e *LoginError) Retryable() bool {
	if s, ok := statusTable[e.Status()]; ok {
		return s.retryable
	}
	return e.Class == StatusClassTargetError
}

// Temporary is Retryable, for callers that test the net.Error-style method.
func (e *LoginError) Temporary() bool { return e.Retryable() }

// RedirectError is a Login Response with Status-Class 1: the target moved
// (temporarily, 0x0101, or permanently, 0x0102) to another portal. The
// caller decides whether to follow it.
type RedirectError struct {
	Address           string // host name or IP address, IPv6 without brackets
	Port              int    // 3260 when the target gave none
	PortalGroupTag    uint16
	HasPortalGroupTag bool
	Permanent         bool
	Detail            uint8 // raw Status-Detail
}

// Portal returns "host:port", with IPv6 addresses in brackets.
func (e *RedirectError) Portal() string {
	return net.JoinHostPort(e.Address, strconv.Itoa(e.Port))
}

func (e *RedirectError) Error() string {
	kind := "temporarily"
	if e.Permanent {
		kind = "permanently"
	}
	return fmt.Sprintf("login: target moved %s to %s (status 0x01%02x)", kind, e.Portal(), e.Detail)
}

// DefaultPort is the iSCSI well-known port.
const DefaultPort = portal.DefaultPort

// ParseTargetAddress parses a TargetAddress value (RFC 7143 §13.8):
// domainname[:port][,portal-group-tag], where domainname is a DNS name, an
// IPv4 address or an IPv6 address in brackets. A bare IPv6 address without
// brackets is accepted when no port follows. The port defaults to 3260.
// The syntax is internal/portal's; errors wrap ErrProtocol and a
// *portal.Error, and repeat at most 64 bytes of v.
func ParseTargetAddress(v string) (host string, port int, tag uint16, hasTag bool, err error) {
	a, err := portal.Parse(v)
	if err != nil {
		return "", 0, 0, false, fmt.Errorf("%w: TargetAddress: %w", ErrProtocol, err)
	}
	return a.Host, a.Port, a.Tag, a.HasTag, nil
}

func stageName(s int) string {
	switch s {
	case stageSecurity:
		return "security"
	case stageOperational:
		return "operational"
	case stageFullFeature:
		return "full feature"
	}
	return "stage " + strconv.Itoa(s)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// protoErr builds an error wrapping ErrProtocol.
func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)
}
