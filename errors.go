package iscsi

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// Login failures reported by the target, matched with errors.Is against
// the error of initiator.Dial, initiator.Discover or blockdev's Attach:
// one per Status-Class and Status-Detail pair of RFC 7143 §11.13.5. A
// detail not listed matches ErrInitiatorError (class 2) or ErrTargetError
// (class 3). The texts carry no context: the error wrapping them names
// the target and portal.
var (
	ErrInitiatorError          = errors.New("initiator error")                     // status 0x0200
	ErrAuthentication          = errors.New("authentication failure")              // 0x0201
	ErrAuthorization           = errors.New("authorization failure")               // 0x0202
	ErrTargetNotFound          = errors.New("target not found")                    // 0x0203
	ErrTargetRemoved           = errors.New("target removed")                      // 0x0204
	ErrUnsupportedVersion      = errors.New("unsupported version")                 // 0x0205
	ErrTooManyConnections      = errors.New("too many connections")                // 0x0206
	ErrMissingParameter        = errors.New("missing parameter")                   // 0x0207
	ErrCantIncludeInSession    = errors.New("can't include connection in session") // 0x0208
	ErrSessionTypeNotSupported = errors.New("session type not supported")          // 0x0209
	ErrSessionDoesNotExist     = errors.New("session does not exist")              // 0x020a
	ErrInvalidDuringLogin      = errors.New("invalid request during login")        // 0x020b
	ErrTargetError             = errors.New("target error")                        // 0x0300
	ErrServiceUnavailable      = errors.New("service unavailable")                 // 0x0301
	ErrOutOfResources          = errors.New("target out of resources")             // 0x0302
)

// Login failures found by the initiator itself (not a status from the
// target).
var (
	// ErrLoginProtocol is wrapped by every error caused by a target that
	// breaks the login protocol of RFC 7143 (bad flags, bad stage
	// transition, malformed text, a key repeated, an answer outside what
	// was offered, a malformed TargetAddress...).
	ErrLoginProtocol = errors.New("login protocol error")
	// ErrCHAPReflection: the target sent a CHAP challenge identical to ours.
	ErrCHAPReflection = errors.New("CHAP challenge reflected by the target")
	// ErrMutualAuth: mutual CHAP was configured and the target failed to
	// prove it knows the target secret (wrong CHAP_R or CHAP_N, missing
	// answer, or the target refused CHAP).
	ErrMutualAuth = errors.New("target failed mutual CHAP authentication")
	// ErrNoProgress: the login negotiation did not finish within its
	// round-trip bound.
	ErrNoProgress = errors.New("login negotiation does not complete")
	// ErrTextTooLarge: the target sent more login or SendTargets text than
	// allowed.
	ErrTextTooLarge = errors.New("text from target too large")
	// ErrConfig: the settings make no valid login (an empty initiator
	// name, a CHAP secret shorter than MinSecretLen without
	// AllowShortSecrets, ...).
	ErrConfig = errors.New("invalid login configuration")
)

// Login Status-Class values (RFC 7143 §11.13.5).
const (
	statusClassInitiatorError = 2
	statusClassTargetError    = 3
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

// Login stages (CSG values, RFC 7143 §11.12.3), for LoginError.Stage.
const (
	StageSecurity    = 0
	StageOperational = 1
	StageFullFeature = 3
)

// LoginError is a Login Response with a failing Status-Class (2 or 3, or
// a class RFC 7143 does not define). Use errors.Is with the Err* variables
// above to branch on the status.
type LoginError struct {
	Class, Detail uint8
	Stage         int // CSG of the request that failed (StageSecurity or StageOperational)
}

// Status returns Class<<8 | Detail.
func (e *LoginError) Status() uint16 { return uint16(e.Class)<<8 | uint16(e.Detail) }

func (e *LoginError) sentinel() error {
	if s, ok := statusTable[e.Status()]; ok {
		return s.sentinel
	}
	switch e.Class {
	case statusClassInitiatorError:
		return ErrInitiatorError
	case statusClassTargetError:
		return ErrTargetError
	}
	return nil
}

func (e *LoginError) Error() string {
	msg := "unknown login status"
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
	return e.Class == statusClassTargetError
}

// Temporary is Retryable, for callers that test the net.Error-style method.
func (e *LoginError) Temporary() bool { return e.Retryable() }

func stageName(s int) string {
	switch s {
	case StageSecurity:
		return "security"
	case StageOperational:
		return "operational"
	case StageFullFeature:
		return "full feature"
	}
	return "stage " + strconv.Itoa(s)
}

// RedirectError is a Login Response with Status-Class 1: the target moved
// (temporarily, 0x0101, or permanently, 0x0102) to another portal. The
// initiator follows a bounded number of redirections; this error is what
// is left when it cannot.
type RedirectError struct {
	Address           string // host name or IP address, IPv6 without brackets
	Port              int    // DefaultPort when the target gave none
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
	return fmt.Sprintf("target moved %s to %s (status 0x01%02x)", kind, e.Portal(), e.Detail)
}
