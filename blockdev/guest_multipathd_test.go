//go:build vmguest

package blockdev_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gosan/iscsi/blockdev"
	"github.com/gosan/iscsi/blockdev/volume"
	"github.com/gosan/iscsi/internal/testenv/vmtest"
)

// startMultipathd runs Debian's multipathd in the guest (no udev: WWIDs
// from sysfs, device nodes made by libdevmapper) and stops it in cleanup.
// The guest has no udevd to turn the kernel's uevents into the ones
// multipathd listens to, so forwardPaths tells it about new paths, as
// udev's multipath rules would.
func startMultipathd(t *testing.T) *bytes.Buffer {
	t.Helper()
	var log bytes.Buffer
	cmd := exec.Command("multipathd", "-d", "-s", "-v3")
	cmd.Env = append(os.Environ(), "DM_DISABLE_UDEV=1")
	cmd.Stdout, cmd.Stderr = &log, &log
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("multipathd log:\n%s", lastLines(log.String(), 60))
		}
	})
	require.Eventually(t, func() bool {
		c, err := net.Dial("unix", "@/org/kernel/linux/storage/multipathd")
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 20*time.Second, 100*time.Millisecond, "multipathd never listened: %s", &log)
	return &log
}

func lastLines(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// forwardPaths plays udev for multipathd: every new sd device is handed to
// it with "add path" until ctx ends.
func forwardPaths(ctx context.Context, t *testing.T) {
	seen := map[string]bool{}
	go func() {
		for ctx.Err() == nil {
			ents, _ := os.ReadDir("/sys/block")
			for _, e := range ents {
				n := e.Name()
				if !strings.HasPrefix(n, "sd") || seen[n] {
					continue
				}
				if _, err := os.Stat("/dev/" + n); err != nil {
					continue
				}
				seen[n] = true
				out, err := exec.Command("multipathd", "add", "path", n).CombinedOutput()
				t.Logf("multipathd add path %s: %s %v", n, strings.TrimSpace(string(out)), err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
}

// TestGuestMultipathd: one volume over two portals with multipathd
// running: Stage waits for the map multipathd builds and mounts it, I/O
// goes on when one path's session is gone, Unstage flushes the map with
// multipath -f.
func TestGuestMultipathd(t *testing.T) {
	vmtest.RequireGuest(t)
	var e struct{ Portal, Portal2, IQN string }
	require.NoError(t, json.Unmarshal([]byte(os.Getenv("BD_MPATH")), &e), "BD_MPATH")
	k := blockdev.OpenKernel(t)
	ctx := blockdev.GuestCtx(t, 4*time.Minute)
	startMultipathd(t)
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	forwardPaths(fctx, t)

	// Under emulation, and with make test's other work beside it,
	// multipathd may take longer than kubelet's 10 s to add the second
	// path to its map.
	m, err := volume.NewManager(t.TempDir(), volume.KernelAttacher(k), volume.WithMultipathWait(time.Minute))
	require.NoError(t, err)
	v := volume.Volume{TargetPortal: e.Portal, Portals: []string{e.Portal2}, IQN: e.IQN, LUN: 1, FSType: "ext4"}
	st, err := m.Stage(ctx, v)
	require.NoError(t, err)
	require.Len(t, st.Devices, 2)
	require.True(t, st.Multipath, "no multipath map: staged %s", st.DevicePath)
	require.True(t, strings.HasPrefix(st.DevicePath, "/dev/dm-"), st.DevicePath)
	uuid, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(st.DevicePath), "dm", "uuid"))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(uuid), "mpath-"), "%s", uuid)
	slaves, err := os.ReadDir(filepath.Join("/sys/block", filepath.Base(st.DevicePath), "slaves"))
	require.NoError(t, err)
	assert.Len(t, slaves, 2, "the map holds both paths")
	mi, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	assert.Contains(t, string(mi), st.GlobalPath, "mounted")
	for _, d := range st.Devices {
		out, _ := exec.Command("dmsetup", "table").CombinedOutput()
		t.Logf("path %s of %s; dm tables: %s", d.Path, st.DevicePath, out)
	}
	write := func(name string) {
		t.Helper()
		p := filepath.Join(st.GlobalPath, name)
		f, err := os.Create(p)
		require.NoError(t, err)
		_, err = f.Write(bytes.Repeat([]byte(name), 64<<10))
		require.NoError(t, err)
		require.NoError(t, f.Sync(), "fsync through the map")
		require.NoError(t, f.Close())
	}
	write("both-paths")

	// One portal's session goes away (its path fails): I/O goes on
	// through the other.
	cut := st.Devices[1]
	require.NoError(t, k.LogoutSession(ctx, uint32(cut.SessionID)))
	write("one-path")
	dropCaches(t)
	b, err := os.ReadFile(filepath.Join(st.GlobalPath, "one-path"))
	require.NoError(t, err)
	assert.Equal(t, bytes.Repeat([]byte("one-path"), 64<<10), b)

	require.NoError(t, m.Unstage(ctx, st.GlobalPath))
	assert.NoFileExists(t, st.DevicePath, "multipath -f removed the map")
	blockdev.RequireNoSessions(t)
	fmt.Fprintln(os.Stderr, "multipathd scenario done")
}
