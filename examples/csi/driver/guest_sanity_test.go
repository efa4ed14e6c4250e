//go:build vmguest

package driver

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	. "github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"
	. "github.com/onsi/gomega"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gosan/iscsi/blockdev"
	"github.com/gosan/iscsi/blockdev/volume"
	"github.com/gosan/iscsi/internal/testenv/vmtest"
)

// Guest side: the plugin with the real kernel binding, served beside a
// test-only controller that hands out tgtd LUNs, and csi-sanity against
// both on one unix socket.

func loadGuestEnv(t *testing.T) guestEnv {
	t.Helper()
	vmtest.RequireGuest(t)
	var e guestEnv
	require.NoError(t, json.Unmarshal([]byte(os.Getenv("CSI_ENV")), &e), "CSI_ENV")
	return e
}

// guestPlugin is the plugin as main wires it: a Kernel supervised for the
// life of the plugin, credentials from the run directory, a Manager.
type guestPlugin struct {
	d      *Driver
	k      *blockdev.Kernel
	m      *volume.Manager
	cancel context.CancelFunc
	done   chan struct{}
}

func startPlugin(t *testing.T, state, run string, log *slog.Logger) *guestPlugin {
	t.Helper()
	creds, err := Credentials(run)
	require.NoError(t, err)
	k, err := blockdev.Open(blockdev.Options{InitiatorName: "iqn.2026-11.org.gosan.test:csi-node", Credentials: creds, Logger: log})
	require.NoError(t, err)
	m, err := volume.NewManager(state, volume.KernelAttacher(k), volume.WithLogger(log))
	require.NoError(t, err)
	d, err := New(Config{NodeID: "guest-node", Volumes: m, RunDir: run, Logger: log, Version: "guest",
		InitiatorName: "iqn.2026-11.org.gosan.test:csi-node"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	p := &guestPlugin{d: d, k: k, m: m, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		_ = k.Supervise(ctx)
	}()
	return p
}

// stop ends the plugin as a killed process would leave things: sessions,
// mounts and records stay.
func (p *guestPlugin) stop() {
	p.cancel()
	<-p.done
	p.k.Close()
}

// sanityIdentity reports CONTROLLER_SERVICE besides the plugin's own
// capabilities, so that csi-sanity runs its node lifecycle specs.
type sanityIdentity struct{ csi.IdentityServer }

func (s sanityIdentity) GetPluginCapabilities(ctx context.Context, req *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	r, err := s.IdentityServer.GetPluginCapabilities(ctx, req)
	if err != nil {
		return nil, err
	}
	r.Capabilities = append(r.Capabilities, &csi.PluginCapability{Type: &csi.PluginCapability_Service_{
		Service: &csi.PluginCapability_Service{Type: csi.PluginCapability_Service_CONTROLLER_SERVICE}}})
	return r, nil
}

// poolController is the test-only controller: CreateVolume hands out a
// free LUN of a pre-made tgtd target (parameter "pool": plain or chap),
// DeleteVolume returns it.
type poolController struct {
	csi.UnimplementedControllerServer
	mu    sync.Mutex
	env   guestEnv
	inUse map[string]string // lun key -> volume id
	vols  map[string]*csi.Volume
}

func newPoolController(e guestEnv) *poolController {
	return &poolController{env: e, inUse: map[string]string{}, vols: map[string]*csi.Volume{}}
}

func (c *poolController) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: []*csi.ControllerServiceCapability{{
		Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{
			Type: csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME}}}}}, nil
}

func (c *poolController) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.vols[req.GetName()]; ok {
		return &csi.CreateVolumeResponse{Volume: v}, nil
	}
	if req.GetCapacityRange().GetRequiredBytes() > lunSize {
		return nil, status.Errorf(codes.OutOfRange, "pool LUNs have %d bytes", lunSize)
	}
	tgt := c.env.Plain
	vc := map[string]string{}
	if req.GetParameters()["pool"] == "chap" {
		tgt = c.env.CHAP
		vc["chapAuthSession"] = "true" // the in-tree spelling
		vc["targetPortal"] = c.env.Portal
	} else {
		vc["sessionCHAPAuth"] = "false" // csi-driver-iscsi's spelling, portals as a JSON array
		vc["targetPortal"] = c.env.Portal
		vc["portals"] = `["` + c.env.Portal + `"]`
	}
	for _, l := range tgt.LUNs {
		key := tgt.IQN + "/" + strconv.Itoa(l)
		if _, busy := c.inUse[key]; busy {
			continue
		}
		c.inUse[key] = req.GetName()
		vc["iqn"], vc["lun"] = tgt.IQN, strconv.Itoa(l)
		v := &csi.Volume{VolumeId: req.GetName(), CapacityBytes: lunSize, VolumeContext: vc}
		c.vols[req.GetName()] = v
		return &csi.CreateVolumeResponse{Volume: v}, nil
	}
	return nil, status.Errorf(codes.ResourceExhausted, "no free LUN in pool %s", tgt.IQN)
}

func (c *poolController) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.vols, req.GetVolumeId())
	for k, id := range c.inUse {
		if id == req.GetVolumeId() {
			delete(c.inUse, k)
		}
	}
	return &csi.DeleteVolumeResponse{}, nil
}

// serveSanity serves the plugin's Node service, the sanity identity and
// the pool controller on a unix socket.
func serveSanity(t *testing.T, p *guestPlugin, e guestEnv) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "csi.sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	s := grpc.NewServer(grpc.UnaryInterceptor(p.d.Interceptor()))
	csi.RegisterIdentityServer(s, sanityIdentity{p.d.Identity()})
	csi.RegisterNodeServer(s, p.d.Node())
	csi.RegisterControllerServer(s, newPoolController(e))
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return "unix://" + sock
}

// The two sanity configurations, filled in by TestGuestSanity before the
// suite runs (sanity keeps the pointers).
var plainConfig, chapConfig, blockConfig sanity.TestConfig

var _ = Describe("plain", func() { sanity.GinkgoTest(&plainConfig) })
var _ = Describe("chap", func() { sanity.GinkgoTest(&chapConfig) })
var _ = Describe("block", func() { sanity.GinkgoTest(&blockConfig) })

// The counts per configuration and the reason of every skip, for the
// host to check and report.
var _ = ReportAfterSuite("csi-sanity counts", func(r Report) {
	type count struct{ ran, passed, failed, skipped int }
	counts := map[string]*count{}
	skips := map[string]int{}
	for _, s := range r.SpecReports {
		if s.LeafNodeType != types.NodeTypeIt || len(s.ContainerHierarchyTexts) == 0 {
			continue
		}
		cfg := s.ContainerHierarchyTexts[0]
		if counts[cfg] == nil {
			counts[cfg] = &count{}
		}
		c := counts[cfg]
		switch s.State {
		case types.SpecStatePassed:
			c.ran++
			c.passed++
		case types.SpecStatePending:
			skips["pending (PIt) in csi-test itself, a controller spec outside the Node and Identity focus: "+s.FullText()]++
			continue
		case types.SpecStateSkipped:
			if s.Failure.Message == "" {
				continue // outside the focus (controller, snapshot and group controller suites)
			}
			c.skipped++
			skips[strings.Join(s.ContainerHierarchyTexts[1:], " / ")+" / "+s.LeafNodeText+": "+s.Failure.Message]++
		default:
			c.ran++
			c.failed++
		}
	}
	names := make([]string, 0, len(counts))
	for n := range counts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := counts[n]
		fmt.Printf("csi-sanity %s: ran %d, passed %d, failed %d, skipped %d\n", n, c.ran, c.passed, c.failed, c.skipped)
	}
	reasons := make([]string, 0, len(skips))
	for k := range skips {
		reasons = append(reasons, k)
	}
	sort.Strings(reasons)
	for _, k := range reasons {
		fmt.Printf("csi-sanity skipped: %s (x%d)\n", k, skips[k])
	}
})

func TestGuestSanity(t *testing.T) {
	e := loadGuestEnv(t)
	log := slog.New(ContextHandler(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	dir := t.TempDir()
	p := startPlugin(t, filepath.Join(dir, "state"), filepath.Join(dir, "run"), log)
	t.Cleanup(p.stop)
	addr := serveSanity(t, p, e)

	secrets := filepath.Join(dir, "secrets.yaml")
	require.NoError(t, os.WriteFile(secrets, []byte(fmt.Sprintf("NodeStageVolumeSecret:\n  node.session.auth.username: %q\n  node.session.auth.password: %q\n",
		e.User, e.Secret)), 0o600))
	for _, c := range []struct {
		cfg  *sanity.TestConfig
		name string
	}{{&plainConfig, "plain"}, {&chapConfig, "chap"}, {&blockConfig, "block"}} {
		*c.cfg = sanity.NewTestConfig()
		c.cfg.Address = addr
		c.cfg.TargetPath = filepath.Join(dir, c.name+"-target")
		c.cfg.StagingPath = filepath.Join(dir, c.name+"-staging")
		c.cfg.TestVolumeSize = lunSize
		// No controller expansion (the pool LUNs do not grow): node
		// expansion is asked for the size the LUN has. Growing a LUN
		// for real is the harness's job (TestGuestHarness).
		c.cfg.TestVolumeExpandSize = lunSize
		c.cfg.TestVolumeParameters = map[string]string{"pool": c.name}
	}
	chapConfig.SecretsFile = secrets
	blockConfig.TestVolumeAccessType = "block" // raw block volumes from the plain pool
	blockConfig.TestVolumeParameters = map[string]string{"pool": "plain"}

	RegisterFailHandler(Fail)
	suite, reporter := GinkgoConfiguration()
	suite.FocusStrings = []string{"Node Service", "Identity Service"}
	reporter.Succinct = true
	RunSpecs(t, "csi-sanity in the guest", suite, reporter)

	// Nothing left behind by the suite: no session, no mount of ours.
	ss, err := blockdev.Sysfs{}.Sessions()
	require.NoError(t, err)
	require.Empty(t, ss, "sessions left after the suite")
	mi, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	require.NotContains(t, string(mi), dir, "mounts left after the suite")
}
