package blockdev

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/initiator"
	"github.com/gosan/iscsi/initiator/iscsitest"
	"github.com/gosan/iscsi/internal/iscsinl"
)

// One host, one identity: the InitiatorName the userspace initiator sends
// at login (as the target records it) is the one the kernel binding's
// attach path puts in its login, so a target ACL written for one admits
// the other.
func TestKernelAndInitiatorLogInWithOneName(t *testing.T) {
	const iqn = "iqn.2026-11.org.gosan.test:identity"
	srv := iscsitest.NewTestServer(t, iscsitest.Config{Targets: []iscsitest.Target{{
		Name: iqn, LUNs: []iscsitest.LUN{{Number: 1, Blocks: 64}},
	}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := initiator.Dial(ctx, srv.Addr(), iqn)
	require.NoError(t, err)
	require.NoError(t, sess.Close())
	recs := srv.Records()
	require.NotEmpty(t, recs)
	userspace := recs[0].Initiator
	require.NotEmpty(t, userspace)

	// The kernel path with default Options, as Open builds it.
	k := &Kernel{iname: Options{}.initiatorName(), tmo: DefaultTimeouts()}
	addr, err := net.ResolveTCPAddr("tcp", srv.Addr())
	require.NoError(t, err)
	s := &session{sid: 1, fd: -1}
	s.cfg = k.sessionConfig(Spec{Portal: srv.Addr(), TargetName: iqn, LUN: 1}, addr, s.sid)
	kernel := k.loginConfig(s).InitiatorName

	assert.Equal(t, userspace, kernel, "userspace and kernel logins must present the same InitiatorName")
	assert.Equal(t, iscsi.DefaultInitiatorName(), kernel)
	// The name the kernel is told in SET_PARAM (shown in sysfs) is the same too.
	found := false
	for _, p := range sessionParams(s.cfg) {
		if p.Param == iscsinl.ParamInitiatorName {
			assert.Equal(t, kernel, p.Value)
			found = true
		}
	}
	assert.True(t, found, "SET_PARAM INITIATOR_NAME")
	// An explicit name wins on both paths.
	k2 := &Kernel{iname: Options{InitiatorName: "iqn.2026-11.org.gosan.test:explicit"}.initiatorName()}
	assert.Equal(t, "iqn.2026-11.org.gosan.test:explicit", k2.sessionConfig(Spec{}, addr, 1).InitiatorName)
}
