package driver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/blockdev"
	"github.com/gosan/iscsi/blockdev/volume"
)

// fakeVolumes records calls; stage can block (for ABORTED) or fail.
type fakeVolumes struct {
	mu       sync.Mutex
	unstaged []string // UnstageAt calls
	staged   map[string]*volume.Staged
	stageErr error
	block    chan struct{} // StageAt waits on it when non-nil
	entered  chan struct{}
	lastVol  volume.Volume
}

func newFake() *fakeVolumes { return &fakeVolumes{staged: map[string]*volume.Staged{}} }

func (f *fakeVolumes) StageAt(ctx context.Context, id, path string, v volume.Volume) (*volume.StageResult, error) {
	if f.entered != nil {
		f.entered <- struct{}{}
	}
	if f.block != nil {
		<-f.block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastVol = v
	if f.stageErr != nil {
		return nil, f.stageErr
	}
	n, err := v.Normalize()
	if err != nil {
		return nil, err
	}
	slog.Default().InfoContext(ctx, "fake stage")
	f.staged[id] = &volume.Staged{VolumeID: id, StagingPath: path, Volume: n}
	return &volume.StageResult{DevicePath: "/dev/sdz"}, nil
}

func (f *fakeVolumes) PublishAt(ctx context.Context, id, staging, target string, o volume.PublishOptions) error {
	return nil
}

func (f *fakeVolumes) Unpublish(ctx context.Context, target string) error { return nil }

func (f *fakeVolumes) UnstageAt(ctx context.Context, id, path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unstaged = append(f.unstaged, id)
	delete(f.staged, id)
	return nil
}

func (f *fakeVolumes) LookupStaged(id string) (*volume.Staged, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.staged[id]; ok {
		return s, nil
	}
	return nil, fs.ErrNotExist
}

// tmpfsDir is a test directory on tmpfs (/dev/shm), as the CHAP store needs.
func tmpfsDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("/dev/shm", "gosan-csi-test-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

type testDriver struct {
	d    *Driver
	vols *fakeVolumes
	logs *syncBuffer
	run  string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newTestDriver(t *testing.T) *testDriver {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(ContextHandler(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	prev := slog.Default()
	slog.SetDefault(log)
	t.Cleanup(func() { slog.SetDefault(prev) })
	vols := newFake()
	run := tmpfsDir(t)
	d, err := New(Config{NodeID: "node-1", Volumes: vols, RunDir: run, Logger: log, Version: "test"})
	require.NoError(t, err)
	return &testDriver{d: d, vols: vols, logs: logs, run: run}
}

const (
	testSecretUser = "chap-user-name"
	testSecretPass = "very-secret-password-0123"
)

func mountCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}}}
}

func stageReq(id string, vc map[string]string, secrets map[string]string) *csi.NodeStageVolumeRequest {
	return &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: "/var/lib/kubelet/plugins/x/" + id + "/globalmount",
		VolumeCapability: mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER), VolumeContext: vc, Secrets: secrets}
}

func TestParseVolumeContext(t *testing.T) {
	for _, tc := range []struct {
		name string
		vc   map[string]string
		want volume.Volume
		err  string
	}{
		{name: "csi-driver-iscsi", vc: map[string]string{"targetPortal": "10.0.0.1:3260", "portals": `["10.0.0.2:3260","10.0.0.3"]`,
			"iqn": "iqn.2024-01.x:a", "lun": "3", "iscsiInterface": "default", "initiatorName": "iqn.2024-01.x:node",
			"discoveryCHAPAuth": "false", "sessionCHAPAuth": "true"},
			want: volume.Volume{TargetPortal: "10.0.0.1:3260", Portals: []string{"10.0.0.2:3260", "10.0.0.3"}, IQN: "iqn.2024-01.x:a",
				LUN: 3, ISCSIInterface: "default", InitiatorName: "iqn.2024-01.x:node", SessionCHAPAuth: true}},
		{name: "in-tree and comma list", vc: map[string]string{"targetPortal": "10.0.0.1", "portals": "10.0.0.2:3260, 10.0.0.3",
			"iqn": "iqn.2024-01.x:a", "lun": "0", "chapAuthSession": "true", "chapAuthDiscovery": "true"},
			want: volume.Volume{TargetPortal: "10.0.0.1", Portals: []string{"10.0.0.2:3260", "10.0.0.3"}, IQN: "iqn.2024-01.x:a",
				SessionCHAPAuth: true, DiscoveryCHAPAuth: true}},
		{name: "missing", vc: map[string]string{}, err: "targetPortal is required; iqn is required; lun is required"},
		{name: "bad lun", vc: map[string]string{"targetPortal": "a", "iqn": "iqn.x", "lun": "one"}, err: `lun "one" is not a number`},
		{name: "disagree", vc: map[string]string{"targetPortal": "a", "iqn": "iqn.x", "lun": "1", "sessionCHAPAuth": "true", "chapAuthSession": "false"},
			err: "sessionCHAPAuth and chapAuthSession disagree"},
		{name: "bad portals", vc: map[string]string{"targetPortal": "a", "iqn": "iqn.x", "lun": "1", "portals": `["a",`}, err: "portals is neither"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := parseVolumeContext(tc.vc, nil)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, v)
		})
	}
}

func TestStageArgumentErrors(t *testing.T) {
	td := newTestDriver(t)
	n := td.d.Node()
	ctx := context.Background()
	vc := map[string]string{"targetPortal": "10.0.0.1", "iqn": "iqn.2024-01.x:a", "lun": "1"}
	for _, tc := range []struct {
		name string
		req  *csi.NodeStageVolumeRequest
		code codes.Code
		msg  string
	}{
		{"no id", &csi.NodeStageVolumeRequest{StagingTargetPath: "/x", VolumeCapability: mountCap(1)}, codes.InvalidArgument, "volume_id"},
		{"no path", &csi.NodeStageVolumeRequest{VolumeId: "v", VolumeCapability: mountCap(1)}, codes.InvalidArgument, "staging_target_path"},
		{"relative path", &csi.NodeStageVolumeRequest{VolumeId: "v", StagingTargetPath: "x", VolumeCapability: mountCap(1)}, codes.InvalidArgument, "not absolute"},
		{"no capability", &csi.NodeStageVolumeRequest{VolumeId: "v", StagingTargetPath: "/x"}, codes.InvalidArgument, "volume_capability"},
		{"multi-node writer mount", &csi.NodeStageVolumeRequest{VolumeId: "v", StagingTargetPath: "/x", VolumeContext: vc,
			VolumeCapability: mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)}, codes.InvalidArgument, "needs volumeMode Block"},
		{"no context", stageReq("v", nil, nil), codes.InvalidArgument, "targetPortal is required"},
		{"chap without secret", stageReq("v", map[string]string{"targetPortal": "10.0.0.1", "iqn": "iqn.2024-01.x:a", "lun": "1",
			"sessionCHAPAuth": "true"}, map[string]string{volume.SecretSessionUser: testSecretUser}), codes.InvalidArgument, "node.session.auth.password"},
		{"bad fsType", func() *csi.NodeStageVolumeRequest {
			r := stageReq("v", vc, nil)
			r.VolumeCapability.GetMount().FsType = "ext4;x" // not the name of a mkfs.<fsType> program
			return r
		}(), codes.InvalidArgument, "fsType"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := n.NodeStageVolume(ctx, tc.req)
			require.Error(t, err)
			assert.Equal(t, tc.code, status.Code(err), "%v", err)
			assert.Contains(t, err.Error(), tc.msg)
			assert.NotContains(t, err.Error(), testSecretUser)
		})
	}
	assert.Empty(t, td.vols.staged)
}

// TestStageCHAP: only the session keys are needed; the credentials go to
// a 0600 file on tmpfs (never into logs or errors) and are gone after
// unstage; the Supervisor's lookup finds them by target and portal.
func TestStageCHAP(t *testing.T) {
	td := newTestDriver(t)
	n := td.d.Node()
	ctx := context.Background()
	vc := map[string]string{"targetPortal": "10.0.0.1", "iqn": "iqn.2024-01.x:a", "lun": "1", "sessionCHAPAuth": "true"}
	secrets := map[string]string{volume.SecretSessionUser: testSecretUser, volume.SecretSessionPassword: testSecretPass}
	_, err := n.NodeStageVolume(ctx, stageReq("vol-chap", vc, secrets))
	require.NoError(t, err)
	assert.Equal(t, testSecretPass, td.vols.lastVol.Secrets[volume.SecretSessionPassword], "the secret reaches the volume layer")

	ents, err := os.ReadDir(td.run)
	require.NoError(t, err)
	require.Len(t, ents, 1)
	fi, err := os.Stat(filepath.Join(td.run, ents[0].Name()))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	dfi, err := os.Stat(td.run)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), dfi.Mode().Perm())

	lookup, err := Credentials(td.run)
	require.NoError(t, err)
	c := lookup("iqn.2024-01.x:a", "10.0.0.1:3260")
	require.NotNil(t, c, "found by target and normalized portal")
	assert.Equal(t, testSecretUser, c.User)
	assert.Equal(t, testSecretPass, c.Secret)
	assert.Nil(t, lookup("iqn.2024-01.x:a", "10.0.0.9:3260"))
	assert.Nil(t, lookup("iqn.2024-01.x:b", "10.0.0.1:3260"))

	_, err = n.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "vol-chap", StagingTargetPath: "/x"})
	require.NoError(t, err)
	ents, err = os.ReadDir(td.run)
	require.NoError(t, err)
	assert.Empty(t, ents, "credentials removed at unstage")

	// A failed stage with nothing staged keeps no credentials either.
	td.vols.stageErr = errors.New("boom")
	_, err = n.NodeStageVolume(ctx, stageReq("vol-chap2", vc, secrets))
	require.Error(t, err)
	ents, _ = os.ReadDir(td.run)
	assert.Empty(t, ents)

	logs := td.logs.String()
	assert.NotContains(t, logs, testSecretPass)
	assert.NotContains(t, logs, testSecretUser, "not even the CHAP user name is logged")
}

func TestCHAPStoreRefusesDisk(t *testing.T) {
	dir := t.TempDir()
	if onTmpfs(dir) {
		t.Fatalf("%s is on tmpfs: this test needs a disk-backed TMPDIR", dir)
	}
	_, err := openCHAPStore(dir)
	require.ErrorIs(t, err, errNotTmpfs)
}

// TestLogsCarryVolumeID: every line logged with a call's context, also by
// code that does not know the volume id, carries it.
func TestLogsCarryVolumeID(t *testing.T) {
	td := newTestDriver(t)
	vc := map[string]string{"targetPortal": "10.0.0.1", "iqn": "iqn.2024-01.x:a", "lun": "1"}
	_, err := td.d.Node().NodeStageVolume(context.Background(), stageReq("vol-log", vc, nil))
	require.NoError(t, err)
	lines := 0
	for _, l := range strings.Split(strings.TrimSpace(td.logs.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), "JSON lines: %s", l)
		if m["msg"] == "CSI node plugin ready" {
			continue
		}
		lines++
		assert.Equal(t, "vol-log", m["volumeID"], "line %s", l)
		assert.Equal(t, 1, strings.Count(l, `"volumeID"`), "one volumeID per line: %s", l)
	}
	assert.GreaterOrEqual(t, lines, 2, "the fake volume layer's line and the driver's")
}

// TestConcurrentCallsAborted: a second call for a volume id while the
// first runs is ABORTED; other volume ids go ahead.
func TestConcurrentCallsAborted(t *testing.T) {
	td := newTestDriver(t)
	td.vols.block = make(chan struct{})
	td.vols.entered = make(chan struct{}, 4)
	n := td.d.Node()
	vc := map[string]string{"targetPortal": "10.0.0.1", "iqn": "iqn.2024-01.x:a", "lun": "1"}
	done := make(chan error, 1)
	go func() {
		_, err := n.NodeStageVolume(context.Background(), stageReq("vol-a", vc, nil))
		done <- err
	}()
	<-td.vols.entered
	_, err := n.NodeStageVolume(context.Background(), stageReq("vol-a", vc, nil))
	assert.Equal(t, codes.Aborted, status.Code(err))
	_, err = n.NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{VolumeId: "vol-a", StagingTargetPath: "/x"})
	assert.Equal(t, codes.Aborted, status.Code(err))
	vc2 := map[string]string{"targetPortal": "10.0.0.1", "iqn": "iqn.2024-01.x:a", "lun": "2"}
	go func() { <-td.vols.entered }()
	close(td.vols.block)
	_, err = n.NodeStageVolume(context.Background(), stageReq("vol-b", vc2, nil))
	assert.NoError(t, err)
	require.NoError(t, <-done)
	_, err = n.NodeStageVolume(context.Background(), stageReq("vol-a", vc, nil))
	assert.NoError(t, err, "free again once the first call returned")
}

func TestToStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code codes.Code
	}{
		{fmt.Errorf("x: %w", volume.ErrStagedElsewhere), codes.AlreadyExists},
		{fmt.Errorf("x: %w", volume.ErrIncompatible), codes.AlreadyExists},
		{&volume.InUseError{Device: "/dev/sdb", Mounts: []string{"/a"}}, codes.FailedPrecondition},
		{fmt.Errorf("x: %w", volume.ErrNotStaged), codes.FailedPrecondition},
		{&volume.ValidationError{Problems: []*volume.FieldError{{Field: "iqn", Reason: "required"}}}, codes.InvalidArgument},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{errors.New("other"), codes.Internal},
		{status.Error(codes.NotFound, "kept"), codes.NotFound},
	} {
		assert.Equal(t, tc.code, status.Code(toStatus("op", tc.err)), "%v", tc.err)
	}
}

// TestPublishAndStatsArguments: the codes csi-sanity checks, without a
// kernel.
func TestPublishAndStatsArguments(t *testing.T) {
	td := newTestDriver(t)
	n := td.d.Node()
	ctx := context.Background()
	_, err := n.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: "v", TargetPath: "/t", StagingTargetPath: "/s",
		VolumeCapability: mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)})
	assert.Equal(t, codes.FailedPrecondition, status.Code(err), "not staged")
	_, err = n.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: "v", TargetPath: "/t",
		VolumeCapability: mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)})
	assert.Equal(t, codes.InvalidArgument, status.Code(err), "no staging path")
	c := mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)
	c.GetMount().VolumeMountGroup = "staff"
	_, err = n.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: "v", TargetPath: "/t", StagingTargetPath: "/s", VolumeCapability: c})
	assert.Equal(t, codes.InvalidArgument, status.Code(err), "non-numeric group")
	_, err = n.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: "v", VolumePath: "some/path"})
	assert.Equal(t, codes.NotFound, status.Code(err))
	_, err = n.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: "v"})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	_, err = n.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: "v", VolumePath: "some/path"})
	assert.Equal(t, codes.NotFound, status.Code(err))
	_, err = n.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	_, err = n.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "v"})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
}

// TestServeIdentity: the services over a real unix socket.
func TestServeIdentity(t *testing.T) {
	td := newTestDriver(t)
	notReady := errors.New("kernel module iscsi_tcp is not loaded")
	ready := error(nil)
	td.d.cfg.Ready = func(context.Context) error { return ready }
	sock := filepath.Join(t.TempDir(), "csi.sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- td.d.Serve(ctx, l) }()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	id := csi.NewIdentityClient(conn)
	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	defer ccancel()
	info, err := id.GetPluginInfo(cctx, &csi.GetPluginInfoRequest{})
	require.NoError(t, err)
	assert.Equal(t, DefaultName, info.GetName())
	assert.Regexp(t, `^[a-zA-Z][A-Za-z0-9-._]{0,61}[a-zA-Z]$`, info.GetName())
	assert.Equal(t, "test", info.GetVendorVersion())
	p, err := id.Probe(cctx, &csi.ProbeRequest{})
	require.NoError(t, err)
	assert.True(t, p.GetReady().GetValue())
	ready = notReady
	_, err = id.Probe(cctx, &csi.ProbeRequest{})
	assert.Equal(t, codes.FailedPrecondition, status.Code(err))
	assert.Contains(t, err.Error(), "iscsi_tcp")
	caps, err := csi.NewNodeClient(conn).NodeGetCapabilities(cctx, &csi.NodeGetCapabilitiesRequest{})
	require.NoError(t, err)
	var got []string
	for _, c := range caps.GetCapabilities() {
		got = append(got, c.GetRpc().GetType().String())
	}
	assert.ElementsMatch(t, []string{"STAGE_UNSTAGE_VOLUME", "GET_VOLUME_STATS", "EXPAND_VOLUME", "VOLUME_MOUNT_GROUP", "GET_VOLUME_HEALTH",
		"GET_STORAGE_HEALTH", "SINGLE_NODE_MULTI_WRITER"}, got)
	cancel()
	require.NoError(t, <-served)
}

// TestFailedStageRollsBack: a final error undoes the attempt (kubelet will
// not unstage it); a transient one or a conflict leaves everything as is.
func TestFailedStageRollsBack(t *testing.T) {
	vc := map[string]string{"targetPortal": "10.0.0.1", "iqn": "iqn.2024-01.x:a", "lun": "1"}
	for _, tc := range []struct {
		err      error
		code     codes.Code
		rollback bool
	}{
		{fmt.Errorf("attach: %w", iscsi.ErrAuthentication), codes.PermissionDenied, true},
		{fmt.Errorf("attach: %w", iscsi.ErrTargetNotFound), codes.NotFound, true},
		{fmt.Errorf("attach: %w", blockdev.ErrUnreachable), codes.Unavailable, false},
		{fmt.Errorf("x: %w", volume.ErrIncompatible), codes.AlreadyExists, false},
		{fmt.Errorf("x: %w", volume.ErrStagedElsewhere), codes.AlreadyExists, false},
	} {
		td := newTestDriver(t)
		td.vols.stageErr = tc.err
		_, err := td.d.Node().NodeStageVolume(context.Background(), stageReq("vol-f", vc, nil))
		assert.Equal(t, tc.code, status.Code(err), "%v", tc.err)
		if tc.rollback {
			assert.Equal(t, []string{"vol-f"}, td.vols.unstaged, "%v", tc.err)
		} else {
			assert.Empty(t, td.vols.unstaged, "%v", tc.err)
		}
	}
}
