package driver

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gosan/iscsi/internal/testenv/tgtd"
	"github.com/gosan/iscsi/internal/testenv/vmtest"
)

// Host side of the guest tests: tgtd runs here with pools of LUNs; the
// plugin runs in the qemu guest (Debian's kernel, iscsi_tcp) and reaches
// tgtd at vmtest.HostIP.

// Pools the guest's test-only controller hands out.
const (
	tidPlain = 1
	tidCHAP  = 2
	tidGrow  = 3
	tidXFS   = 4
	tidMP    = 5
	// xfsSize: mkfs.xfs 6.x refuses filesystems under 300 MB.
	xfsSize  = 512 << 20
	poolLUNs = 3
	lunSize  = 32 << 20
	chapUser = "gosan-csi-user"
	chapPass = "gosan-csi-secret-0123"
)

// guestTarget is one pool target as the guest sees it.
type guestTarget struct {
	IQN  string
	LUNs []int
	// Backing files on the host (the harness checks data there).
	Paths map[int]string
}

// guestEnv is what the guest gets in CSI_ENV (JSON).
type guestEnv struct {
	Portal      string
	Plain, CHAP guestTarget
	// Grow is the harness's target: its one LUN is grown through Admin.
	Grow guestTarget
	// XFS: one 512 MiB LUN for the xfs expansion test, MP: one LUN
	// reached on both portals for the multipath test (TestHarness only).
	XFS, MP guestTarget
	// Portal2 is tgtd's second portal (TestHarness only).
	Portal2          string
	User, Secret     string
	Admin            string // host helper: "drop <tid>", "grow <tid> <lun> <bytes>"
	GrowSize         int64
	HostBackingCheck bool
}

func addPool(t *testing.T, srv *tgtd.Server, tid int, name string, luns int) guestTarget {
	t.Helper()
	return addPoolSized(t, srv, tid, name, luns, lunSize)
}

func addPoolSized(t *testing.T, srv *tgtd.Server, tid int, name string, luns int, size int64) guestTarget {
	t.Helper()
	ctx := context.Background()
	g := guestTarget{IQN: tgtd.IQNPrefix + name, Paths: map[int]string{}}
	require.NoError(t, srv.NewTarget(ctx, tid, g.IQN))
	for l := 1; l <= luns; l++ {
		p, err := tgtd.CreateBackingFile(srv.Dir(), size)
		require.NoError(t, err)
		require.NoError(t, srv.AddLUN(ctx, tid, l, p, 512))
		g.LUNs = append(g.LUNs, l)
		g.Paths[l] = p
	}
	require.NoError(t, srv.BindAddress(ctx, tid, "ALL"))
	return g
}

// startTargets starts tgtd with the plain, CHAP and grow pools and the
// admin helper, and returns the guest's environment.
func startTargets(t *testing.T, harness bool) (*tgtd.Server, guestEnv, map[string]string) {
	t.Helper()
	var srv *tgtd.Server
	if harness {
		srv = tgtd.Start(t, tgtd.WithPortals(2))
	} else {
		srv = tgtd.Start(t)
	}
	var ps []string
	for _, p := range srv.Portals() {
		_, port, err := net.SplitHostPort(p)
		require.NoError(t, err)
		ps = append(ps, net.JoinHostPort(vmtest.HostIP, port))
	}
	e := guestEnv{Portal: ps[0], User: chapUser, Secret: chapPass}
	e.Plain = addPool(t, srv, tidPlain, "csi-plain", poolLUNs)
	e.CHAP = addPool(t, srv, tidCHAP, "csi-chap", 2)
	e.Grow = addPool(t, srv, tidGrow, "csi-grow", 1)
	if harness {
		require.Len(t, ps, 2)
		e.Portal2 = ps[1]
		e.XFS = addPoolSized(t, srv, tidXFS, "csi-xfs", 1, xfsSize)
		e.MP = addPool(t, srv, tidMP, "csi-multipath", 1)
	}
	ctx := context.Background()
	require.NoError(t, srv.NewAccount(ctx, chapUser, chapPass))
	require.NoError(t, srv.BindAccount(ctx, tidCHAP, chapUser, false))
	require.NoError(t, srv.BindAccount(ctx, tidGrow, chapUser, false))
	e.GrowSize = 2 * lunSize
	e.Admin = net.JoinHostPort(vmtest.HostIP, strconv.Itoa(serveAdmin(t, srv, e)))
	b, err := json.Marshal(e)
	require.NoError(t, err)
	return srv, e, map[string]string{"CSI_ENV": string(b)}
}

// serveAdmin answers the guest's requests to act on the target: "drop
// <tid>" drops the target's connections, "grow <tid> <lun> <bytes>" grows
// the LUN's backing file and re-adds the LUN so tgtd reads the new size.
func serveAdmin(t *testing.T, srv *tgtd.Server, e guestEnv) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	paths := map[int]map[int]string{tidPlain: e.Plain.Paths, tidCHAP: e.CHAP.Paths, tidGrow: e.Grow.Paths, tidXFS: e.XFS.Paths, tidMP: e.MP.Paths}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
				line, err := bufio.NewReader(io.LimitReader(c, 128)).ReadString('\n')
				if err != nil {
					return
				}
				f := strings.Fields(line)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				reply := "error: bad request"
				switch {
				case len(f) == 2 && f[0] == "drop":
					tid, _ := strconv.Atoi(f[1])
					n, err := srv.DropConnections(ctx, tid)
					reply = fmt.Sprintf("ok %d", n)
					if err != nil {
						reply = "error: " + err.Error()
					}
				case len(f) == 4 && f[0] == "grow":
					tid, _ := strconv.Atoi(f[1])
					lun, _ := strconv.Atoi(f[2])
					size, _ := strconv.ParseInt(f[3], 10, 64)
					reply = "ok"
					if err := growLUN(ctx, srv, tid, lun, paths[tid][lun], size); err != nil {
						reply = "error: " + err.Error()
					}
				}
				fmt.Fprintln(c, reply)
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// growLUN grows a LUN: tgtd reads a backing file's size when the LUN is
// added, so the file is extended and the LUN deleted and added again (the
// session stays; the initiator sees the new capacity after a rescan).
func growLUN(ctx context.Context, srv *tgtd.Server, tid, lun int, path string, size int64) error {
	if path == "" {
		return fmt.Errorf("no LUN %d on target %d", lun, tid)
	}
	if err := os.Truncate(path, size); err != nil {
		return err
	}
	var err error
	for i := 0; i < 50; i++ { // tgtd refuses while commands are in flight
		if err = srv.DeleteLUN(ctx, tid, lun); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("delete LUN: %w", err)
	}
	return srv.AddLUN(ctx, tid, lun, path, 512)
}

// sanityCounts is the line the guest prints after the suite.
var sanityCounts = regexp.MustCompile(`csi-sanity (\w+): ran (\d+), passed (\d+), failed (\d+), skipped (\d+)`)

// TestSanity runs csi-sanity (github.com/kubernetes-csi/csi-test/v5,
// Identity and Node services) against the real plugin inside the qemu
// guest: real iscsi_tcp sessions to tgtd here, real mkfs and mounts, once
// without CHAP, once with CHAP through sanity's secrets file, and once
// with raw block volumes.
func TestSanity(t *testing.T) {
	_, _, env := startTargets(t, false)
	res := vmtest.RunTestInGuestWith(t, ".", "^TestGuestSanity$", vmtest.Config{
		Env:   env,
		Sets:  []vmtest.ModuleSet{vmtest.SetISCSI},
		Files: vmtest.HostTools(t, "mkfs.ext4", "resize2fs"),
		Args:  []string{"-test.timeout=12m"},
	})
	require.NotNil(t, res)
	require.Equal(t, 0, res.ExitCode)
	assert.Contains(t, res.Output, "--- PASS: TestGuestSanity")
	ms := sanityCounts.FindAllStringSubmatch(res.Output, -1)
	require.Len(t, ms, 3, "the guest printed the counts of the three configurations")
	for _, m := range ms {
		t.Logf("csi-sanity %s: ran %s, passed %s, failed %s, skipped %s", m[1], m[2], m[3], m[4], m[5])
		assert.Equal(t, "0", m[4], "failed specs")
		assert.Equal(t, m[2], m[3], "every spec that ran passed")
		assert.Equal(t, "0", m[5], "no node or identity spec skipped (every capability they test is advertised)")
		ran, _ := strconv.Atoi(m[2])
		assert.GreaterOrEqual(t, ran, 30, "csi-test v5.6.0 has 30 node and identity specs")
	}
	for _, l := range strings.Split(res.Output, "\n") {
		if strings.Contains(l, "csi-sanity skipped:") {
			t.Log(strings.TrimSpace(l))
		}
	}
}

// buildPlugin builds the plugin binary as the image does (static).
func buildPlugin(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "gosan-iscsi-csi")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-X main.version=harness", "-o", out, ".")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", b)
	return out
}

// debugfsCat reads a file out of an ext4 image without mounting it.
func debugfsCat(t *testing.T, image, path string) []byte {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat "+path, image).Output()
	require.NoError(t, err, "debugfs cat %s %s", image, path)
	return out
}

// TestHarness replays kubelet's calls and paths in the guest against the
// plugin binary (see TestGuestHarness): stage with CHAP, publish into two
// pods, write, kill and restart the plugin (it adopts the CHAP session),
// drop the connection on the target during writes (recovered), stats
// against statfs, grow the LUN here and expand online, unpublish,
// unstage, nothing left. The written files are then read back here from
// the target's backing file. In the same guest, TestGuestExpandXFS grows
// an xfs volume online, TestGuestStageErrors checks failed stages and
// TestGuestMultipath a volume on two portals under a dm-multipath map.
func TestHarness(t *testing.T) {
	_, e, env := startTargets(t, true)
	seed := rand.Uint64()
	env["CSI_SEED"] = strconv.FormatUint(seed, 10)
	files := vmtest.HostTools(t, "mkfs.ext4", "resize2fs", "mkfs.xfs", "xfs_growfs", "dmsetup")
	files["/usr/sbin/gosan-iscsi-csi"] = buildPlugin(t)
	res := vmtest.RunTestInGuestWith(t, ".", "^TestGuest(Harness|ExpandXFS|StageErrors|Multipath)$", vmtest.Config{
		Env: env, Sets: []vmtest.ModuleSet{vmtest.SetISCSI, vmtest.SetXFS, vmtest.SetMultipath}, Files: files, Args: []string{"-test.timeout=9m"},
	})
	require.NotNil(t, res)
	require.Equal(t, 0, res.ExitCode)
	assert.Contains(t, res.Output, "--- PASS: TestGuestHarness")
	assert.Contains(t, res.Output, "--- PASS: TestGuestExpandXFS")
	assert.Contains(t, res.Output, "--- PASS: TestGuestStageErrors")
	assert.Contains(t, res.Output, "--- PASS: TestGuestMultipath")
	for _, l := range strings.Split(res.Output, "\n") {
		if strings.Contains(l, "harness timings:") || strings.Contains(l, "xfs expand:") || strings.Contains(l, "multipath expand:") {
			t.Log(strings.TrimSpace(l))
		}
	}
	img := e.Grow.Paths[1]
	fi, err := os.Stat(img)
	require.NoError(t, err)
	assert.Equal(t, e.GrowSize, fi.Size())
	assert.Equal(t, vmtest.SeedData(seed, 1<<20), debugfsCat(t, img, "/first.bin"), "first.bin in the backing file")
	assert.Equal(t, vmtest.SeedData(seed+1, 8<<20), debugfsCat(t, img, "/second.bin"), "second.bin (written across the drop) in the backing file")
}
