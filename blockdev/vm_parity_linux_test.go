package blockdev

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gosan/iscsi/internal/testenv/tgtd"
	"github.com/gosan/iscsi/internal/testenv/vmtest"
)

// Host side of guest_parity_test.go: the volume layer where it does what
// kubelet's iscsi plugin does (docs/kubelet.md), on real iSCSI disks.

// parityEnv is what the parity guest tests get in BD_PARITY (JSON).
type parityEnv struct {
	Portal string // the fixture's tgtd, as the guest sees it
	// EightIQN has LUNs 1..8 of 64 MiB (parallel stage).
	EightIQN string
	// NamesIQN admits NameA and NameB (LUN 1 for A, LUN 2 for B);
	// OnlyAIQN admits NameA only.
	NamesIQN, OnlyAIQN, NameA, NameB string
	// BigIQN: one 512 MiB LUN (btrfs wants more than 114 MiB).
	BigIQN string
	// FsckIQN: LUN 1 ext4 with an error fsck -a repairs, LUN 2 one it cannot.
	FsckIQN string
	// KubeletIQN: LUN 1 staged the way kubelet's in-tree plugin does.
	KubeletIQN string
	// DiscPortal is a second tgtd whose discovery needs CHAP (DiscUser,
	// DiscSecret); DiscIQN is its open target.
	DiscPortal, DiscIQN, DiscUser, DiscSecret string
}

// Target ids of the parity targets (clear of the fixture's 1..6 and 10).
const (
	tidEight   = 11
	tidNames   = 12
	tidOnlyA   = 13
	tidBig     = 14
	tidFsck    = 15
	tidKubelet = 16
)

// damagedExt4 makes an ext4 image in dir with one file, damaged: with
// repairable a wrong link count (fsck -a fixes it), otherwise a cleared
// root inode (fsck -a exits 4).
func damagedExt4(t *testing.T, dir string, repairable bool) string {
	t.Helper()
	p, err := tgtd.CreateBackingFile(dir, 64<<20)
	require.NoError(t, err)
	run := func(name string, args ...string) {
		out, err := exec.Command(name, args...).CombinedOutput()
		require.NoError(t, err, "%s %v: %s", name, args, out)
	}
	run("mkfs.ext4", "-q", "-F", p)
	run("debugfs", "-w", "-R", "write /etc/hostname f", p)
	if repairable {
		run("debugfs", "-w", "-R", "sif f links_count 5", p)
	} else {
		run("debugfs", "-w", "-R", "clri <2>", p)
	}
	run("debugfs", "-w", "-R", "ssv state 0", p)
	return p
}

// addParityTargets adds the parity targets to srv; it also returns the
// backing file of the repairable fsck LUN.
func addParityTargets(t *testing.T, srv *tgtd.Server) (parityEnv, string) {
	t.Helper()
	ctx := context.Background()
	dir := srv.Dir()
	e := parityEnv{
		EightIQN: tgtd.IQNPrefix + "eight", NamesIQN: tgtd.IQNPrefix + "names", OnlyAIQN: tgtd.IQNPrefix + "only-a",
		NameA: tgtd.IQNPrefix + "initiator-a", NameB: tgtd.IQNPrefix + "initiator-b",
		BigIQN: tgtd.IQNPrefix + "big", FsckIQN: tgtd.IQNPrefix + "fsck", KubeletIQN: tgtd.IQNPrefix + "kubelet",
	}
	lun := func(tid, n int, size int64) {
		p, err := tgtd.CreateBackingFile(dir, size)
		require.NoError(t, err)
		require.NoError(t, srv.AddLUN(ctx, tid, n, p, 512))
	}
	target := func(tid int, iqn string) {
		require.NoError(t, srv.NewTarget(ctx, tid, iqn))
	}
	target(tidEight, e.EightIQN)
	for n := 1; n <= 8; n++ {
		lun(tidEight, n, 64<<20)
	}
	require.NoError(t, srv.BindAddress(ctx, tidEight, "ALL"))
	target(tidNames, e.NamesIQN)
	lun(tidNames, 1, 16<<20)
	lun(tidNames, 2, 16<<20)
	require.NoError(t, srv.BindInitiatorName(ctx, tidNames, e.NameA))
	require.NoError(t, srv.BindInitiatorName(ctx, tidNames, e.NameB))
	target(tidOnlyA, e.OnlyAIQN)
	lun(tidOnlyA, 1, 16<<20)
	lun(tidOnlyA, 2, 16<<20)
	require.NoError(t, srv.BindInitiatorName(ctx, tidOnlyA, e.NameA))
	target(tidBig, e.BigIQN)
	lun(tidBig, 1, 512<<20)
	require.NoError(t, srv.BindAddress(ctx, tidBig, "ALL"))
	target(tidFsck, e.FsckIQN)
	repairable := damagedExt4(t, dir, true)
	require.NoError(t, srv.AddLUN(ctx, tidFsck, 1, repairable, 512))
	require.NoError(t, srv.AddLUN(ctx, tidFsck, 2, damagedExt4(t, dir, false), 512))
	require.NoError(t, srv.BindAddress(ctx, tidFsck, "ALL"))
	target(tidKubelet, e.KubeletIQN)
	lun(tidKubelet, 1, 16<<20)
	require.NoError(t, srv.BindAddress(ctx, tidKubelet, "ALL"))
	return e, repairable
}

// TestKernelKubeletParity runs, in one guest boot, the volume layer's
// kubelet-parity scenarios on real iSCSI disks: a two-portal volume on the
// map Debian's multipathd builds (TestGuestMultipathd); eight LUNs of one
// target staged in parallel (timed), initiator names under a tgtd ACL,
// discovery CHAP with and without the right secret, btrfs, fsck before
// mounting, and unstaging a volume staged with kubelet's paths and
// iscsi.json (TestGuestKubeletParity).
func TestKernelKubeletParity(t *testing.T) {
	srv, fix := tgtd.StartFixture(t, tgtd.WithPortals(2))
	e, repairable := addParityTargets(t, srv)
	ps := guestPortals(t, srv)
	e.Portal = ps[0]
	mp, err := json.Marshal(map[string]string{"Portal": ps[0], "Portal2": ps[1], "IQN": fix.Plain.IQN})
	require.NoError(t, err)

	disc, dfix := tgtd.StartFixture(t)
	ctx := context.Background()
	e.DiscUser, e.DiscSecret = "discovery", fmt.Sprintf("disc%012d", rand.Uint64()%1e12)
	require.NoError(t, disc.NewAccount(ctx, e.DiscUser, e.DiscSecret))
	// An account bound without a tid is tgtd's discovery account.
	_, err = disc.Admin(ctx, "--mode", "account", "--op", "bind", "--user", e.DiscUser)
	require.NoError(t, err)
	e.DiscPortal = net.JoinHostPort(vmtest.HostIP, strconv.Itoa(disc.Port()))
	e.DiscIQN = dfix.Plain.IQN

	b, err := json.Marshal(e)
	require.NoError(t, err)
	files := vmtest.HostTools(t, "mkfs.ext4", "mkfs.btrfs", "blkid", "fsck", "fsck.ext4",
		"multipathd", "multipath", "dmsetup")
	multipathdFiles(t, files)
	res := vmtest.RunTestInGuestWith(t, ".", "^TestGuest(KubeletParity|Multipathd)$", vmtest.Config{
		Env:   map[string]string{"BD_PARITY": string(b), "BD_MPATH": string(mp)},
		Sets:  []vmtest.ModuleSet{vmtest.SetISCSI, vmtest.SetBtrfs, vmtest.SetMultipath},
		Files: files,
		Args:  []string{"-test.timeout=8m"},
	})
	require.NotNil(t, res)
	require.Equal(t, 0, res.ExitCode)
	for _, name := range []string{"eight-luns-parallel", "initiator-names", "discovery-chap", "btrfs", "fsck", "kubelet-staged"} {
		assert.Contains(t, res.Output, "--- PASS: TestGuestKubeletParity/"+name)
	}
	assert.Contains(t, res.Output, "--- PASS: TestGuestMultipathd")
	// The repair reached the LUN: its backing file is clean now.
	out, err := exec.Command("e2fsck", "-n", repairable).CombinedOutput()
	require.NoError(t, err, "LUN not repaired: %s", out)
}

// multipathdConf is the guest's /etc/multipath.conf: no udev there, so
// WWIDs come from sysfs (uid_attribute ""), at once (retrigger_tries 0),
// and every path makes a map (find_multipaths greedy).
const multipathdConf = `defaults {
	user_friendly_names no
	find_multipaths greedy
	uid_attribute ""
	retrigger_tries 0
	enable_foreign "^$"
}
`

// multipathdFiles adds what Debian's multipathd loads at run time (its
// checker and prioritizer plugins, not in ldd's list) and its
// configuration to a guest's files.
func multipathdFiles(t *testing.T, files map[string]string) {
	t.Helper()
	plugins, err := filepath.Glob("/lib/multipath/lib*.so")
	require.NoError(t, err)
	require.NotEmpty(t, plugins, "multipath-tools plugins missing (scripts/deps.sh installs multipath-tools)")
	for _, p := range plugins {
		if strings.Contains(p, "foreign") {
			continue
		}
		files[p] = p
	}
	// glibc loads libgcc_s for pthread_cancel, which multipathd uses.
	libgcc, err := filepath.EvalSymlinks("/lib/x86_64-linux-gnu/libgcc_s.so.1")
	require.NoError(t, err)
	files["/lib/x86_64-linux-gnu/libgcc_s.so.1"] = libgcc
	conf := filepath.Join(t.TempDir(), "multipath.conf")
	require.NoError(t, os.WriteFile(conf, []byte(multipathdConf), 0o644))
	files["/etc/multipath.conf"] = conf
}
