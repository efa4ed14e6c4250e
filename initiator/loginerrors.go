package initiator

import "github.com/gosan/iscsi/internal/login"

// Login failures. Dial and Discover wrap them, so callers branch with
// errors.Is (errors.Is(err, initiator.ErrAuthentication)) or errors.As with
// *LoginError for the raw status class and detail. They are the login
// engine's own values, re-exported because that engine is internal: the
// kernel binding (blockdev) drives the same engine over netlink.
var (
	ErrInitiatorError          = login.ErrInitiatorError          // status 0x0200
	ErrAuthentication          = login.ErrAuthentication          // 0x0201
	ErrAuthorization           = login.ErrAuthorization           // 0x0202
	ErrTargetNotFound          = login.ErrTargetNotFound          // 0x0203
	ErrTargetRemoved           = login.ErrTargetRemoved           // 0x0204
	ErrUnsupportedVersion      = login.ErrUnsupportedVersion      // 0x0205
	ErrTooManyConnections      = login.ErrTooManyConnections      // 0x0206
	ErrMissingParameter        = login.ErrMissingParameter        // 0x0207
	ErrCantIncludeInSession    = login.ErrCantIncludeInSession    // 0x0208
	ErrSessionTypeNotSupported = login.ErrSessionTypeNotSupported // 0x0209
	ErrSessionDoesNotExist     = login.ErrSessionDoesNotExist     // 0x020a
	ErrInvalidDuringLogin      = login.ErrInvalidDuringLogin      // 0x020b
	ErrTargetError             = login.ErrTargetError             // 0x0300
	ErrServiceUnavailable      = login.ErrServiceUnavailable      // 0x0301
	ErrOutOfResources          = login.ErrOutOfResources          // 0x0302

	// ErrLoginProtocol: the target broke the login protocol (bad or repeated
	// keys, values out of range, malformed PDUs).
	ErrLoginProtocol = login.ErrProtocol
	// ErrCHAPReflection: the target sent back our own CHAP challenge.
	ErrCHAPReflection = login.ErrCHAPReflection
	// ErrMutualAuth: the target failed mutual CHAP (wrong or missing proof).
	ErrMutualAuth = login.ErrMutualAuth
	// ErrNoProgress: the negotiation did not complete within its bounds.
	ErrNoProgress = login.ErrNoProgress
	// ErrTextTooLarge: the target sent more login or SendTargets text than allowed.
	ErrTextTooLarge = login.ErrTextTooLarge
	// ErrConfig: the options make no valid login (e.g. a CHAP secret shorter
	// than 12 bytes without AllowShortSecrets).
	ErrConfig = login.ErrConfig
)

// LoginError is a Login Response with a non-success status.
type LoginError = login.LoginError

// RedirectError is a login redirection that could not be followed.
type RedirectError = login.RedirectError
