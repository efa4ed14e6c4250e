//go:build !linux

package volume

import (
	"context"
	"fmt"

	"github.com/gosan/iscsi/blockdev"
)

// errNotSupported: mounting, flock and the kernel binding are Linux's.
var errNotSupported = fmt.Errorf("volume: the volume lifecycle is not supported on this OS: %w", blockdev.ErrNotSupported)

// NewManager returns an error matching blockdev.ErrNotSupported: the
// volume lifecycle mounts with Linux's mount(2) on Linux's kernel binding.
func NewManager(root string, att Attacher, opts ...Option) (*Manager, error) {
	return nil, errNotSupported
}

// Stage returns an error matching blockdev.ErrNotSupported.
func (m *Manager) Stage(ctx context.Context, v Volume) (*StageResult, error) {
	return nil, errNotSupported
}

// Publish returns an error matching blockdev.ErrNotSupported.
func (m *Manager) Publish(ctx context.Context, v Volume, target string, o PublishOptions) error {
	return errNotSupported
}

// Unpublish returns an error matching blockdev.ErrNotSupported.
func (m *Manager) Unpublish(ctx context.Context, target string) error { return errNotSupported }

// Unstage returns an error matching blockdev.ErrNotSupported.
func (m *Manager) Unstage(ctx context.Context, globalPath string) error { return errNotSupported }

// StageAt returns an error matching blockdev.ErrNotSupported.
func (m *Manager) StageAt(ctx context.Context, volumeID, stagingPath string, v Volume) (*StageResult, error) {
	return nil, errNotSupported
}

// PublishAt returns an error matching blockdev.ErrNotSupported.
func (m *Manager) PublishAt(ctx context.Context, volumeID, stagingPath, target string, o PublishOptions) error {
	return errNotSupported
}

// UnstageAt returns an error matching blockdev.ErrNotSupported.
func (m *Manager) UnstageAt(ctx context.Context, volumeID, stagingPath string) error {
	return errNotSupported
}
