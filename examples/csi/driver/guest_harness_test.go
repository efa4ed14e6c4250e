//go:build vmguest

package driver

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/gosan/iscsi/blockdev"
	"github.com/gosan/iscsi/blockdev/volume"
	"github.com/gosan/iscsi/internal/testenv/vmtest"
)

// The kubelet-less harness: kubelet's calls and paths, replayed against
// the plugin binary (the one the image ships) run as a process of its
// own, which is killed and started again half-way.

// Kubelet's layout (pkg/volume/csi): the staging path is
// <root>/plugins/kubernetes.io/csi/<driver>/<sha256(volume handle)>/globalmount,
// a pod's path <root>/pods/<uid>/volumes/kubernetes.io~csi/<pv>/mount.
const (
	kubeletRoot   = "/var/lib/kubelet"
	pluginBinary  = "/usr/sbin/gosan-iscsi-csi"
	harnessPV     = "pv-harness"
	harnessHandle = "iscsi-harness-volume"
)

func stagingPathFor(driverName, handle string) string {
	sum := sha256.Sum256([]byte(handle))
	return filepath.Join(kubeletRoot, "plugins", "kubernetes.io", "csi", driverName, hex.EncodeToString(sum[:]), "globalmount")
}

func podPath(uid, pv string) string {
	return filepath.Join(kubeletRoot, "pods", uid, "volumes", "kubernetes.io~csi", pv, "mount")
}

// pluginProc is one run of the plugin binary.
type pluginProc struct {
	cmd  *exec.Cmd
	log  string
	conn *grpc.ClientConn
}

func startPluginProc(t *testing.T, sock, logFile string) *pluginProc {
	t.Helper()
	lf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	require.NoError(t, err)
	defer lf.Close()
	cmd := exec.Command(pluginBinary, "-endpoint", "unix://"+sock, "-node-id", "harness-node",
		"-state-dir", "/var/lib/gosan-iscsi-csi", "-run-dir", "/run/gosan-iscsi-csi",
		"-initiator-name", "iqn.2026-11.org.gosan.test:harness", "-metrics-address", "127.0.0.1:9808")
	cmd.Stdout, cmd.Stderr = lf, lf
	require.NoError(t, cmd.Start())
	p := &pluginProc{cmd: cmd, log: logFile}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		require.True(t, time.Now().Before(deadline), "the plugin did not listen on %s:\n%s", sock, readFile(logFile))
		time.Sleep(20 * time.Millisecond)
	}
	p.conn, err = grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	return p
}

// kill ends the process with SIGKILL, as a crashed or evicted pod.
func (p *pluginProc) kill() {
	p.conn.Close()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// waitLog waits until the plugin's log has a line containing s.
func waitLog(t *testing.T, file, s string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(readFile(file), s) {
		require.True(t, time.Now().Before(deadline), "no %q in the plugin log within %v:\n%s", s, d, readFile(file))
		time.Sleep(50 * time.Millisecond)
	}
}

// admin sends one request to the host helper.
func admin(t *testing.T, addr, req string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	_, err = fmt.Fprintln(c, req)
	require.NoError(t, err)
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "ok"), "host helper %q: %s", req, line)
}

// writeSynced writes data to p in 256 KiB chunks, each fsync'd, counting
// the bytes on disk in progress.
func writeSynced(p string, data []byte, progress *atomic.Int64) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	for off := 0; off < len(data); off += 256 << 10 {
		end := min(off+256<<10, len(data))
		if _, err := f.Write(data[off:end]); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		if progress != nil {
			progress.Store(int64(end))
		}
	}
	return nil
}

// globalMountOf returns the plugin's global mount of the device that is
// bound at a pod path.
func globalMountOf(t *testing.T, podPath string) volume.MountInfo {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	require.NoError(t, err)
	defer f.Close()
	mi, err := volume.ParseMountInfo(f)
	require.NoError(t, err)
	var src string
	for _, m := range mi {
		if m.MountPoint == podPath {
			src = m.Source
		}
	}
	require.NotEmpty(t, src, "nothing mounted at %s", podPath)
	for _, m := range mi {
		if m.Source == src && m.Root == "/" && strings.HasPrefix(m.MountPoint, "/var/lib/gosan-iscsi-csi/") {
			return m
		}
	}
	t.Fatalf("no global mount of %s", src)
	return volume.MountInfo{}
}

// requireHealth checks that NodeGetVolumeHealth reports reason.
func requireHealth(t *testing.T, node csi.NodeClient, want csi.VolumeHealthErrorType, reason string) {
	t.Helper()
	h, err := node.NodeGetVolumeHealth(context.Background(), &csi.NodeGetVolumeHealthRequest{VolumeId: harnessHandle})
	require.NoError(t, err)
	for _, st := range h.GetVolumeHealth().GetHealthStatuses() {
		if st.GetReason() == reason {
			assert.Equal(t, want, st.GetStatus(), reason)
			t.Logf("health: %s %s: %s", st.GetStatus(), reason, st.GetMessage())
			return
		}
	}
	t.Fatalf("health does not report %s: %v", reason, h.GetVolumeHealth().GetHealthStatuses())
}

func scrape(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://127.0.0.1:9808/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

func TestGuestHarness(t *testing.T) {
	e := loadGuestEnv(t)
	seed, err := strconv.ParseUint(os.Getenv("CSI_SEED"), 10, 64)
	require.NoError(t, err)
	dir := t.TempDir()
	sock := filepath.Join(dir, "csi.sock")
	logFile := filepath.Join(dir, "plugin.log")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	timings := map[string]time.Duration{}
	timed := func(name string, f func()) {
		start := time.Now()
		f()
		timings[name] = time.Since(start)
	}

	a := startPluginProc(t, sock, logFile)
	defer func() {
		if t.Failed() {
			t.Logf("plugin log:\n%s", readFile(logFile))
		}
	}()
	staging := stagingPathFor(DefaultName, harnessHandle)
	pods := []string{podPath("11111111-aaaa", harnessPV), podPath("22222222-bbbb", harnessPV)}
	// kubelet creates the parent of the staging path and of the pod paths.
	require.NoError(t, os.MkdirAll(filepath.Dir(staging), 0o750))
	for _, p := range pods {
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o750))
	}
	mountCap := &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER},
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4", MountFlags: []string{"noatime"}}}}
	vc := map[string]string{"targetPortal": e.Portal, "iqn": e.Grow.IQN, "lun": "1", "chapAuthSession": "true"}
	secrets := map[string]string{"node.session.auth.username": e.User, "node.session.auth.password": e.Secret}
	stageReq := &csi.NodeStageVolumeRequest{VolumeId: harnessHandle, StagingTargetPath: staging, VolumeCapability: mountCap,
		VolumeContext: vc, Secrets: secrets}

	node := csi.NewNodeClient(a.conn)
	timed("stage", func() {
		_, err = node.NodeStageVolume(ctx, stageReq)
	})
	require.NoError(t, err)
	// kubelet stages again for the second pod: a no-op.
	_, err = node.NodeStageVolume(ctx, stageReq)
	require.NoError(t, err)
	// The second pod has an fsGroup (volume_mount_group, fsGroupPolicy File).
	groupCap := proto.Clone(mountCap).(*csi.VolumeCapability)
	groupCap.GetMount().VolumeMountGroup = "4321"
	timed("publish", func() {
		for i, p := range pods {
			c := mountCap
			if i == 1 {
				c = groupCap
			}
			_, err = node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: harnessHandle, StagingTargetPath: staging,
				TargetPath: p, VolumeCapability: c, VolumeContext: vc})
			require.NoError(t, err)
		}
	})
	var root unix.Stat_t
	require.NoError(t, unix.Stat(pods[1], &root))
	assert.Equal(t, uint32(4321), root.Gid, "volume_mount_group applied as kubelet's fsGroup")
	assert.NotZero(t, root.Mode&unix.S_ISGID, "setgid on the volume's directories")
	first := vmtest.SeedData(seed, 1<<20)
	require.NoError(t, writeSynced(filepath.Join(pods[0], "first.bin"), first, nil))
	got, err := os.ReadFile(filepath.Join(pods[1], "first.bin"))
	require.NoError(t, err)
	require.Equal(t, first, got, "both pods see one filesystem")

	// The plugin process dies and comes back: it adopts the CHAP
	// session with the credentials kept on tmpfs.
	a.kill()
	timed("restart", func() {
		a = startPluginProc(t, sock, logFile)
		waitLog(t, logFile, "supervising a session found in sysfs", 30*time.Second)
	})
	node = csi.NewNodeClient(a.conn)
	assert.NotContains(t, readFile(logFile), "session not supervised", "the CHAP session was adopted")

	// tgtd drops the connection while a pod writes; the new plugin
	// process recovers the session and the writes complete.
	second := vmtest.SeedData(seed+1, 8<<20)
	werr := make(chan error, 1)
	var progress atomic.Int64
	go func() { werr <- writeSynced(filepath.Join(pods[1], "second.bin"), second, &progress) }()
	for progress.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	dropped := time.Now()
	admin(t, e.Admin, fmt.Sprintf("drop %d", tidGrow))
	atDrop := progress.Load()
	require.Less(t, atDrop, int64(len(second)), "the writes were still running when the connection dropped")
	// Until the supervisor says it recovered the session, poll the
	// volume's health as the external health monitor would.
	sawFailed := ""
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(readFile(logFile), "blockdev: session recovered") {
		require.True(t, time.Now().Before(deadline), "no recovery within 2m:\n%s", readFile(logFile))
		if h, err := node.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: harnessHandle}); err == nil {
			for _, st := range h.GetVolumeHealth().GetHealthStatuses() {
				if st.GetReason() == reasonSessionFailed && st.GetStatus() == csi.VolumeHealthErrorType_INACCESSIBLE {
					sawFailed = st.GetMessage()
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	timings["recovery"] = time.Since(dropped)
	require.NotEmpty(t, sawFailed, "NodeGetVolumeHealth reported the session failed while it was recovering")
	t.Logf("health while recovering: %s", sawFailed)
	require.NoError(t, <-werr)
	t.Logf("connection dropped after %d of %d bytes were on disk", atDrop, len(second))
	m := scrape(t)
	assert.Contains(t, m, "gosan_iscsi_reconnects_total 1")
	assert.Contains(t, m, `gosan_iscsi_session_up{iface="default"`)
	assert.Regexp(t, `gosan_iscsi_conn_tx_bytes_total\{portal="[^"]+",sid="\d+",target="`+regexp.QuoteMeta(e.Grow.IQN)+`"\} [1-9]`, m,
		"the kernel's connection counters (GET_STATS) of the session")

	// NodeGetVolumeStats against statfs.
	stats, err := node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: harnessHandle, VolumePath: pods[0]})
	require.NoError(t, err)
	var sfs unix.Statfs_t
	require.NoError(t, unix.Statfs(pods[0], &sfs))
	for _, u := range stats.GetUsage() {
		switch u.GetUnit() {
		case csi.VolumeUsage_BYTES:
			assert.Equal(t, int64(sfs.Blocks)*int64(sfs.Bsize), u.GetTotal())
			assert.InDelta(t, int64(sfs.Bavail)*int64(sfs.Bsize), u.GetAvailable(), float64(1<<20))
		case csi.VolumeUsage_INODES:
			assert.Equal(t, int64(sfs.Files), u.GetTotal())
		}
	}
	health, err := node.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: harnessHandle})
	require.NoError(t, err)
	assert.Empty(t, health.GetVolumeHealth().GetHealthStatuses(), "healthy after the recovery")

	// The LUN grows on the target; NodeExpandVolume grows ext4 online.
	before := int64(sfs.Blocks) * int64(sfs.Bsize)
	admin(t, e.Admin, fmt.Sprintf("grow %d 1 %d", tidGrow, e.GrowSize))
	var exp *csi.NodeExpandVolumeResponse
	timed("expand", func() {
		exp, err = node.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: harnessHandle, VolumePath: pods[0],
			CapacityRange: &csi.CapacityRange{RequiredBytes: e.GrowSize}, VolumeCapability: mountCap})
	})
	require.NoError(t, err)
	assert.Equal(t, e.GrowSize, exp.GetCapacityBytes())
	require.NoError(t, unix.Statfs(pods[0], &sfs))
	after := int64(sfs.Blocks) * int64(sfs.Bsize)
	assert.Greater(t, after, before+(e.GrowSize-lunSize)/2, "the filesystem grew (%d -> %d bytes)", before, after)
	got, err = os.ReadFile(filepath.Join(pods[0], "second.bin"))
	require.NoError(t, err)
	require.Equal(t, second, got)

	// The mount options reached the global mount; health notices an
	// offline device and a filesystem remounted read-only.
	global := globalMountOf(t, pods[0])
	assert.True(t, hasOpt(global.Options, "noatime"), "mount flags from the capability: %s", global.Options)
	stateFile := filepath.Join("/sys/block", filepath.Base(global.Source), "device", "state")
	require.NoError(t, os.WriteFile(stateFile, []byte("offline\n"), 0o200))
	requireHealth(t, node, csi.VolumeHealthErrorType_INACCESSIBLE, reasonDeviceOffline)
	require.NoError(t, os.WriteFile(stateFile, []byte("running\n"), 0o200))
	require.NoError(t, unix.Mount("", global.MountPoint, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""))
	requireHealth(t, node, csi.VolumeHealthErrorType_DEGRADED, reasonReadOnlyFS)
	require.NoError(t, unix.Mount("", global.MountPoint, "", unix.MS_REMOUNT, ""))
	health, err = node.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: harnessHandle})
	require.NoError(t, err)
	assert.Empty(t, health.GetVolumeHealth().GetHealthStatuses(), "healthy again")

	// Unpublish both pods, unstage: nothing left.
	for _, p := range pods {
		_, err = node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: harnessHandle, TargetPath: p})
		require.NoError(t, err)
		_, err = os.Stat(p)
		assert.True(t, os.IsNotExist(err), "unpublish removes %s", p)
	}
	timed("unstage", func() {
		_, err = node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: harnessHandle, StagingTargetPath: staging})
	})
	require.NoError(t, err)
	a.kill()
	ss, err := blockdev.Sysfs{}.Sessions()
	require.NoError(t, err)
	assert.Empty(t, ss, "no session left")
	mi := readFile("/proc/self/mountinfo")
	assert.NotContains(t, mi, kubeletRoot)
	assert.NotContains(t, mi, "/var/lib/gosan-iscsi-csi")
	ents, err := os.ReadDir("/run/gosan-iscsi-csi")
	require.NoError(t, err)
	assert.Empty(t, ents, "CHAP credentials removed at unstage")
	assert.NotContains(t, readFile(logFile), e.Secret, "the secret never reaches the log")
	fmt.Printf("harness timings: stage %v, publish (2 pods) %v, restart and adopt %v, recovery after the drop %v, expand %v, unstage %v\n",
		timings["stage"].Round(time.Millisecond), timings["publish"].Round(time.Millisecond), timings["restart"].Round(time.Millisecond),
		timings["recovery"].Round(time.Millisecond), timings["expand"].Round(time.Millisecond), timings["unstage"].Round(time.Millisecond))
}

// TestGuestExpandXFS: an xfs volume grows online (xfs_growfs on the
// mount) after its LUN grew on the target; block-layer size and statfs
// show it. The plugin runs in-process here (TestGuestHarness ran the
// binary).
func TestGuestExpandXFS(t *testing.T) {
	e := loadGuestEnv(t)
	dir, p, ctx := inProcessPlugin(t)
	n := p.d.Node()
	staging := filepath.Join(dir, "globalmount")
	target := filepath.Join(dir, "pod", "mount")
	c := &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "xfs"}}}
	vc := map[string]string{"targetPortal": e.Portal, "iqn": e.XFS.IQN, "lun": "1"}
	_, err := n.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: "xfs-vol", StagingTargetPath: staging, VolumeCapability: c, VolumeContext: vc})
	require.NoError(t, err)
	_, err = n.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: "xfs-vol", StagingTargetPath: staging, TargetPath: target,
		VolumeCapability: c, VolumeContext: vc})
	require.NoError(t, err)
	var before, after unix.Statfs_t
	require.NoError(t, unix.Statfs(target, &before))
	admin(t, e.Admin, fmt.Sprintf("grow %d 1 %d", tidXFS, 2*xfsSize))
	start := time.Now()
	exp, err := n.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: "xfs-vol", VolumePath: target,
		CapacityRange: &csi.CapacityRange{RequiredBytes: 2 * xfsSize}})
	require.NoError(t, err)
	fmt.Printf("xfs expand: %v\n", time.Since(start).Round(time.Millisecond))
	assert.Equal(t, int64(2*xfsSize), exp.GetCapacityBytes())
	require.NoError(t, unix.Statfs(target, &after))
	assert.Greater(t, int64(after.Blocks)*int64(after.Bsize), int64(before.Blocks)*int64(before.Bsize)+xfsSize/2,
		"xfs grew online")
	_, err = n.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "xfs-vol", TargetPath: target})
	require.NoError(t, err)
	_, err = n.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "xfs-vol", StagingTargetPath: staging})
	require.NoError(t, err)
	ss, err := blockdev.Sysfs{}.Sessions()
	require.NoError(t, err)
	assert.Empty(t, ss)
}

// TestGuestStageErrors: failed stages on the real kernel give the code
// kubelet acts on, a message without secrets, and leave nothing behind:
// a final error is rolled back by the plugin, a transient one by the
// NodeUnstageVolume kubelet then sends.
func TestGuestStageErrors(t *testing.T) {
	e := loadGuestEnv(t)
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	p := startPlugin(t, filepath.Join(dir, "state"), run, slog.New(ContextHandler(slog.NewJSONHandler(io.Discard, nil))))
	defer p.stop()
	n := p.d.Node()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const wrong = "not-the-secret-4711"
	c := &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}}}
	for _, tc := range []struct {
		name      string
		vc        map[string]string
		secrets   map[string]string
		code      codes.Code
		transient bool
	}{
		{"wrong CHAP secret", map[string]string{"targetPortal": e.Portal, "iqn": e.CHAP.IQN, "lun": "1", "sessionCHAPAuth": "true"},
			map[string]string{"node.session.auth.username": e.User, "node.session.auth.password": wrong}, codes.PermissionDenied, false},
		{"no such target", map[string]string{"targetPortal": e.Portal, "iqn": e.CHAP.IQN + "-missing", "lun": "1"}, nil, codes.NotFound, false},
		{"portal refuses", map[string]string{"targetPortal": vmtestHostPort(1), "iqn": e.Plain.IQN, "lun": "1"}, nil, codes.Unavailable, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			staging := filepath.Join(dir, "staging-"+strings.ReplaceAll(tc.name, " ", "-"))
			_, err := n.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: "err-vol", StagingTargetPath: staging,
				VolumeCapability: c, VolumeContext: tc.vc, Secrets: tc.secrets})
			require.Error(t, err)
			assert.Equal(t, tc.code, status.Code(err), "%v", err)
			assert.NotContains(t, err.Error(), wrong)
			t.Logf("%s: %v", tc.name, err)
			_, lerr := p.m.LookupStaged("err-vol")
			if tc.transient {
				require.NoError(t, lerr, "a transient error leaves the volume uncertain: kubelet unstages it")
				_, err = n.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "err-vol", StagingTargetPath: staging})
				require.NoError(t, err)
				_, lerr = p.m.LookupStaged("err-vol")
			}
			assert.True(t, os.IsNotExist(lerr), "no staging record left: %v", lerr)
			ss, err := blockdev.Sysfs{}.Sessions()
			require.NoError(t, err)
			assert.Empty(t, ss, "no session left")
			ents, err := os.ReadDir(run)
			require.NoError(t, err)
			assert.Empty(t, ents, "no credentials left")
		})
	}
}

// vmtestHostPort is the host's loopback port as the guest reaches it.
func vmtestHostPort(port int) string { return net.JoinHostPort(vmtest.HostIP, strconv.Itoa(port)) }

// TestGuestMultipath: a volume on two portals under a dm-multipath map
// (built with dmsetup, as multipathd would on the paths' uevents): stage
// uses the map, health is DEGRADED (not INACCESSIBLE) with one path
// offline, the LUN grows on the target and NodeExpandVolume rescans both
// paths, reloads the map with the new length and grows ext4; unstage
// removes the map and both sessions.
func TestGuestMultipath(t *testing.T) {
	e := loadGuestEnv(t)
	dir, p, ctx := inProcessPlugin(t)
	n := p.d.Node()

	a, err := p.k.Attach(ctx, blockdev.Spec{Portal: e.Portal, TargetName: e.MP.IQN, LUN: 1})
	require.NoError(t, err)
	b, err := p.k.Attach(ctx, blockdev.Spec{Portal: e.Portal2, TargetName: e.MP.IQN, LUN: 1})
	require.NoError(t, err)
	table := fmt.Sprintf("0 %d multipath 0 0 1 1 round-robin 0 2 1 %s 1000 %s 1000", a.Size/512, devNum(t, a.Path), devNum(t, b.Path))
	out, err := exec.CommandContext(ctx, "dmsetup", "create", "mpathcsi", "--noudevsync", "--uuid", "mpath-gosan-csi-test", "--table", table).CombinedOutput()
	require.NoError(t, err, "dmsetup create: %s", out)

	staging := filepath.Join(dir, "globalmount")
	target := filepath.Join(dir, "pod", "mount")
	c := &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}}}
	vc := map[string]string{"targetPortal": e.Portal, "portals": e.Portal2, "iqn": e.MP.IQN, "lun": "1"}
	_, err = n.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: "mp-vol", StagingTargetPath: staging, VolumeCapability: c, VolumeContext: vc})
	require.NoError(t, err)
	st, err := p.m.LookupStaged("mp-vol")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(filepath.Base(st.DevicePath), "dm-"), "staged on the map: %s", st.DevicePath)
	require.Len(t, st.Devices, 2)
	_, err = n.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: "mp-vol", StagingTargetPath: staging, TargetPath: target,
		VolumeCapability: c, VolumeContext: vc})
	require.NoError(t, err)
	data := []byte(fmt.Sprintf("multipath data %d", time.Now().UnixNano()))
	require.NoError(t, os.WriteFile(filepath.Join(target, "mp.txt"), data, 0o644))

	state := filepath.Join("/sys/block", filepath.Base(b.Path), "device", "state")
	require.NoError(t, os.WriteFile(state, []byte("offline\n"), 0o200))
	h, err := n.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: "mp-vol"})
	require.NoError(t, err)
	require.Len(t, h.GetVolumeHealth().GetHealthStatuses(), 1)
	assert.Equal(t, csi.VolumeHealthErrorType_DEGRADED, h.GetVolumeHealth().GetHealthStatuses()[0].GetStatus(), "one of two paths offline")
	assert.Equal(t, reasonDeviceOffline, h.GetVolumeHealth().GetHealthStatuses()[0].GetReason())
	require.NoError(t, os.WriteFile(state, []byte("running\n"), 0o200))

	var before, after unix.Statfs_t
	require.NoError(t, unix.Statfs(target, &before))
	admin(t, e.Admin, fmt.Sprintf("grow %d 1 %d", tidMP, 2*lunSize))
	start := time.Now()
	exp, err := n.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: "mp-vol", VolumePath: target,
		CapacityRange: &csi.CapacityRange{RequiredBytes: 2 * lunSize}})
	require.NoError(t, err)
	fmt.Printf("multipath expand: %v\n", time.Since(start).Round(time.Millisecond))
	assert.Equal(t, int64(2*lunSize), exp.GetCapacityBytes(), "the map has the new size")
	require.NoError(t, unix.Statfs(target, &after))
	assert.Greater(t, int64(after.Blocks)*int64(after.Bsize), int64(before.Blocks)*int64(before.Bsize)+lunSize/2, "ext4 on the map grew")
	got, err := os.ReadFile(filepath.Join(target, "mp.txt"))
	require.NoError(t, err)
	assert.Equal(t, data, got)

	_, err = n.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "mp-vol", TargetPath: target})
	require.NoError(t, err)
	_, err = n.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "mp-vol", StagingTargetPath: staging})
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join("/sys/block", filepath.Base(st.DevicePath)))
	assert.True(t, os.IsNotExist(err), "the map was removed")
	ss, err := blockdev.Sysfs{}.Sessions()
	require.NoError(t, err)
	assert.Empty(t, ss, "both sessions logged out")
}

// devNum is a block device's "major:minor".
func devNum(t *testing.T, p string) string {
	t.Helper()
	var st unix.Stat_t
	require.NoError(t, unix.Stat(p, &st))
	return fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
}

// inProcessPlugin starts the plugin in this process (stopped at cleanup)
// with its state under a temporary directory, returned with a context for
// the test's calls.
func inProcessPlugin(t *testing.T) (string, *guestPlugin, context.Context) {
	t.Helper()
	dir := t.TempDir()
	p := startPlugin(t, filepath.Join(dir, "state"), filepath.Join(dir, "run"),
		slog.New(ContextHandler(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	t.Cleanup(p.stop)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return dir, p, ctx
}
