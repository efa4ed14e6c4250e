//go:build !linux

package blockdev

import "context"

// netlinkOptions are Options.netlinkOpts, which only Linux has.
type netlinkOptions = struct{}

// Kernel is the Linux kernel binding; elsewhere every method returns
// ErrNotSupported.
type Kernel struct{}

// Open returns ErrNotSupported: the kernel binding is Linux only.
func Open(opts Options) (*Kernel, error) { return nil, ErrNotSupported }

// Close returns ErrNotSupported.
func (k *Kernel) Close() error { return ErrNotSupported }

// Sysfs returns the default sysfs accessor (which finds nothing here).
func (k *Kernel) Sysfs() Sysfs { return Sysfs{} }

// Attach returns ErrNotSupported.
func (k *Kernel) Attach(ctx context.Context, spec Spec) (*Disk, error) { return nil, ErrNotSupported }

// Detach returns ErrNotSupported.
func (k *Kernel) Detach(ctx context.Context, d *Disk) error { return ErrNotSupported }

// DeleteDevice returns ErrNotSupported.
func (k *Kernel) DeleteDevice(ctx context.Context, path string) error { return ErrNotSupported }

// InitiatorName returns "".
func (k *Kernel) InitiatorName() string { return "" }

// SessionDisks returns ErrNotSupported.
func (k *Kernel) SessionDisks(ctx context.Context, portal, targetName, iface, initiatorName string) ([]Disk, error) {
	return nil, ErrNotSupported
}

// Logout returns ErrNotSupported.
func (k *Kernel) Logout(ctx context.Context, portal, targetName, iface, initiatorName string) error {
	return ErrNotSupported
}

// LogoutSession returns ErrNotSupported.
func (k *Kernel) LogoutSession(ctx context.Context, sid uint32) error { return ErrNotSupported }

// Supervise returns ErrNotSupported.
func (k *Kernel) Supervise(ctx context.Context) error { return ErrNotSupported }

// ConnStats returns ErrNotSupported.
func (k *Kernel) ConnStats(ctx context.Context, sid uint32) (*ConnStats, error) {
	return nil, ErrNotSupported
}
