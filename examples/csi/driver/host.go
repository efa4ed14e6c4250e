package driver

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gosan/iscsi/blockdev"
	"github.com/gosan/iscsi/blockdev/volume"
)

// rdev returns the device number of the block device node p.
func rdev(p string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return 0, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, fmt.Errorf("%s is not a block device", p)
	}
	return st.Rdev, nil
}

// deviceSize is BLKGETSIZE64 of a block device node.
func deviceSize(p string) (int64, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var size uint64
	if err := ioctlGetSize64(int(f.Fd()), &size); err != nil {
		return 0, fmt.Errorf("BLKGETSIZE64 %s: %w", p, err)
	}
	return int64(size), nil
}

// onVolume says whether path shows the volume's device: a directory of the
// mounted filesystem, or the bound device node (block).
func onVolume(st *volume.Staged, path string) (bool, error) {
	want, err := rdev(st.DevicePath)
	if err != nil {
		return false, err
	}
	var s unix.Stat_t
	if err := unix.Stat(path, &s); err != nil {
		return false, err
	}
	if s.Mode&unix.S_IFMT == unix.S_IFBLK {
		return s.Rdev == want, nil
	}
	return s.Dev == want, nil
}

func (n node) NodeGetVolumeStats(ctx context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	st, fi, err := n.lookupAt(req.GetVolumeId(), req.GetVolumePath())
	if err != nil {
		return nil, err
	}
	path := req.GetVolumePath()
	ok, err := onVolume(st, path)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "volume %q at %s: %v", st.VolumeID, path, err)
	}
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume %q is not mounted at %s", st.VolumeID, path)
	}
	if fi.Mode()&os.ModeDevice != 0 {
		size, err := deviceSize(path)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		return &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{{Unit: csi.VolumeUsage_BYTES, Total: size}}}, nil
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return nil, status.Errorf(codes.Internal, "statfs %s: %v", path, err)
	}
	bs := int64(sfs.Bsize)
	return &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{
		{Unit: csi.VolumeUsage_BYTES, Total: int64(sfs.Blocks) * bs, Available: int64(sfs.Bavail) * bs,
			Used: int64(sfs.Blocks-sfs.Bfree) * bs},
		{Unit: csi.VolumeUsage_INODES, Total: int64(sfs.Files), Available: int64(sfs.Ffree),
			Used: int64(sfs.Files - sfs.Ffree)},
	}}, nil
}

// Health reasons (VolumeHealthEntry.reason).
const (
	reasonSessionFailed = "SessionFailed"
	reasonDeviceOffline = "DeviceOffline"
	reasonReadOnlyFS    = "FilesystemReadOnly"
	reasonNoDevice      = "DeviceMissing"
)

// health inspects the sessions, devices and mount of a staged volume.
func (n node) health(st *volume.Staged) []*csi.VolumeHealth_VolumeHealthEntry {
	var out []*csi.VolumeHealth_VolumeHealthEntry
	add := func(t csi.VolumeHealthErrorType, reason, msg string) {
		for _, e := range out {
			if e.Status == t && e.Reason == reason {
				e.Message += "; " + msg
				return
			}
		}
		out = append(out, &csi.VolumeHealth_VolumeHealthEntry{Status: t, Reason: reason, Message: msg})
	}
	// A problem on some paths only is DEGRADED (the volume still works
	// through the others), on every path INACCESSIBLE.
	severity := func(bad, total int) csi.VolumeHealthErrorType {
		if bad < total {
			return csi.VolumeHealthErrorType_DEGRADED
		}
		return csi.VolumeHealthErrorType_INACCESSIBLE
	}
	sys := blockdev.Sysfs{Root: n.d.cfg.SysfsRoot}
	var sessMsgs []string
	portals := st.Volume.AllPortals()
	for _, p := range portals {
		s, err := sys.FindSession(p, st.Volume.IQN, st.Volume.ISCSIInterface, st.Volume.InitiatorName)
		switch {
		case err != nil || s == nil:
			sessMsgs = append(sessMsgs, fmt.Sprintf("no session to %s at %s", st.Volume.IQN, p))
		case s.State != "LOGGED_IN":
			sessMsgs = append(sessMsgs, fmt.Sprintf("session %d to %s at %s is %s (the plugin is reconnecting; I/O is queued until the recovery timeout)", s.SID, st.Volume.IQN, p, s.State))
		}
	}
	for _, m := range sessMsgs {
		add(severity(len(sessMsgs), len(portals)), reasonSessionFailed, m)
	}
	type devProblem struct{ reason, msg string }
	var devProbs []devProblem
	for _, d := range st.Devices {
		name := filepath.Base(d.Path)
		b, err := os.ReadFile(filepath.Join(n.d.cfg.SysfsRoot, "block", name, "device", "state"))
		switch {
		case os.IsNotExist(err):
			devProbs = append(devProbs, devProblem{reasonNoDevice, d.Path + " no longer exists"})
		case err == nil && strings.TrimSpace(string(b)) != "running":
			devProbs = append(devProbs, devProblem{reasonDeviceOffline, fmt.Sprintf("%s is %s", d.Path, strings.TrimSpace(string(b)))})
		}
	}
	for _, p := range devProbs {
		add(severity(len(devProbs), len(st.Devices)), p.reason, p.msg)
	}
	if st.Volume.VolumeMode == volume.ModeFilesystem && !st.Volume.ReadOnly {
		if f, err := os.Open("/proc/self/mountinfo"); err == nil {
			mi, _ := volume.ParseMountInfo(f)
			f.Close()
			for _, m := range mi {
				if m.MountPoint == st.GlobalPath && hasOpt(m.SuperOptions, "ro") {
					add(csi.VolumeHealthErrorType_DEGRADED, reasonReadOnlyFS,
						fmt.Sprintf("the %s filesystem on %s was remounted read-only (an I/O error; see the kernel log); unstage and stage it again after fixing the cause", m.FSType, m.Source))
				}
			}
		}
	}
	return out
}

func hasOpt(opts, o string) bool {
	for _, x := range strings.Split(opts, ",") {
		if x == o {
			return true
		}
	}
	return false
}

// NodeGetVolumeHealth (spec v1.13; VolumeCondition in NodeGetVolumeStats
// before it): abnormal when a session is failed or recovering, a device is
// offline or gone, or the filesystem was remounted read-only.
func (n node) NodeGetVolumeHealth(ctx context.Context, req *csi.NodeGetVolumeHealthRequest) (*csi.NodeGetVolumeHealthResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	st, err := n.d.cfg.Volumes.LookupStaged(id)
	if os.IsNotExist(err) {
		return nil, status.Errorf(codes.NotFound, "volume %q is not staged on this node", id)
	}
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	h := n.health(st)
	if len(h) > 0 {
		n.d.volLog("NodeGetVolumeHealth").WarnContext(ctx, "volume abnormal", "conditions", len(h), "first", h[0].Reason)
	}
	return &csi.NodeGetVolumeHealthResponse{VolumeHealth: &csi.VolumeHealth{VolumeId: id, HealthStatuses: h}}, nil
}

// run runs a tool, its output in the error.
func run(ctx context.Context, name string, args ...string) error {
	if _, err := exec.LookPath(name); err != nil {
		return &volume.ToolMissingError{Tool: name, Package: toolPackage[name]}
	}
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

var toolPackage = map[string]string{"resize2fs": "e2fsprogs", "xfs_growfs": "xfsprogs", "multipathd": "multipath-tools", "dmsetup": "dmsetup"}

// resizeMultipath grows the multipath map over the volume's paths to the
// paths' new size: through multipathd when it runs (it owns the map),
// otherwise by reloading the map's table with the new length (what
// multipathd does), after checking that every path agrees on the size.
func (n node) resizeMultipath(ctx context.Context, st *volume.Staged) error {
	dm := filepath.Base(st.DevicePath)
	nameB, err := os.ReadFile(filepath.Join(n.d.cfg.SysfsRoot, "block", dm, "dm", "name"))
	if err != nil {
		return fmt.Errorf("name of %s: %w", st.DevicePath, err)
	}
	name := strings.TrimSpace(string(nameB))
	if _, err := os.Stat("/run/multipathd.sock"); err == nil {
		return run(ctx, "multipathd", "resize", "map", name)
	}
	var sectors string
	for _, d := range st.Devices {
		b, err := os.ReadFile(filepath.Join(n.d.cfg.SysfsRoot, "block", filepath.Base(d.Path), "size"))
		if err != nil {
			return fmt.Errorf("size of %s: %w", d.Path, err)
		}
		sz := strings.TrimSpace(string(b))
		if sectors != "" && sz != sectors {
			return fmt.Errorf("the paths disagree on the size after the rescan (%s and %s sectors); rescan again", sectors, sz)
		}
		sectors = sz
	}
	out, err := exec.CommandContext(ctx, "dmsetup", "table", name).Output()
	if err != nil {
		if _, lerr := exec.LookPath("dmsetup"); lerr != nil {
			return &volume.ToolMissingError{Tool: "dmsetup", Package: "dmsetup"}
		}
		return fmt.Errorf("dmsetup table %s: %w", name, err)
	}
	f := strings.Fields(strings.TrimSpace(string(out)))
	if len(f) < 3 || f[0] != "0" || f[2] != "multipath" || strings.Count(strings.TrimSpace(string(out)), "\n") > 0 {
		return fmt.Errorf("map %s is not a single multipath target: %q", name, strings.TrimSpace(string(out)))
	}
	if f[1] == sectors {
		return nil
	}
	f[1] = sectors
	if err := run(ctx, "dmsetup", "reload", name, "--table", strings.Join(f, " ")); err != nil {
		return err
	}
	return run(ctx, "dmsetup", "resume", name)
}

// NodeExpandVolume rescans the capacity on every path, grows a multipath
// map, and grows ext2/3/4 (resize2fs) or xfs (xfs_growfs) online. It
// returns the device's new size; OUT_OF_RANGE when the device is still
// smaller than required_bytes (the LUN was not grown on the target).
func (n node) NodeExpandVolume(ctx context.Context, req *csi.NodeExpandVolumeRequest) (*csi.NodeExpandVolumeResponse, error) {
	st, _, err := n.lookupAt(req.GetVolumeId(), req.GetVolumePath())
	if err != nil {
		return nil, err
	}
	if c := req.GetVolumeCapability(); c != nil {
		if _, _, err := accessMode(c); err != nil {
			return nil, err
		}
	}
	id := st.VolumeID
	ctx, release, err := n.d.acquire(ctx, id)
	if err != nil {
		return nil, err
	}
	defer release()
	log := n.d.volLog("NodeExpandVolume")
	for _, d := range st.Devices {
		p := filepath.Join(n.d.cfg.SysfsRoot, "block", filepath.Base(d.Path), "device", "rescan")
		if err := os.WriteFile(p, []byte("1"), 0o200); err != nil {
			return nil, status.Errorf(codes.Internal, "rescan %s: %v", d.Path, err)
		}
	}
	if strings.HasPrefix(filepath.Base(st.DevicePath), "dm-") {
		if err := n.resizeMultipath(ctx, st); err != nil {
			return nil, toStatus("expand: multipath map", err)
		}
	}
	size, err := deviceSize(st.DevicePath)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if req.GetCapacityRange().GetRequiredBytes() > size {
		return nil, status.Errorf(codes.OutOfRange, "volume %q: the device is %d bytes after a rescan, %d were required: grow the LUN on the target first",
			id, size, req.GetCapacityRange().GetRequiredBytes())
	}
	if st.Volume.VolumeMode == volume.ModeFilesystem {
		if st.Volume.ReadOnly {
			return nil, status.Errorf(codes.FailedPrecondition, "volume %q is read-only: its filesystem cannot be grown", id)
		}
		switch st.Volume.FSType {
		case "xfs":
			err = run(ctx, "xfs_growfs", st.GlobalPath)
		default:
			err = run(ctx, "resize2fs", st.DevicePath)
		}
		if err != nil {
			return nil, toStatus("expand: grow filesystem", err)
		}
	}
	log.InfoContext(ctx, "expanded", "device", st.DevicePath, "bytes", size)
	return &csi.NodeExpandVolumeResponse{CapacityBytes: size}, nil
}

// publishedElsewhere lists the mount points that show the volume's device
// other than its global directory, the staging path and target: a
// filesystem bind (same device number) or a block bind (the device node,
// a devtmpfs mount whose root is the node's name).
func publishedElsewhere(st *volume.Staged, staging, target string) ([]string, error) {
	dev, err := rdev(st.DevicePath)
	if err != nil {
		return nil, err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	mi, err := volume.ParseMountInfo(f)
	if err != nil {
		return nil, err
	}
	skip := map[string]bool{filepath.Clean(st.GlobalPath): true, filepath.Clean(staging): true, filepath.Clean(target): true}
	var out []string
	for _, m := range mi {
		fsBind := m.Major == unix.Major(dev) && m.Minor == unix.Minor(dev)
		blockBind := m.FSType == "devtmpfs" && m.Root == "/"+filepath.Base(st.DevicePath)
		if (fsBind || blockBind) && !skip[m.MountPoint] {
			out = append(out, m.MountPoint)
		}
	}
	return out, nil
}

// NodeGetStorageHealth reports the node's iSCSI storage: unreachable when
// the kernel binding is not usable (Probe's reason), degraded for every
// session that is not logged in.
func (n node) NodeGetStorageHealth(ctx context.Context, _ *csi.NodeGetStorageHealthRequest) (*csi.NodeGetStorageHealthResponse, error) {
	var out []*csi.NodeGetStorageHealthResponse_StorageBackendHealth
	if n.d.cfg.Ready != nil {
		if err := n.d.cfg.Ready(ctx); err != nil {
			out = append(out, &csi.NodeGetStorageHealthResponse_StorageBackendHealth{
				Status: csi.StorageHealthErrorType_STORAGE_UNREACHABLE, Reason: "KernelBindingUnavailable", Message: err.Error()})
		}
	}
	ss, err := blockdev.Sysfs{Root: n.d.cfg.SysfsRoot}.Sessions()
	if err != nil && len(out) == 0 {
		return nil, status.Errorf(codes.Internal, "list iSCSI sessions: %v", err)
	}
	for _, s := range ss {
		if s.State != "LOGGED_IN" {
			out = append(out, &csi.NodeGetStorageHealthResponse_StorageBackendHealth{
				Status: csi.StorageHealthErrorType_STORAGE_DEGRADED, Reason: reasonSessionFailed,
				Message: fmt.Sprintf("session %d to %s at %s is %s", s.SID, s.TargetName, s.Portal, s.State)})
		}
	}
	return &csi.NodeGetStorageHealthResponse{BackendHealth: out}, nil
}
