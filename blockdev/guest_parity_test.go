//go:build vmguest

package blockdev_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/gosan/iscsi/blockdev"
	"github.com/gosan/iscsi/blockdev/volume"
	"github.com/gosan/iscsi/internal/testenv/vmtest"
)

// parityEnv mirrors the host's (vm_parity_linux_test.go).
type parityEnv struct {
	Portal, EightIQN, NamesIQN, OnlyAIQN, NameA, NameB, BigIQN, FsckIQN, KubeletIQN string
	DiscPortal, DiscIQN, DiscUser, DiscSecret                                       string
}

// TestGuestKubeletParity: guest side of TestKernelKubeletParity.
func TestGuestKubeletParity(t *testing.T) {
	vmtest.RequireGuest(t)
	var e parityEnv
	require.NoError(t, json.Unmarshal([]byte(os.Getenv("BD_PARITY")), &e), "BD_PARITY")
	k := blockdev.OpenKernel(t)
	ctx := blockdev.GuestCtx(t, 6*time.Minute)
	root := t.TempDir()
	m, err := volume.NewManager(root, volume.KernelAttacher(k))
	require.NoError(t, err)
	vol := func(iqn string, lun int32, fs string) volume.Volume {
		return volume.Volume{TargetPortal: e.Portal, IQN: iqn, LUN: lun, FSType: fs}
	}

	t.Run("eight-luns-parallel", func(t *testing.T) {
		w := watchSessions(e.EightIQN)
		var wg sync.WaitGroup
		res := make([]*volume.StageResult, 8)
		errs := make([]error, 8)
		start := time.Now()
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res[i], errs[i] = m.Stage(ctx, vol(e.EightIQN, int32(i+1), "ext4"))
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		for i, err := range errs {
			require.NoError(t, err, "LUN %d", i+1)
			assert.True(t, res[i].Formatted)
		}
		t.Logf("PARITY: 8 LUNs of one target staged in parallel (mkfs.ext4 + mount each) in %v", elapsed.Round(time.Millisecond))
		assert.Equal(t, 1, w.Stop(), "one session for the eight LUNs")
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = m.Unstage(ctx, res[i].GlobalPath)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			require.NoError(t, err)
		}
		blockdev.RequireNoSessions(t)
	})

	t.Run("initiator-names", func(t *testing.T) {
		a, b := vol(e.NamesIQN, 1, "ext4"), vol(e.NamesIQN, 2, "ext4")
		a.InitiatorName, b.InitiatorName = e.NameA, e.NameB
		ra, err := m.Stage(ctx, a)
		require.NoError(t, err)
		rb, err := m.Stage(ctx, b)
		require.NoError(t, err)
		sess := blockdev.SessionsFor(t, e.NamesIQN)
		require.Len(t, sess, 2, "one session per initiator name")
		names := map[string]uint32{}
		for _, s := range sess {
			names[s.InitiatorName] = s.SID
		}
		require.Contains(t, names, e.NameA)
		require.Contains(t, names, e.NameB)
		// (each new session's ISID comes from its kernel session id)
		assert.Equal(t, int(names[e.NameA]), ra.Devices[0].SessionID, "LUN 1 on A's session")
		assert.Equal(t, int(names[e.NameB]), rb.Devices[0].SessionID, "LUN 2 on B's session")

		// A target that admits only A: B never gets in through A's session.
		onlyA := vol(e.OnlyAIQN, 1, "ext4")
		onlyA.InitiatorName = e.NameA
		r1, err := m.Stage(ctx, onlyA)
		require.NoError(t, err)
		asB := vol(e.OnlyAIQN, 2, "ext4")
		asB.InitiatorName = e.NameB
		_, err = m.Stage(ctx, asB)
		require.Error(t, err, "LUN 2 reached as %s through %s's session", e.NameB, e.NameA)
		for _, s := range blockdev.SessionsFor(t, e.OnlyAIQN) {
			assert.Equal(t, e.NameA, s.InitiatorName)
		}
		gB, _ := m.GlobalPath(asB)
		require.NoError(t, m.Unstage(ctx, gB))
		for _, g := range []string{ra.GlobalPath, rb.GlobalPath, r1.GlobalPath} {
			require.NoError(t, m.Unstage(ctx, g))
		}
		blockdev.RequireNoSessions(t)
	})

	t.Run("discovery-chap", func(t *testing.T) {
		v := volume.Volume{TargetPortal: e.DiscPortal, IQN: e.DiscIQN, LUN: 1, FSType: "ext4", DiscoveryCHAPAuth: true,
			Secrets: volume.Secrets{volume.SecretDiscoveryUser: e.DiscUser, volume.SecretDiscoveryPassword: e.DiscSecret}}
		r, err := m.Stage(ctx, v)
		require.NoError(t, err, "discovery with the right secret")
		assert.Empty(t, r.Failed)
		require.NoError(t, m.Unstage(ctx, r.GlobalPath))

		v.Secrets[volume.SecretDiscoveryPassword] = "not-the-secret"
		_, err = m.Stage(ctx, v)
		require.Error(t, err, "discovery with the wrong secret")
		assert.Empty(t, blockdev.SessionsFor(t, e.DiscIQN), "logged in although discovery failed")
		v.DiscoveryCHAPAuth = false
		_, err = m.Stage(ctx, v)
		require.Error(t, err, "discovery without CHAP")
		g, _ := m.GlobalPath(v)
		require.NoError(t, m.Unstage(ctx, g))
		blockdev.RequireNoSessions(t)
	})

	t.Run("btrfs", func(t *testing.T) {
		v := vol(e.BigIQN, 1, "btrfs")
		r, err := m.Stage(ctx, v)
		require.NoError(t, err)
		assert.True(t, r.Formatted)
		assert.Equal(t, "btrfs", r.FSType)
		require.NoError(t, os.WriteFile(filepath.Join(r.GlobalPath, "b.txt"), []byte("btrfs"), 0o644))
		_, err = m.Stage(ctx, v) // staged again while mounted: the mount is recognised
		require.NoError(t, err)
		require.NoError(t, m.Unstage(ctx, r.GlobalPath))
		r, err = m.Stage(ctx, v)
		require.NoError(t, err)
		assert.False(t, r.Formatted)
		b, err := os.ReadFile(filepath.Join(r.GlobalPath, "b.txt"))
		require.NoError(t, err)
		assert.Equal(t, "btrfs", string(b))
		require.NoError(t, m.Unstage(ctx, r.GlobalPath))
		blockdev.RequireNoSessions(t)
	})

	t.Run("fsck", func(t *testing.T) {
		r, err := m.Stage(ctx, vol(e.FsckIQN, 1, "ext4"))
		require.NoError(t, err, "an error fsck -a repairs")
		assert.False(t, r.Formatted)
		_, err = os.Stat(filepath.Join(r.GlobalPath, "f"))
		require.NoError(t, err)
		require.NoError(t, m.Unstage(ctx, r.GlobalPath))

		v := vol(e.FsckIQN, 2, "ext4")
		_, err = m.Stage(ctx, v)
		require.ErrorIs(t, err, volume.ErrFilesystemErrors, "an error fsck -a cannot repair")
		g, _ := m.GlobalPath(v)
		require.NoError(t, m.Unstage(ctx, g))
		blockdev.RequireNoSessions(t)
	})

	t.Run("kubelet-staged", func(t *testing.T) {
		// What kubelet's AttachDisk and MountDevice leave: a session, the
		// device formatted and mounted at iface-default/..., iscsi.json
		// under the mount.
		d, err := k.Attach(ctx, blockdev.Spec{Portal: e.Portal, TargetName: e.KubeletIQN, LUN: 1})
		require.NoError(t, err)
		out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", d.Path).CombinedOutput()
		require.NoError(t, err, "%s", out)
		dir := filepath.Join(root, "iscsi", "iface-default", fmt.Sprintf("%s-%s-lun-1", e.Portal, e.KubeletIQN))
		require.NoError(t, os.MkdirAll(dir, 0o750))
		rec := fmt.Sprintf(`{"VolName":"pv-kubelet","Portals":[%q],"Iqn":%q,"Lun":"1","InitIface":"default","Iface":"default","InitiatorName":""}`,
			e.Portal, e.KubeletIQN)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "iscsi.json"), []byte(rec+"\n"), 0o640))
		require.NoError(t, unix.Mount(d.Path, dir, "ext4", 0, ""))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "data"), []byte("kubelet"), 0o644))

		require.NoError(t, m.Unstage(ctx, dir))
		assert.NoDirExists(t, dir)
		assert.NoFileExists(t, d.Path)
		assert.Empty(t, blockdev.SessionsFor(t, e.KubeletIQN))
		blockdev.RequireNoSessions(t)
	})
}
