package volume

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gosan/iscsi/internal/keymutex"
)

// Manager runs the volume lifecycle (Stage, Publish, Unpublish, Unstage)
// for one node. It is safe for concurrent use; several processes may share
// one root directory.
type Manager struct {
	root   string
	att    Attacher
	log    *slog.Logger
	sysfs  string
	ifaces string
	locks  keymutex.Mutex

	// passDelay separates attach passes; multipathWait bounds the wait for
	// multipathd's map, multipathd says whether it runs (tests set them).
	passDelay     time.Duration
	multipathWait time.Duration
	multipathd    func() bool

	// fault, when set (tests), is called after each named step; a non-nil
	// result aborts the operation there, as a crash would.
	fault func(step string) error
}

// Option configures a Manager.
type Option func(*Manager)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(m *Manager) { m.log = l } }

// WithSysfs sets where sysfs is mounted (default /sys), for multipath lookup
// and network devices.
func WithSysfs(dir string) Option { return func(m *Manager) { m.sysfs = dir } }

// WithIfaceDir sets where open-iscsi iface records are read (default
// DefaultIfaceDir).
func WithIfaceDir(dir string) Option { return func(m *Manager) { m.ifaces = dir } }

// WithMultipathWait bounds how long Stage waits for multipathd to build a
// map over every path of a volume with several portals (default 10 s, as
// kubelet; a slow or loaded node may need more).
func WithMultipathWait(d time.Duration) Option { return func(m *Manager) { m.multipathWait = d } }

// Errors callers branch on (errors.Is).
var (
	ErrNotStaged = errors.New("volume is not staged")
	ErrInUse     = errors.New("device is still in use")
	// ErrBlockReadOnly: a read-only publish of a block volume staged
	// writable cannot be enforced (device nodes ignore a mount's ro flag);
	// stage the volume with ReadOnly instead.
	ErrBlockReadOnly = errors.New("read-only publish of a writable block volume cannot be enforced; stage it readOnly")
)

// InUseError lists the mounts that keep a device busy. Matches ErrInUse.
type InUseError struct {
	Device string
	Mounts []string
}

func (e *InUseError) Error() string {
	return fmt.Sprintf("%s is still mounted at %s", e.Device, strings.Join(e.Mounts, ", "))
}

// Is matches ErrInUse.
func (e *InUseError) Is(target error) bool { return target == ErrInUse }

// MountError is a failed global mount in Stage: the kernel refused the
// device, the filesystem or one of the mount options. Nothing is mounted.
type MountError struct {
	Device  string
	Dir     string
	FSType  string
	Options []string // Volume.MountOptions as normalized (never secret)
	Err     error    // usually a unix.Errno: EINVAL for an unknown option
}

func (e *MountError) Error() string {
	opts := "none"
	if len(e.Options) > 0 {
		opts = strings.Join(e.Options, ",")
	}
	msg := fmt.Sprintf("stage: mount %s at %s (fsType %s, mount options %s): %v", e.Device, e.Dir, e.FSType, opts, e.Err)
	if len(e.Options) > 0 && errors.Is(e.Err, syscall.EINVAL) {
		msg += " (an option may be unknown to " + e.FSType + "; the kernel log names it)"
	}
	return msg
}

func (e *MountError) Unwrap() error { return e.Err }

// PortalError is a failed attach on one portal.
type PortalError struct {
	Portal string
	Err    error
}

func (e *PortalError) Error() string { return "portal " + e.Portal + ": " + e.Err.Error() }

func (e *PortalError) Unwrap() error { return e.Err }

// StageResult describes a staged volume.
type StageResult struct {
	GlobalPath string // the global directory (mount point in filesystem mode)
	// DevicePath is the device chosen: the dm multipath map over the
	// paths (Multipath true) or, without one, the first path.
	DevicePath string
	Multipath  bool
	Devices    []Device      // the paths: one per attached portal, in portal order
	Failed     []PortalError // portals not attached after every pass (the volume works without them)
	Passes     int           // attach passes made over the portals (at most 5, as kubelet)
	FSType     string        // filesystem mode only
	Formatted  bool          // true if this Stage created the filesystem
}

// GlobalPath returns v's global directory, kubelet's layout:
// <root>/iscsi/iface-<iface>/<portal>-<iqn>-lun-<n> for a filesystem
// volume, <root>/iscsi/volumeDevices/iface-<iface>/<portal>-<iqn>-lun-<n>
// for a block volume. A volume staged by an earlier version at
// <root>/iscsi/<iface>/<portal>-<iqn>-lun-<n> keeps that directory until
// it is unstaged.
func (m *Manager) GlobalPath(v Volume) (string, error) {
	n, err := v.Normalize()
	if err != nil {
		return "", err
	}
	return m.globalPath(n), nil
}

func (m *Manager) globalPath(n Volume) string {
	name := n.TargetPortal + "-" + n.IQN + "-lun-" + strconv.Itoa(int(n.LUN))
	legacy := filepath.Join(m.root, "iscsi", n.ISCSIInterface, name)
	if _, err := os.Stat(legacy); err == nil {
		return legacy
	}
	if n.VolumeMode == ModeBlock {
		return filepath.Join(m.root, "iscsi", blockDir, ifacePrefix+n.ISCSIInterface, name)
	}
	return filepath.Join(m.root, "iscsi", ifacePrefix+n.ISCSIInterface, name)
}

// Path elements of kubelet's layout.
const (
	ifacePrefix = "iface-"        // before the iface name
	blockDir    = "volumeDevices" // block volumes' tree
)

// parseGlobalName splits a global directory's name, <portal>-<iqn>-lun-<n>,
// into the portal, the target name and the LUN.
func parseGlobalName(name string) (portal, iqn string, lun int32, ok bool) {
	i := strings.LastIndex(name, "-lun-")
	if i < 0 {
		return "", "", 0, false
	}
	n, err := strconv.ParseInt(name[i+len("-lun-"):], 10, 32)
	if err != nil || n < 0 {
		return "", "", 0, false
	}
	rest := name[:i]
	start := -1
	for _, p := range []string{"-iqn.", "-eui.", "-naa."} {
		if j := strings.Index(rest, p); j >= 0 && (start < 0 || j < start) {
			start = j
		}
	}
	if start <= 0 {
		return "", "", 0, false
	}
	return rest[:start], rest[start+1:], int32(n), true
}

// recordFromPath is what kubelet falls back to when a global directory has
// no iscsi.json: the portal, target and LUN from the directory's name, the
// iface from its parent (iface-<name>, or <name> in this package's earlier
// layout), the mode from the tree it is in.
func recordFromPath(root, dir string) (*Record, bool) {
	portal, iqn, lun, ok := parseGlobalName(filepath.Base(dir))
	if !ok {
		return nil, false
	}
	parent := filepath.Dir(dir)
	r := &Record{Portals: []string{portal}, TargetName: iqn, LUN: lun,
		Iface: strings.TrimPrefix(filepath.Base(parent), ifacePrefix), VolumeMode: modeOfPath(root, dir)}
	return r, true
}

// modeOfPath says which tree of kubelet's layout dir is in.
func modeOfPath(root, dir string) Mode {
	if strings.HasPrefix(dir, filepath.Join(root, "iscsi", blockDir)+string(filepath.Separator)) {
		return ModeBlock
	}
	return ModeFilesystem
}

// PublishOptions are per-consumer settings.
type PublishOptions struct {
	ReadOnly bool // bind read-only (also implied by Volume.ReadOnly)
	// FSGroup (filesystem mode, not read-only): give this group access as
	// kubelet's SetVolumeOwnership does, right after the bind: group
	// ownership, ug+rw on files, ug+rwx and setgid on directories.
	// Failures on single files are logged, never returned.
	FSGroup *int64
	// FSGroupChangePolicy: "" or FSGroupChangeAlways walks the volume on
	// every Publish; FSGroupChangeOnRootMismatch only when the root does
	// not match yet.
	FSGroupChangePolicy FSGroupChangePolicy
}
