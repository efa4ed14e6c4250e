//go:build !linux

package volume

import "context"

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
