//go:build !linux

package volume

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gosan/iscsi/blockdev"
)

// Off Linux the volume lifecycle says clearly that it is not supported;
// the volume spec still validates.
func TestNotSupportedOffLinux(t *testing.T) {
	_, err := NewManager("/var/lib/x", nil)
	require.ErrorIs(t, err, blockdev.ErrNotSupported)
	var m *Manager
	_, err = m.Stage(context.Background(), Volume{})
	assert.ErrorIs(t, err, blockdev.ErrNotSupported)
	assert.ErrorIs(t, m.Unstage(context.Background(), "/x"), blockdev.ErrNotSupported)
	v := Volume{TargetPortal: "10.0.0.1", IQN: "iqn.2024-01.org.gosan:disk1", LUN: 1}
	n, err := v.Normalize()
	require.NoError(t, err)
	assert.Equal(t, blockdev.DefaultIface, n.ISCSIInterface)
}
