package blockdev

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gosan/iscsi/internal/testenv/tgtd"
	"github.com/gosan/iscsi/internal/testenv/vmtest"
)

// Host side of the guest tests: tgtd runs here, the guest (Debian's stock
// kernel in qemu, see internal/testenv/vmtest) reaches it at vmtest's host address
// and drives the kernel's iscsi_tcp through this package.

// Layout of the data the guest writes: the host checks the backing file.
const (
	guestDataOff = 4 << 20
	guestDataLen = 1 << 20
)

// Where TestGuestSupervisorAdopts writes (clear of TestGuestRecovery's 8 MiB
// on the plain LUN; at guestDataOff on the 16 MiB CHAP LUN).
const (
	adoptPlainOff = guestDataOff + 16<<20
	adoptLen      = 4 * guestDataLen
)

// guestEnv is what the guest tests get in BD_ENV (JSON).
type guestEnv struct {
	Fixture *tgtd.Fixture
	Seed    uint64
	Poke    string // host helper: "drop <tid>\n" drops the target's connections
	// XFSIQN is a 512 MiB target (mkfs.xfs 6.x refuses less than 300 MB);
	// only set for the volume lifecycle test.
	XFSIQN string
}

// addXFSTarget adds target tid 10 with one 512 MiB LUN.
func addXFSTarget(t *testing.T, srv *tgtd.Server) string {
	t.Helper()
	ctx := context.Background()
	iqn := tgtd.IQNPrefix + "xfs"
	path, err := tgtd.CreateBackingFile(srv.Dir(), 512<<20)
	require.NoError(t, err)
	require.NoError(t, srv.NewTarget(ctx, 10, iqn))
	require.NoError(t, srv.AddLUN(ctx, 10, 1, path, 512))
	require.NoError(t, srv.BindAddress(ctx, 10, "ALL"))
	return iqn
}

func startGuestTarget(t *testing.T, xfs bool) (*tgtd.Server, *tgtd.Fixture, map[string]string, uint64) {
	t.Helper()
	srv, fix := tgtd.StartFixture(t)
	xfsIQN := ""
	if xfs {
		xfsIQN = addXFSTarget(t, srv)
	}
	g := *fix
	g.Portal = net.JoinHostPort(vmtest.HostIP, strconv.Itoa(srv.Port()))
	seed := rand.Uint64()
	poke := net.JoinHostPort(vmtest.HostIP, strconv.Itoa(srv.ServeDrops(t)))
	b, err := json.Marshal(guestEnv{Fixture: &g, Seed: seed, Poke: poke, XFSIQN: xfsIQN})
	require.NoError(t, err)
	return srv, fix, map[string]string{"BD_ENV": string(b)}, seed
}

func checkBacking(t *testing.T, path string, off int64, want []byte) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	got := make([]byte, len(want))
	_, err = f.ReadAt(got, off)
	require.NoError(t, err)
	require.True(t, string(got) == string(want), "tgtd backing file %s at %d does not hold the bytes the guest wrote", path, off)
}

func TestKernelAttachDetach(t *testing.T) {
	_, fix, env, seed := startGuestTarget(t, false)
	res := vmtest.RunTestInGuest(t, ".", "^TestGuest(Attach|CHAP|Failures)$", env)
	require.NotNil(t, res)
	require.Equal(t, 0, res.ExitCode)
	for _, name := range []string{"TestGuestAttach", "TestGuestCHAP", "TestGuestFailures"} {
		assert.Contains(t, res.Output, "--- PASS: "+name)
	}
	checkBacking(t, fix.Plain.LUNs[0].Path, guestDataOff, vmtest.SeedData(seed, guestDataLen))
	checkBacking(t, fix.MultiLUN.LUNs[1].Path, guestDataOff, vmtest.SeedData(seed+1, guestDataLen))
}

func TestKernelRecovery(t *testing.T) {
	_, fix, env, seed := startGuestTarget(t, false)
	res := vmtest.RunTestInGuest(t, ".", "^TestGuest(Recovery|SupervisorAdopts)$", env)
	require.NotNil(t, res)
	require.Equal(t, 0, res.ExitCode)
	assert.Contains(t, res.Output, "--- PASS: TestGuestRecovery")
	assert.Contains(t, res.Output, "--- PASS: TestGuestSupervisorAdopts")
	checkBacking(t, fix.Plain.LUNs[0].Path, guestDataOff, vmtest.SeedData(seed+2, 8*guestDataLen))
	checkBacking(t, fix.Plain.LUNs[0].Path, adoptPlainOff, vmtest.SeedData(seed+3, adoptLen))
	checkBacking(t, fix.CHAP.LUNs[0].Path, guestDataOff, vmtest.SeedData(seed+4, adoptLen))
}

func TestKernelVolumeLifecycle(t *testing.T) {
	_, _, env, _ := startGuestTarget(t, true)
	res := vmtest.RunTestInGuestWith(t, ".", "^TestGuestVolume", vmtest.Config{
		Env:   env,
		Sets:  []vmtest.ModuleSet{vmtest.SetISCSI, vmtest.SetXFS},
		Files: vmtest.HostTools(t, "mkfs.ext4", "mkfs.xfs"),
	})
	require.NotNil(t, res)
	require.Equal(t, 0, res.ExitCode)
	assert.Contains(t, res.Output, "--- PASS: TestGuestVolumeLifecycle/ext4")
	assert.Contains(t, res.Output, "--- PASS: TestGuestVolumeLifecycle/xfs")
}
