//go:build linux && vmguest

// Guest-only tests: they need a kernel with scsi_transport_iscsi and
// iscsi_tcp loaded, CAP_SYS_ADMIN and the initial network namespace. They are
// built with -tags vmguest into the static test binary that
// internal/testenv/vmtest boots in a qemu guest (TestGuest* names).

package iscsinl

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gosan/iscsi/internal/testenv/vmtest"
)

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func TestGuestSessionLifecycle(t *testing.T) {
	vmtest.RequireGuest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h, err := TransportHandle("tcp")
	require.NoError(t, err, "iscsi_tcp must be loaded in the guest")
	require.NotZero(t, h)

	c, err := Dial()
	require.NoError(t, err)
	defer c.Close()
	assert.Equal(t, h, c.TransportHandle())

	s, err := c.CreateSession(ctx, CreateSession{InitialCmdSN: 1, CmdsMax: 128, QueueDepth: 32})
	require.NoError(t, err)
	sessDir := fmt.Sprintf("/sys/class/iscsi_session/session%d", s.SID)
	assert.True(t, exists(sessDir), "%s appears", sessDir)
	assert.True(t, exists(fmt.Sprintf("/sys/class/scsi_host/host%d", s.HostNo)))

	cr, err := c.CreateConn(ctx, s.SID, 0)
	require.NoError(t, err)
	assert.Equal(t, ConnResult{SID: s.SID, CID: 0}, cr)
	assert.True(t, exists(fmt.Sprintf("/sys/class/iscsi_connection/connection%d:0", s.SID)))

	// Not bound yet: the kernel refuses most parameters with ENOTCONN but
	// takes the session recovery timeout.
	err = c.SetParam(ctx, s.SID, 0, ParamTargetName, "iqn.2024-01.test:t")
	assert.ErrorIs(t, err, syscall.ENOTCONN)
	require.NoError(t, c.SetParam(ctx, s.SID, 0, ParamSessRecoveryTmo, "5"))

	err = c.DestroySession(ctx, s.SID)
	assert.ErrorIs(t, err, syscall.EBUSY, "a session with connections cannot be destroyed")

	require.NoError(t, c.DestroyConn(ctx, s.SID, 0))
	require.NoError(t, c.DestroySession(ctx, s.SID))
	assert.Eventually(t, func() bool { return !exists(sessDir) }, 10*time.Second, 50*time.Millisecond, "%s disappears", sessDir)

	// IF_ERROR path.
	err = c.DestroySession(ctx, 999999)
	var ke *KernelError
	require.ErrorAs(t, err, &ke)
	assert.Equal(t, syscall.EINVAL, ke.Errno)
	assert.False(t, ke.Retcode)
	err = c.StartConn(ctx, 999999, 0)
	assert.ErrorIs(t, err, syscall.EINVAL)
}
