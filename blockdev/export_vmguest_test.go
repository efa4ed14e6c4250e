//go:build vmguest

package blockdev

// Guest helpers for the external guest tests (guest_volume_test.go, in
// package blockdev_test because blockdev/volume imports blockdev).
var (
	LoadEnv           = loadEnv
	OpenKernel        = openKernel
	GuestCtx          = guestCtx
	RequireNoSessions = requireNoSessions
	SessionsFor       = sessionsFor
)
