package blockdev

import (
	"encoding/json"
	"math/rand/v2"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gosan/iscsi/internal/testenv/tgtd"
	"github.com/gosan/iscsi/internal/testenv/vmtest"
)

// guestPortals returns the guest's addresses of every portal of srv.
func guestPortals(t testing.TB, srv *tgtd.Server) []string {
	t.Helper()
	var out []string
	for _, p := range srv.Portals() {
		_, port, err := net.SplitHostPort(p)
		require.NoError(t, err)
		out = append(out, net.JoinHostPort(vmtest.HostIP, port))
	}
	return out
}

// guestFixtureEnv starts the standard tgtd fixture with the given options
// and returns the guest's BD_ENV (the fixture with its first portal as the
// guest sees it) and BD_PORTAL2 when there is a second portal.
func guestFixtureEnv(t testing.TB, opts ...tgtd.Option) (*tgtd.Server, *tgtd.Fixture, map[string]string) {
	t.Helper()
	srv, fix := tgtd.StartFixture(t, opts...)
	ps := guestPortals(t, srv)
	g := *fix
	g.Portal = ps[0]
	b, err := json.Marshal(guestEnv{Fixture: &g, Seed: rand.Uint64()})
	require.NoError(t, err)
	env := map[string]string{"BD_ENV": string(b)}
	if len(ps) > 1 {
		env["BD_PORTAL2"] = ps[1]
	}
	return srv, fix, env
}

// TestKernelSharedSessionAndMultiPortal runs, in one guest boot, the volume
// scenarios that share sessions or spread a volume over portals: two
// volumes of one target staged and unstaged in parallel on one session
// (TestGuestSharedTarget), and one volume over two portals of one target,
// first without and then with a dm-multipath map (TestGuestMultiPortal).
func TestKernelSharedSessionAndMultiPortal(t *testing.T) {
	_, _, env := guestFixtureEnv(t, tgtd.WithPortals(2))
	require.Contains(t, env, "BD_PORTAL2")
	res := vmtest.RunTestInGuestWith(t, ".", "^TestGuest(SharedTarget|MultiPortal)$", vmtest.Config{
		Env:   env,
		Sets:  []vmtest.ModuleSet{vmtest.SetISCSI, vmtest.SetMultipath},
		Files: vmtest.HostTools(t, "mkfs.ext4", "dmsetup"),
		Args:  []string{"-test.timeout=8m"},
	})
	require.NotNil(t, res)
	require.Equal(t, 0, res.ExitCode)
	for _, name := range []string{
		"TestGuestSharedTarget/ordered", "TestGuestSharedTarget/free-running",
		"TestGuestMultiPortal/no-dm", "TestGuestMultiPortal/dm-multipath",
	} {
		assert.Contains(t, res.Output, "--- PASS: "+name)
	}
}
