package volume

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/internal/testenv/tgtd"
)

// fakeDiscoverer is a fakeAttacher whose targets advertise portals.
type fakeDiscoverer struct {
	*fakeAttacher
	advertise map[string][]string // discovery portal: advertised portals of testIQN
	needCHAP  *iscsi.CHAP         // discovery CHAP the target requires
	specs     []DiscoverySpec
}

var errDiscoveryAuth = errors.New("discovery login: authentication failure")

func (f *fakeDiscoverer) Discover(ctx context.Context, spec DiscoverySpec) ([]string, error) {
	f.mu.Lock()
	f.specs = append(f.specs, spec)
	f.mu.Unlock()
	if f.needCHAP != nil && (spec.CHAP == nil || spec.CHAP.User != f.needCHAP.User || spec.CHAP.Secret != f.needCHAP.Secret) {
		return nil, errDiscoveryAuth
	}
	if spec.TargetName != testIQN {
		return nil, nil
	}
	return f.advertise[spec.Portal], nil
}

// TestStageDiscovers: with a Discoverer, Stage discovers on the volume's
// portals (with discovery CHAP when asked) and logs in on the portals the
// target advertises too; Unstage logs out of all of them. Discovery that
// fails (wrong discovery secret) fails Stage without any login.
func TestStageDiscovers(t *testing.T) {
	e := newEnv(t, smallDisk)
	d := &fakeDiscoverer{fakeAttacher: e.att, advertise: map[string][]string{
		// The target's other portal, and its own loopback view (dropped).
		"10.0.0.1:3260": {"10.0.0.1:3260", "10.0.0.2:3260", "127.0.0.1:3260", "[::]:3260"},
	}, needCHAP: &iscsi.CHAP{User: "disc", Secret: "discsecret12"}}
	e.m.att = d
	v := Volume{TargetPortal: "10.0.0.1", IQN: testIQN, LUN: 0, VolumeMode: ModeBlock, DiscoveryCHAPAuth: true,
		Secrets: Secrets{SecretDiscoveryUser: "disc", SecretDiscoveryPassword: "discsecret12"}}
	res, err := e.m.Stage(e.ctx, v)
	require.NoError(t, err)
	require.Len(t, d.specs, 1)
	require.NotNil(t, d.specs[0].CHAP, "discovery CHAP passed")
	assert.Equal(t, "disc", d.specs[0].CHAP.User)
	require.Len(t, res.Devices, 2, "logged in on the advertised portal too")
	assert.Equal(t, "10.0.0.1:3260", res.Devices[0].Portal)
	assert.Equal(t, "10.0.0.2:3260", res.Devices[1].Portal)
	assert.Empty(t, res.Failed)
	rec, err := readRecord(res.GlobalPath, ModeBlock)
	require.NoError(t, err)
	assert.Equal(t, []string{"10.0.0.1:3260", "10.0.0.2:3260"}, rec.Portals)
	require.NoError(t, e.m.Unstage(e.ctx, res.GlobalPath))
	assert.Len(t, e.att.logouts, 2)

	// The wrong discovery secret: no login at all.
	n := len(e.att.specs)
	v.Secrets[SecretDiscoveryPassword] = "wrongsecret1"
	_, err = e.m.Stage(e.ctx, v)
	require.ErrorIs(t, err, errDiscoveryAuth)
	assert.Len(t, e.att.specs, n, "logged in although discovery failed")
	// No discovery CHAP for a target that wants it: the same.
	v.DiscoveryCHAPAuth = false
	_, err = e.m.Stage(e.ctx, v)
	require.ErrorIs(t, err, errDiscoveryAuth)

	// A portal that does not list the target is not logged in on.
	d.needCHAP = nil
	v.Portals = []string{"10.0.0.3"}
	res, err = e.m.Stage(e.ctx, v)
	require.NoError(t, err)
	require.Len(t, res.Failed, 1)
	assert.Equal(t, "10.0.0.3:3260", res.Failed[0].Portal)
	require.ErrorIs(t, res.Failed[0].Err, ErrTargetNotAdvertised)
	require.NoError(t, e.m.Unstage(e.ctx, res.GlobalPath))
	e.assertClean(t, res.GlobalPath)
}

func TestReachableFrom(t *testing.T) {
	assert.True(t, reachableFrom("10.0.0.2:3260", "10.0.0.1:3260"))
	assert.True(t, reachableFrom("storage.example:3260", "10.0.0.1:3260"))
	assert.False(t, reachableFrom("127.0.0.1:3260", "10.0.2.2:3260"), "the target's loopback, seen through NAT")
	assert.False(t, reachableFrom("[::1]:3260", "10.0.0.1:3260"))
	assert.False(t, reachableFrom("0.0.0.0:3260", "127.0.0.1:3260"))
	assert.True(t, reachableFrom("127.0.0.1:3261", "127.0.0.1:3260"), "a target on this host")
}

// TestKernelAttacherDiscover: the kernel attacher's discovery against tgtd
// with discovery CHAP (an account bound without a tid), with and without the
// right secret.
func TestKernelAttacherDiscover(t *testing.T) {
	srv, fix := tgtd.StartFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, srv.NewAccount(ctx, "discuser", "discsecret12"))
	// An account bound without a tid is tgtd's discovery account.
	_, err := srv.Admin(ctx, "--mode", "account", "--op", "bind", "--user", "discuser")
	require.NoError(t, err)
	a := kernelAttacher{} // Discover needs no kernel when the spec names the initiator
	spec := DiscoverySpec{Portal: fix.Portal, TargetName: fix.Plain.IQN, InitiatorName: "iqn.2026-11.org.gosan.test:disc",
		CHAP: &iscsi.CHAP{User: "discuser", Secret: "discsecret12"}}
	got, err := a.Discover(ctx, spec)
	require.NoError(t, err)
	assert.Equal(t, []string{fix.Portal}, got, "the portal the target advertises (tgtd: the one discovery used)")
	spec.TargetName = "iqn.2026-11.org.gosan.test:absent"
	got, err = a.Discover(ctx, spec)
	require.NoError(t, err)
	assert.Empty(t, got, "a target the answer does not list")
	spec.TargetName = fix.Plain.IQN

	spec.CHAP = &iscsi.CHAP{User: "discuser", Secret: "wrongsecret1"}
	_, err = a.Discover(ctx, spec)
	require.Error(t, err, "discovery with the wrong secret")
	spec.CHAP = nil
	_, err = a.Discover(ctx, spec)
	require.Error(t, err, "discovery without CHAP when the target wants it")
	var _ Discoverer = a
}
