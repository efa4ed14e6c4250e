package driver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/blockdev/volume"
)

// DefaultName is the driver name (CSIDriver object, GetPluginInfo) when
// Config.Name is empty.
const DefaultName = "iscsi.gosan.dev"

// Volumes is the mount layer the Node service drives: *volume.Manager
// (unit tests give a fake).
type Volumes interface {
	StageAt(ctx context.Context, volumeID, stagingPath string, v volume.Volume) (*volume.StageResult, error)
	PublishAt(ctx context.Context, volumeID, stagingPath, target string, o volume.PublishOptions) error
	Unpublish(ctx context.Context, target string) error
	UnstageAt(ctx context.Context, volumeID, stagingPath string) error
	LookupStaged(volumeID string) (*volume.Staged, error)
}

// Config configures a Driver.
type Config struct {
	Name    string // DefaultName when empty
	Version string // vendor_version
	NodeID  string // NodeGetInfo's node_id (required): the Kubernetes node name
	// MaxVolumesPerNode is NodeGetInfo's max_volumes_per_node (0: no limit).
	MaxVolumesPerNode int64
	Volumes           Volumes
	// RunDir holds the CHAP credentials of staged volumes; it must be on
	// tmpfs (default /run/gosan-iscsi-csi).
	RunDir string
	// SysfsRoot is where sysfs is mounted (default /sys).
	SysfsRoot string
	// Ready is Probe's check (nil: always ready): the kernel binding is
	// open (NETLINK_ISCSI answered) and iscsi_tcp is loaded.
	Ready func(ctx context.Context) error
	// InitiatorName is the initiator name sessions use by default (logged).
	InitiatorName string
	Logger        *slog.Logger
	// Metrics, when set, counts the calls.
	Metrics *Metrics
}

// Driver is the Identity and Node service.
type Driver struct {
	cfg   Config
	log   *slog.Logger
	chap  *chapStore
	mu    sync.Mutex
	inUse map[string]bool // volume ids with a call in flight
}

// New checks cfg and returns a Driver.
func New(cfg Config) (*Driver, error) {
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.NodeID == "" {
		return nil, errors.New("driver: empty node id")
	}
	if cfg.Volumes == nil {
		return nil, errors.New("driver: nil Volumes")
	}
	if cfg.RunDir == "" {
		cfg.RunDir = "/run/gosan-iscsi-csi"
	}
	if cfg.SysfsRoot == "" {
		cfg.SysfsRoot = "/sys"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	chap, err := openCHAPStore(cfg.RunDir)
	if err != nil {
		return nil, fmt.Errorf("driver: %w", err)
	}
	d := &Driver{cfg: cfg, log: cfg.Logger, chap: chap, inUse: map[string]bool{}}
	d.log.Info("CSI node plugin ready", "driver", cfg.Name, "version", cfg.Version, "nodeID", cfg.NodeID,
		"initiatorName", cfg.InitiatorName)
	return d, nil
}

// Credentials is blockdev.Options.Credentials for a Kernel the driver's
// volumes attach through: the CHAP credentials a staged volume gave for
// the session, so Supervise can recover it after a plugin restart.
func Credentials(runDir string) (func(targetName, portal string) *iscsi.CHAP, error) {
	c, err := openCHAPStore(runDir)
	if err != nil {
		return nil, err
	}
	return c.lookup, nil
}

// Register adds the Identity and Node services to s.
func (d *Driver) Register(s *grpc.Server) {
	csi.RegisterIdentityServer(s, d.Identity())
	csi.RegisterNodeServer(s, d.Node())
}

// Interceptor logs failed calls (method, code, message; never the
// request) and counts calls in Config.Metrics.
func (d *Driver) Interceptor() grpc.UnaryServerInterceptor { return d.intercept }

// Serve serves both services on l until ctx ends.
func (d *Driver) Serve(ctx context.Context, l net.Listener) error {
	s := grpc.NewServer(grpc.UnaryInterceptor(d.intercept))
	d.Register(s)
	go func() {
		<-ctx.Done()
		s.GracefulStop()
	}()
	return s.Serve(l)
}

// intercept logs each call's method, outcome and gRPC code (never the
// request: it may hold secrets).
func (d *Driver) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	if d.cfg.Metrics != nil {
		d.cfg.Metrics.calls.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	}
	if err != nil {
		attrs := []any{"method", info.FullMethod, "code", status.Code(err).String(), "err", status.Convert(err).Message()}
		if v, ok := req.(interface{ GetVolumeId() string }); ok && v.GetVolumeId() != "" {
			attrs = append(attrs, "volumeID", v.GetVolumeId())
		}
		d.log.WarnContext(ctx, "call failed", attrs...)
	}
	return resp, err
}

// acquire marks volumeID busy (ABORTED while another call for it runs;
// CSI: "an operation is pending for the volume") and returns ctx carrying
// the volume id for the call's logs (withVolumeID).
func (d *Driver) acquire(ctx context.Context, volumeID string) (context.Context, func(), error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.inUse[volumeID] {
		return nil, nil, status.Errorf(codes.Aborted, "an operation for volume %q is already in progress; retry", volumeID)
	}
	d.inUse[volumeID] = true
	return withVolumeID(ctx, volumeID), func() {
		d.mu.Lock()
		delete(d.inUse, volumeID)
		d.mu.Unlock()
	}, nil
}

// volLog is the logger of one call; log with the call's context (see
// withVolumeID), which adds the volume id.
func (d *Driver) volLog(method string) *slog.Logger {
	return d.log.With("method", method)
}
