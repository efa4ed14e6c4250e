// Command gosan-iscsi-csi is a CSI node plugin for iSCSI volumes built on
// github.com/gosan/iscsi: it logs in through the kernel's iscsi_tcp over
// NETLINK_ISCSI itself (no iscsiadm, no iscsid), formats only blank LUNs,
// and supervises its sessions for as long as it runs. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/blockdev"
	"github.com/gosan/iscsi/blockdev/volume"
	"github.com/gosan/iscsi/examples/csi/driver"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

// Defaults; the manifests in deploy/ use the same paths.
const (
	defaultEndpoint = "unix:///csi/csi.sock"
	defaultStateDir = "/var/lib/gosan-iscsi-csi"
	defaultRunDir   = "/run/gosan-iscsi-csi"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gosan-iscsi-csi:", err)
		os.Exit(1)
	}
}

// options are the command-line flags.
type options struct {
	endpoint, name, nodeID, stateDir, runDir, initiator, metricsAddr, level string
	maxVolumes                                                              int64
}

func parseFlags(args []string) (*options, error) {
	var o options
	fs := flag.NewFlagSet("gosan-iscsi-csi", flag.ContinueOnError)
	fs.StringVar(&o.endpoint, "endpoint", defaultEndpoint, "CSI endpoint (unix:///path)")
	fs.StringVar(&o.name, "driver-name", driver.DefaultName, "driver name (the CSIDriver object's name)")
	fs.StringVar(&o.nodeID, "node-id", os.Getenv("NODE_NAME"), "node id (default $NODE_NAME, the Kubernetes node name)")
	fs.StringVar(&o.stateDir, "state-dir", defaultStateDir, "attach and staging records and global mounts (a hostPath with Bidirectional propagation)")
	fs.StringVar(&o.runDir, "run-dir", defaultRunDir, "CHAP credentials of staged volumes (must be on tmpfs: the host's /run)")
	fs.StringVar(&o.initiator, "initiator-name", "", "default initiator name (default: /etc/iscsi/initiatorname.iscsi, else one derived from the machine id)")
	fs.StringVar(&o.metricsAddr, "metrics-address", "", "serve Prometheus /metrics on this address (e.g. :9808); off when empty")
	fs.Int64Var(&o.maxVolumes, "max-volumes-per-node", 0, "NodeGetInfo's max_volumes_per_node (0: no limit)")
	fs.StringVar(&o.level, "log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return &o, nil
}

func run(args []string) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(o.level)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	var h slog.Handler = slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})
	var metrics *driver.Metrics
	if o.metricsAddr != "" {
		metrics = driver.NewMetrics("/sys")
		h = metrics.LogHandler(h)
	}
	log := slog.New(driver.ContextHandler(h))
	if o.nodeID == "" {
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("-node-id is empty and the host name is unknown: %w", err)
		}
		o.nodeID = host
	}
	if o.initiator == "" {
		o.initiator = iscsi.DefaultInitiatorName()
	}
	sock, ok := strings.CutPrefix(o.endpoint, "unix://")
	if !ok || !filepath.IsAbs(sock) {
		return fmt.Errorf("-endpoint %q: want unix:///absolute/path", o.endpoint)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	creds, err := driver.Credentials(o.runDir)
	if err != nil {
		return err
	}
	// The kernel binding. If it cannot open (iscsi_tcp missing, iscsid
	// running), the plugin still serves: Probe and every stage say why.
	var att volume.Attacher
	k, openErr := blockdev.Open(blockdev.Options{InitiatorName: o.initiator, Credentials: creds, Logger: log})
	if openErr != nil {
		log.Error("kernel iSCSI binding unavailable; the plugin reports not ready", "err", openErr)
		att = failingAttacher{openErr}
	} else {
		defer k.Close()
		att = volume.KernelAttacher(k)
		if metrics != nil {
			metrics.SetConnStats(k.ConnStats)
		}
		go func() {
			// Adopts the sessions an earlier instance left, then
			// recovers every dropped connection until the process ends.
			if err := k.Supervise(ctx); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("session supervisor stopped", "err", err)
			}
		}()
	}
	m, err := volume.NewManager(o.stateDir, att, volume.WithLogger(log))
	if err != nil {
		return err
	}
	d, err := driver.New(driver.Config{
		Name: o.name, Version: version, NodeID: o.nodeID, MaxVolumesPerNode: o.maxVolumes,
		Volumes: m, RunDir: o.runDir, InitiatorName: o.initiator, Logger: log, Metrics: metrics,
		Ready: func(context.Context) error { return ready(openErr, "/sys") },
	})
	if err != nil {
		return err
	}
	if metrics != nil {
		srv := &http.Server{Addr: o.metricsAddr, Handler: http.NewServeMux(), ReadHeaderTimeout: 10 * time.Second}
		srv.Handler.(*http.ServeMux).Handle("/metrics", metrics.Handler())
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server stopped", "err", err)
			}
		}()
		defer srv.Close()
	}
	if err := os.MkdirAll(filepath.Dir(sock), 0o750); err != nil {
		return err
	}
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	log.Info("serving", "endpoint", o.endpoint, "metrics", o.metricsAddr)
	return d.Serve(ctx, l)
}

// ready is Probe's check: the kernel binding opened (NETLINK_ISCSI
// answered, no other iSCSI daemon) and iscsi_tcp is loaded.
func ready(openErr error, sysfs string) error {
	if openErr != nil {
		return fmt.Errorf("%w (load iscsi_tcp: modprobe iscsi_tcp; stop iscsid: systemctl disable --now iscsid.socket iscsid)", openErr)
	}
	if _, err := os.Stat(filepath.Join(sysfs, "class", "iscsi_transport", "tcp")); err != nil {
		return errors.New("kernel module iscsi_tcp is not loaded (modprobe iscsi_tcp; Talos: machine.kernel.modules)")
	}
	return nil
}

// failingAttacher stands in when the kernel binding cannot open.
type failingAttacher struct{ err error }

func (f failingAttacher) Attach(context.Context, volume.AttachSpec) (volume.Device, error) {
	return volume.Device{}, f.err
}
func (f failingAttacher) DeleteDevice(context.Context, volume.Device) error { return f.err }
func (f failingAttacher) SessionDevices(context.Context, volume.SessionKey) ([]volume.Device, error) {
	return nil, f.err
}
func (f failingAttacher) Logout(context.Context, volume.SessionKey) error { return f.err }
