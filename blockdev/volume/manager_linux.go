package volume

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gosan/iscsi"
	"github.com/u-root/u-root/pkg/mount"
	"golang.org/x/sys/unix"
)

// NewManager returns a Manager keeping its state under root (an absolute
// path, e.g. /var/lib/kubelet/plugins/kubernetes.io) and attaching through att.
func NewManager(root string, att Attacher, opts ...Option) (*Manager, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("volume: root %q is not absolute", root)
	}
	if att == nil {
		return nil, errors.New("volume: nil Attacher")
	}
	m := &Manager{root: filepath.Clean(root), att: att, log: slog.Default(), sysfs: "/sys", ifaces: DefaultIfaceDir,
		passDelay: time.Second, multipathWait: multipathWait, multipathd: multipathdRunning}
	for _, o := range opts {
		o(m)
	}
	return m, nil
}

// mountErrno returns the errno inside a mount.Mount error (whose message
// repeats the device and path), or err itself.
func mountErrno(err error) error {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}

func (m *Manager) step(name string) error {
	if m.fault != nil {
		if err := m.fault(name); err != nil {
			return fmt.Errorf("after %s: %w", name, err)
		}
	}
	return nil
}

// lockTarget serializes session work on one target IQN (login, scan,
// device delete, logout): in this process, then across processes with an
// flock on <root>/iscsi/.locks/<iqn>.lock. It is never held across mkfs,
// fsck or mount (see lockLUN), so the LUNs of one target format and mount
// in parallel, as kubelet's targetLocks allow.
func (m *Manager) lockTarget(ctx context.Context, iqn string) (func(), error) {
	return m.lock(ctx, "target "+iqn, iqn)
}

// lockLUN serializes everything on one LUN of one target (the global
// directory, the record, format and mount): in this process, then across
// processes with an flock on <root>/iscsi/.locks/<iqn>-lun-<n>.lock. It is
// taken before lockTarget, never after it.
func (m *Manager) lockLUN(ctx context.Context, iqn string, lun int32) (func(), error) {
	name := iqn + "-lun-" + strconv.Itoa(int(lun))
	return m.lock(ctx, "LUN "+name, name)
}

func (m *Manager) lock(ctx context.Context, what, name string) (func(), error) {
	unlock, err := m.locks.Lock(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("waiting for lock on %s: %w", what, err)
	}
	unlockFile, err := lockFile(ctx, filepath.Join(m.root, "iscsi", ".locks", name+".lock"))
	if err != nil {
		unlock()
		return nil, fmt.Errorf("lock %s: %w", what, err)
	}
	return func() { unlockFile(); unlock() }, nil
}

// Stage attaches v on every portal, and in filesystem mode formats the
// device if (and only if) it is blank and mounts it at the global path. It
// is idempotent: staging a staged volume re-attaches missing paths and
// returns the same result. After an error, call Stage again or Unstage.
func (m *Manager) Stage(ctx context.Context, v Volume) (*StageResult, error) {
	n, err := v.Normalize()
	if err != nil {
		return nil, err
	}
	netdev, err := resolveIface(m.ifaces, m.sysfs, n.ISCSIInterface)
	if err != nil {
		return nil, fmt.Errorf("stage: %w", err)
	}
	dir := m.globalPath(n)
	unlock, err := m.lockLUN(ctx, n.IQN, n.LUN)
	if err != nil {
		return nil, err
	}
	defer unlock()

	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("stage: %w", err)
	}
	mounted := false
	if n.VolumeMode == ModeFilesystem {
		if mounted, err = isMountPoint(dir); err != nil {
			return nil, fmt.Errorf("stage: %w", err)
		}
	}
	// As kubelet, discover first (with discovery CHAP when asked) and log
	// in on what the target advertises. The record names every portal a
	// session may be made on, before the first login.
	portals, discFailed := m.discoverPortals(ctx, n)
	recPortals := append([]string{}, n.AllPortals()...)
	for _, p := range portals {
		if !slices.Contains(recPortals, p) {
			recPortals = append(recPortals, p)
		}
	}
	rec := &Record{
		Portals: recPortals, TargetName: n.IQN, LUN: n.LUN, Iface: n.ISCSIInterface,
		InitiatorName: n.InitiatorName, FSType: n.FSType, VolumeMode: n.VolumeMode, ReadOnly: n.ReadOnly,
		MountOptions: n.MountOptions,
	}
	// The record goes in before the first attach, so that Unstage can find
	// the sessions whatever happens next. Never write it while mounted: it
	// would land in the user's filesystem (the record lives under the mount).
	if !mounted {
		if old, err := readRecord(dir, n.VolumeMode); err == nil {
			rec.Devices, rec.DevicePath = old.Devices, old.DevicePath
			for _, p := range old.Portals { // sessions an earlier Stage may have made
				if !slices.Contains(rec.Portals, p) {
					rec.Portals = append(rec.Portals, p)
				}
			}
		}
		if err := writeRecord(dir, rec); err != nil {
			return nil, err
		}
	}
	if err := m.step("stage:record"); err != nil {
		return nil, err
	}

	res := &StageResult{GlobalPath: dir, Failed: discFailed}
	unlockTarget, err := m.lockTarget(ctx, n.IQN)
	if err != nil {
		return nil, err
	}
	err = m.attachAll(ctx, n, portals, netdev, res)
	unlockTarget()
	if err != nil {
		return nil, err
	}
	m.chooseDevice(ctx, n, res)
	if err := m.step("stage:attach"); err != nil {
		return nil, err
	}
	rec.Devices, rec.DevicePath = res.Devices, res.DevicePath
	if !mounted {
		if err := writeRecord(dir, rec); err != nil {
			return nil, err
		}
	}
	if err := m.step("stage:record-devices"); err != nil {
		return nil, err
	}
	if n.VolumeMode == ModeBlock {
		// A read-only bind does not stop writes to a device node (the
		// mount's ro flag only covers files), so a read-only block volume
		// is made read-only in the block layer (BLKROSET) on every path.
		if n.ReadOnly {
			for _, d := range append([]string{res.DevicePath}, devicePaths(res.Devices)...) {
				if err := setBlockReadOnly(d, true); err != nil {
					return nil, fmt.Errorf("stage: %w", err)
				}
			}
		}
		m.log.InfoContext(ctx, "staged block volume", "iqn", n.IQN, "lun", n.LUN, "device", res.DevicePath)
		return res, nil
	}

	res.FSType = n.FSType
	if mounted {
		if err := m.checkMountedDevice(dir, res); err != nil {
			return nil, err
		}
		return res, nil
	}
	fsType, formatted, err := prepareFilesystem(ctx, res.DevicePath, n.FSType, n.ReadOnly)
	if err != nil {
		return nil, fmt.Errorf("stage %s lun %d: %w", n.IQN, n.LUN, err)
	}
	res.Formatted = formatted
	if formatted {
		m.log.InfoContext(ctx, "formatted blank device", "device", res.DevicePath, "fsType", fsType)
	}
	if err := m.step("stage:format"); err != nil {
		return nil, err
	}
	if !formatted && !n.ReadOnly {
		// As mount-utils: repair what fsck -a can before a read-write
		// mount of an existing filesystem, refuse at exit 4 and above.
		if err := checkFilesystem(ctx, m.log, res.DevicePath, fsType); err != nil {
			return nil, fmt.Errorf("stage %s lun %d: %w", n.IQN, n.LUN, err)
		}
	}
	flags, data := mountFlagsData(n.MountOptions)
	if n.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	// A refused option fails the mount(2) call as a whole: nothing is
	// mounted, the record and the attached paths stay for Stage or Unstage.
	if _, err := mount.Mount(res.DevicePath, dir, fsType, data, flags); err != nil {
		return nil, &MountError{Device: res.DevicePath, Dir: dir, FSType: fsType, Options: n.MountOptions, Err: mountErrno(err)}
	}
	if err := m.step("stage:mount"); err != nil {
		return nil, err
	}
	m.log.InfoContext(ctx, "staged volume", "iqn", n.IQN, "lun", n.LUN, "device", res.DevicePath, "path", dir)
	return res, nil
}

// Kubelet's AttachDisk: up to maxAttachPasses passes over the portals not
// attached yet, stopping when every portal is attached, or when at least
// two are after the second pass.
const maxAttachPasses = 5

// multipathWait bounds the wait for multipathd's map (kubelet's
// waitForMultiPathToExist: 10 s).
const multipathWait = 10 * time.Second

// multipathdSocket is multipathd's abstract unix socket: something that
// builds maps is running when it accepts a connection.
const multipathdSocket = "@/org/kernel/linux/storage/multipathd"

// multipathdRunning says whether multipathd listens on its socket.
func multipathdRunning() bool {
	c, err := net.DialTimeout("unix", multipathdSocket, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// attachAll attaches every portal, in passes (see maxAttachPasses); one
// path is enough.
func (m *Manager) attachAll(ctx context.Context, n Volume, portals []string, netdev string, res *StageResult) error {
	var sessCHAP *iscsi.CHAP
	if n.SessionCHAPAuth {
		sessCHAP, _ = n.Secrets.sessionCHAP() // validated by Normalize
	}
	devs := make([]*Device, len(portals))
	lastErr := make([]error, len(portals))
	attached := 0
	for pass := 1; pass <= maxAttachPasses; pass++ {
		res.Passes = pass
		for i, p := range portals {
			if devs[i] != nil {
				continue
			}
			spec := AttachSpec{
				SessionKey:  SessionKey{Portal: p, TargetName: n.IQN, Iface: n.ISCSIInterface, InitiatorName: n.InitiatorName},
				LUN:         uint64(n.LUN),
				NetDev:      netdev,
				SessionCHAP: sessCHAP,
			}
			dev, err := m.att.Attach(ctx, spec)
			if err != nil {
				lastErr[i] = err
				m.log.WarnContext(ctx, "attach failed", "portal", p, "iqn", n.IQN, "lun", n.LUN, "pass", pass, "err", err)
				continue
			}
			if dev.Portal == "" {
				dev.Portal = p
			}
			devs[i] = &dev
			attached++
		}
		if attached == len(portals) || attached >= 2 && pass >= 2 || ctx.Err() != nil {
			break
		}
		if pass < maxAttachPasses {
			select {
			case <-ctx.Done():
			case <-time.After(m.passDelay):
			}
		}
	}
	for i, p := range portals {
		if devs[i] != nil {
			res.Devices = append(res.Devices, *devs[i])
			continue
		}
		pe := PortalError{Portal: p, Err: lastErr[i]}
		if pe.Err == nil {
			pe.Err = ctx.Err()
		}
		res.Failed = append(res.Failed, pe)
	}
	if len(res.Devices) == 0 {
		errs := make([]error, len(res.Failed)) // discovery and attach failures
		for i := range res.Failed {
			errs[i] = &res.Failed[i]
		}
		return fmt.Errorf("attach %s lun %d: no path after %d passes: %w", n.IQN, n.LUN, res.Passes, errors.Join(errs...))
	}
	return nil
}

// chooseDevice sets res.DevicePath: the dm multipath map over the paths,
// or the first path. A volume with several portals gets the map
// multipathd builds over its paths, waited for (without the target lock)
// up to multipathWait while multipathd runs, as kubelet does.
func (m *Manager) chooseDevice(ctx context.Context, n Volume, res *StageResult) {
	paths := devicePaths(res.Devices)
	portals := n.AllPortals()
	res.DevicePath = findMultipath(m.sysfs, paths)
	complete := res.DevicePath != "" && mapHolds(m.sysfs, res.DevicePath, paths)
	if !complete && len(portals) > 1 && m.multipathd() {
		// multipathd builds the map on the paths' uevents, some time after
		// they appear, and adds the later paths to it one by one: wait,
		// bounded as kubelet does, for a map over every path (a map over
		// some of them is used when the time is up).
		wctx, cancel := context.WithTimeout(ctx, m.multipathWait)
		_ = waitFor(wctx, 100*time.Millisecond, func() bool {
			res.DevicePath = findMultipath(m.sysfs, paths)
			return res.DevicePath != "" && mapHolds(m.sysfs, res.DevicePath, paths)
		})
		cancel()
	}
	if res.DevicePath != "" {
		res.Multipath = true
		return
	}
	res.DevicePath = paths[0]
	if len(paths) > 1 {
		m.log.WarnContext(ctx, "several paths but no multipath map; using the first", "paths", paths)
	}
}

// waitFor polls cond every interval until it holds or ctx ends.
func waitFor(ctx context.Context, interval time.Duration, cond func() bool) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// checkMountedDevice verifies that what is mounted at dir is this volume's device.
func (m *Manager) checkMountedDevice(dir string, res *StageResult) error {
	mi, err := readMountInfo()
	if err != nil {
		return err
	}
	at := mountsAt(mi, dir)
	if len(at) == 0 {
		return fmt.Errorf("stage: %s: %w", dir, ErrNotStaged)
	}
	top := at[len(at)-1]
	cands := []string{res.DevicePath}
	for _, d := range res.Devices {
		cands = append(cands, d.Path)
	}
	for _, c := range cands {
		if maj, min, err := devNumber(c); err == nil && (maj == top.Major && min == top.Minor || sourceIsDevice(top, maj, min)) {
			return nil
		}
	}
	return fmt.Errorf("stage: %s has %s (%d:%d) mounted, not %s", dir, top.Source, top.Major, top.Minor, res.DevicePath)
}

// Publish bind-mounts the staged volume at target: the global directory
// onto a directory (filesystem mode), or the device onto a file (block
// mode). Read-only binds are remounted MS_RDONLY. Idempotent.
func (m *Manager) Publish(ctx context.Context, v Volume, target string, o PublishOptions) error {
	n, err := v.Normalize()
	if err != nil {
		return err
	}
	if !filepath.IsAbs(target) {
		return fmt.Errorf("publish: target %q is not absolute", target)
	}
	switch o.FSGroupChangePolicy {
	case "", FSGroupChangeAlways, FSGroupChangeOnRootMismatch:
	default:
		return fmt.Errorf("publish: fsGroupChangePolicy %q is neither %q nor %q", o.FSGroupChangePolicy, FSGroupChangeAlways, FSGroupChangeOnRootMismatch)
	}
	dir := m.globalPath(n)
	ro := o.ReadOnly || n.ReadOnly

	var src string
	if n.VolumeMode == ModeBlock {
		rec, err := readRecord(dir, ModeBlock)
		if err != nil || rec.DevicePath == "" {
			return fmt.Errorf("publish: %s: %w", dir, ErrNotStaged)
		}
		src = rec.DevicePath
		if ro && !rec.ReadOnly {
			return fmt.Errorf("publish: %s: %w", target, ErrBlockReadOnly)
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		f, err := os.OpenFile(target, os.O_CREATE|os.O_RDONLY, 0o640)
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		f.Close()
	} else {
		ok, err := isMountPoint(dir)
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		if !ok {
			return fmt.Errorf("publish: %s: %w", dir, ErrNotStaged)
		}
		src = dir
		if err := os.MkdirAll(target, 0o750); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	if err := m.step("publish:mkdir"); err != nil {
		return err
	}

	mi, err := readMountInfo()
	if err != nil {
		return err
	}
	if at := mountsAt(mi, target); len(at) > 0 {
		if err := sameSource(mi, src, at[len(at)-1], n.VolumeMode); err != nil {
			return fmt.Errorf("publish: %s: %w", target, err)
		}
	} else {
		if _, err := mount.Mount(src, target, "", "", unix.MS_BIND); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		if err := m.step("publish:bind"); err != nil {
			return err
		}
		if !ro && o.FSGroup != nil && n.VolumeMode == ModeFilesystem {
			setVolumeOwnership(ctx, m.log, target, int(*o.FSGroup), false, o.FSGroupChangePolicy)
		}
	}
	if ro {
		// Also repairs a bind left writable by a crash between the two mounts.
		if _, err := mount.Mount("", target, "", "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY); err != nil {
			return fmt.Errorf("publish: read-only remount: %w", err)
		}
	}
	if err := m.step("publish:remount"); err != nil {
		return err
	}
	m.log.InfoContext(ctx, "published volume", "iqn", n.IQN, "lun", n.LUN, "target", target, "readOnly", ro)
	return nil
}

// sameSource checks that mount top (at a publish target) shows src.
func sameSource(mi []MountInfo, src string, top MountInfo, mode Mode) error {
	if mode == ModeBlock {
		maj, min, err := devNumber(src)
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Stat(top.MountPoint, &st); err != nil {
			return err
		}
		if unix.Major(uint64(st.Rdev)) == maj && unix.Minor(uint64(st.Rdev)) == min {
			return nil
		}
		return fmt.Errorf("already has another device bound (%d:%d)", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
	}
	at := mountsAt(mi, src)
	if len(at) > 0 && at[len(at)-1].Major == top.Major && at[len(at)-1].Minor == top.Minor && at[len(at)-1].Root == top.Root {
		return nil
	}
	return fmt.Errorf("already has %s (%d:%d) mounted", top.Source, top.Major, top.Minor)
}

// maxStacked bounds how many stacked mounts Unpublish removes at one path.
const maxStacked = 16

// Unpublish unmounts target and removes the directory or file Publish
// created. A missing or unmounted target is success. A directory that is
// not empty after unmounting is never removed (it is not ours).
func (m *Manager) Unpublish(ctx context.Context, target string) error {
	if !filepath.IsAbs(target) {
		return fmt.Errorf("unpublish: target %q is not absolute", target)
	}
	if err := unmountAll(target); err != nil {
		return fmt.Errorf("unpublish: %w", err)
	}
	if err := m.step("unpublish:unmount"); err != nil {
		return err
	}
	fi, err := os.Lstat(target)
	switch {
	case isNotExist(err):
		return nil
	case err != nil:
		return fmt.Errorf("unpublish: %w", err)
	case fi.IsDir():
		err = os.Remove(target)
	case fi.Mode().IsRegular() && fi.Size() == 0:
		err = os.Remove(target)
	default:
		return fmt.Errorf("unpublish: %s is not an unmounted directory or empty file; leaving it", target)
	}
	if err != nil && !isNotExist(err) {
		return fmt.Errorf("unpublish: %w", err)
	}
	m.log.InfoContext(ctx, "unpublished volume", "target", target)
	return nil
}

// unmountAll unmounts everything stacked at p.
func unmountAll(p string) error {
	for i := 0; i < maxStacked; i++ {
		ok, err := isMountPoint(p)
		if err != nil || !ok {
			return err
		}
		if err := mount.Unmount(p, false, false); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s: still mounted after %d unmounts", p, maxStacked)
}

// Unstage undoes Stage for the volume staged at globalPath (see
// GlobalPath): unmount, flush and delete every device of the LUN, log out
// of each session that has no other device and no mount left, remove the
// directory. It refuses (ErrInUse) while the device is still mounted
// elsewhere, e.g. still published. Idempotent; safe after any crash.
func (m *Manager) Unstage(ctx context.Context, globalPath string) error {
	dir := filepath.Clean(globalPath)
	if !filepath.IsAbs(dir) || !strings.HasPrefix(dir, filepath.Join(m.root, "iscsi")+string(filepath.Separator)) {
		return fmt.Errorf("unstage: %q is not under %s", globalPath, filepath.Join(m.root, "iscsi"))
	}
	// The record is under the mount, so the LUN lock is named from the
	// directory (<portal>-<iqn>-lun-<n>), which Stage derived from them.
	if _, iqn, lun, ok := parseGlobalName(filepath.Base(dir)); ok {
		unlock, err := m.lockLUN(ctx, iqn, lun)
		if err != nil {
			return err
		}
		defer unlock()
	}
	mi, err := readMountInfo()
	if err != nil {
		return err
	}
	if at := mountsAt(mi, dir); len(at) > 0 {
		top := at[len(at)-1]
		var others []string
		for _, x := range mi {
			if x.Major == top.Major && x.Minor == top.Minor && x.MountPoint != cleanPath(dir) {
				others = append(others, x.MountPoint)
			}
		}
		if len(others) > 0 {
			return fmt.Errorf("unstage: %w", &InUseError{Device: top.Source, Mounts: others})
		}
		if err := unmountAll(dir); err != nil {
			return fmt.Errorf("unstage: %w", err)
		}
	}
	if err := m.step("unstage:unmount"); err != nil {
		return err
	}

	rec, err := readRecord(dir, modeOfPath(m.root, dir))
	if isNotExist(err) {
		if _, err := os.Stat(dir); isNotExist(err) {
			return nil // never staged, or fully unstaged
		}
		// No record in the directory (kubelet's in-tree plugin lost it, or
		// a crash came before or after it): as kubelet, take the portal,
		// target, LUN and iface from the path. Nothing of the LUN left
		// means nothing to do but the rmdir.
		var ok bool
		if rec, ok = recordFromPath(m.root, dir); !ok {
			if err := os.Remove(dir); err != nil && !isNotExist(err) {
				return fmt.Errorf("unstage: %w", err)
			}
			return nil
		}
		m.log.InfoContext(ctx, "no attach record; using the path", "path", dir, "iqn", rec.TargetName, "lun", rec.LUN)
	} else if err != nil {
		return fmt.Errorf("unstage: %w", err)
	}

	unlock, err := m.lockTarget(ctx, rec.TargetName)
	if err != nil {
		return err
	}
	defer unlock()
	if ok, err := isMountPoint(dir); err != nil || ok {
		return fmt.Errorf("unstage: %s was mounted again concurrently (%v)", dir, err)
	}

	// The devices of this LUN as they are now (recorded paths may be stale
	// after a reboot: sdX names get reused).
	var paths []Device
	for _, p := range rec.Portals {
		devs, err := m.att.SessionDevices(ctx, SessionKey{Portal: p, TargetName: rec.TargetName, Iface: rec.Iface, InitiatorName: rec.InitiatorName})
		if err != nil {
			return fmt.Errorf("unstage: devices of %s: %w", p, err)
		}
		for _, d := range devs {
			if d.LUN == uint64(rec.LUN) {
				paths = append(paths, d)
			}
		}
	}
	names := make([]string, len(paths))
	for i, d := range paths {
		names[i] = d.Path
	}
	dm := findMultipath(m.sysfs, names)

	if mi, err = readMountInfo(); err != nil {
		return err
	}
	for _, d := range append(names, dm) {
		if d == "" {
			continue
		}
		used, err := mountsOfDevice(mi, d)
		if isNotExist(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("unstage: %w", err)
		}
		if len(used) > 0 {
			mps := make([]string, len(used))
			for i, u := range used {
				mps[i] = u.MountPoint
			}
			return fmt.Errorf("unstage: %w", &InUseError{Device: d, Mounts: mps})
		}
	}

	for _, d := range append([]string{dm}, names...) {
		if d != "" {
			if rec.VolumeMode == ModeBlock && rec.ReadOnly {
				if err := setBlockReadOnly(d, false); err != nil && !isNotExist(err) {
					return fmt.Errorf("unstage: %w", err)
				}
			}
			if err := flushDevice(d); err != nil {
				return fmt.Errorf("unstage: %w", err)
			}
		}
	}
	if dm != "" {
		if err := removeMultipath(ctx, dm); err != nil {
			return fmt.Errorf("unstage: %w", err)
		}
	}
	for _, d := range paths {
		if err := m.att.DeleteDevice(ctx, d); err != nil {
			return fmt.Errorf("unstage: delete %s: %w", d.Path, err)
		}
	}
	if err := m.step("unstage:delete-devices"); err != nil {
		return err
	}

	for _, p := range rec.Portals {
		key := SessionKey{Portal: p, TargetName: rec.TargetName, Iface: rec.Iface, InitiatorName: rec.InitiatorName}
		busy, err := m.sessionBusy(ctx, key)
		if err != nil {
			return fmt.Errorf("unstage: %w", err)
		}
		if busy {
			m.log.InfoContext(ctx, "session still used by other LUNs; not logging out", "session", key.String())
			continue
		}
		if err := m.att.Logout(ctx, key); err != nil {
			return fmt.Errorf("unstage: logout %s: %w", key, err)
		}
	}
	if err := m.step("unstage:logout"); err != nil {
		return err
	}

	if err := os.Remove(filepath.Join(dir, RecordFile)); err != nil && !isNotExist(err) {
		return fmt.Errorf("unstage: %w", err)
	}
	if err := m.step("unstage:remove-record"); err != nil {
		return err
	}
	if err := os.Remove(dir); err != nil && !isNotExist(err) {
		return fmt.Errorf("unstage: %w", err)
	}
	m.log.InfoContext(ctx, "unstaged volume", "iqn", rec.TargetName, "lun", rec.LUN)
	return nil
}

// sessionBusy says whether key still has devices (other LUNs) or any of its
// devices is mounted on this node.
func (m *Manager) sessionBusy(ctx context.Context, key SessionKey) (bool, error) {
	devs, err := m.att.SessionDevices(ctx, key)
	if err != nil {
		return false, fmt.Errorf("devices of %s: %w", key, err)
	}
	if len(devs) > 0 {
		return true, nil
	}
	return false, nil
}

// flushDevice writes back and drops the buffer cache of a block device.
func flushDevice(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if isNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("flush %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("flush %s: fsync: %w", path, err)
	}
	if err := unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0); err != nil {
		return fmt.Errorf("flush %s: BLKFLSBUF: %w", path, err)
	}
	return nil
}

// removeMultipath flushes and removes a dm multipath map (multipath -f, or
// dmsetup remove when multipath-tools is absent).
func removeMultipath(ctx context.Context, dm string) error {
	var args []string
	if bin, err := exec.LookPath("multipath"); err == nil {
		args = []string{bin, "-f", dm}
	} else if bin, err := exec.LookPath("dmsetup"); err == nil {
		// dmsetup takes a map name, not a /dev/dm-N path ("Device dm-0 not
		// found"): name the map by its device number instead.
		var st unix.Stat_t
		if err := unix.Stat(dm, &st); err != nil {
			return fmt.Errorf("remove multipath map %s: %w", dm, err)
		}
		args = []string{bin, "remove", "--retry",
			"-j", strconv.FormatUint(uint64(unix.Major(st.Rdev)), 10), "-m", strconv.FormatUint(uint64(unix.Minor(st.Rdev)), 10)}
	} else {
		return &ToolMissingError{Tool: "multipath", Package: "multipath-tools"}
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

func devicePaths(devs []Device) []string {
	out := make([]string, len(devs))
	for i, d := range devs {
		out[i] = d.Path
	}
	return out
}

// setBlockReadOnly sets or clears the block layer's read-only flag (BLKROSET).
func setBlockReadOnly(path string, ro bool) error {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	v := 0
	if ro {
		v = 1
	}
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.BLKROSET, v); err != nil {
		return fmt.Errorf("BLKROSET %s: %w", path, err)
	}
	return nil
}
