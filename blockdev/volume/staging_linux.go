package volume

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/u-root/u-root/pkg/mount"
	"golang.org/x/sys/unix"
)

// StageAt stages v for volumeID at stagingPath (an absolute directory,
// created if missing): Stage at the global path, then, in filesystem mode,
// a bind mount of the global directory at stagingPath. In block mode
// nothing is mounted at stagingPath; PublishAt binds the device.
//
// It is idempotent: the same volume id, path and spec again returns the
// same result. The same volume id with another spec is ErrIncompatible;
// another volume id at stagingPath or on the same LUN, or the volume id at
// another path, is ErrStagedElsewhere. The staging record is written
// before anything is attached, so UnstageAt can always clean up.
func (m *Manager) StageAt(ctx context.Context, volumeID, stagingPath string, v Volume) (*StageResult, error) {
	if volumeID == "" {
		return nil, fmt.Errorf("stage: empty volume id")
	}
	if !filepath.IsAbs(stagingPath) {
		return nil, fmt.Errorf("stage: staging path %q is not absolute", stagingPath)
	}
	n, err := v.Normalize()
	if err != nil {
		return nil, err
	}
	global := m.globalPath(n)
	if err := m.checkStaging(volumeID, stagingPath, global, n); err != nil {
		return nil, err
	}
	st := &Staged{VolumeID: volumeID, StagingPath: filepath.Clean(stagingPath), GlobalPath: global, Volume: n}
	if old, err := m.LookupStaged(volumeID); err == nil {
		st.DevicePath, st.Devices = old.DevicePath, old.Devices
	}
	if err := m.writeStaged(st); err != nil {
		return nil, fmt.Errorf("stage: %w", err)
	}
	n.Secrets = v.Secrets
	res, err := m.Stage(ctx, n)
	if err != nil {
		return nil, err
	}
	st.DevicePath, st.Devices = res.DevicePath, res.Devices
	if err := m.writeStaged(st); err != nil {
		return nil, fmt.Errorf("stage: %w", err)
	}
	if n.VolumeMode == ModeBlock {
		return res, nil
	}
	if err := os.MkdirAll(stagingPath, 0o750); err != nil {
		return nil, fmt.Errorf("stage: %w", err)
	}
	mi, err := readMountInfo()
	if err != nil {
		return nil, err
	}
	if at := mountsAt(mi, stagingPath); len(at) > 0 {
		if err := sameSource(mi, global, at[len(at)-1], ModeFilesystem); err != nil {
			return nil, fmt.Errorf("stage: staging path %s: %w", stagingPath, err)
		}
		return res, nil
	}
	flags := uintptr(unix.MS_BIND)
	if _, err := mount.Mount(global, stagingPath, "", "", flags); err != nil {
		return nil, fmt.Errorf("stage: bind %s at %s: %w", global, stagingPath, mountErrno(err))
	}
	if n.ReadOnly {
		if _, err := mount.Mount("", stagingPath, "", "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY); err != nil {
			return nil, fmt.Errorf("stage: read-only remount of %s: %w", stagingPath, mountErrno(err))
		}
	}
	m.log.InfoContext(ctx, "staged volume at staging path", "volumeID", volumeID, "stagingPath", stagingPath, "globalPath", global)
	return res, nil
}

// PublishAt publishes the volume staged for volumeID at stagingPath onto
// target (see Publish). ErrNotStaged when the volume id is not staged
// there.
func (m *Manager) PublishAt(ctx context.Context, volumeID, stagingPath, target string, o PublishOptions) error {
	st, err := m.LookupStaged(volumeID)
	if isNotExist(err) {
		return fmt.Errorf("publish: volume %q: %w", volumeID, ErrNotStaged)
	}
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if cleanPath(st.StagingPath) != cleanPath(stagingPath) {
		return fmt.Errorf("publish: volume %q is staged at %s, not %s: %w", volumeID, st.StagingPath, stagingPath, ErrNotStaged)
	}
	// Publish only binds what Stage attached: it needs no credentials.
	v := st.Volume
	v.SessionCHAPAuth, v.DiscoveryCHAPAuth = false, false
	return m.Publish(ctx, v, target, o)
}

// UnstageAt undoes StageAt: it refuses (ErrInUse) while the device is
// mounted anywhere but the global directory and stagingPath, unmounts
// stagingPath, then Unstage's the global directory and removes the staging
// record. A volume id that is not staged is success; a volume id staged
// at another path is ErrStagedElsewhere. Idempotent; safe after any crash.
func (m *Manager) UnstageAt(ctx context.Context, volumeID, stagingPath string) error {
	st, err := m.LookupStaged(volumeID)
	if isNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("unstage: %w", err)
	}
	if cleanPath(st.StagingPath) != cleanPath(stagingPath) {
		return fmt.Errorf("unstage: volume %q is staged at %s, not %s: %w", volumeID, st.StagingPath, stagingPath, ErrStagedElsewhere)
	}
	mi, err := readMountInfo()
	if err != nil {
		return err
	}
	if at := mountsAt(mi, st.GlobalPath); len(at) > 0 {
		top := at[len(at)-1]
		var others []string
		for _, x := range mi {
			if x.Major == top.Major && x.Minor == top.Minor &&
				x.MountPoint != cleanPath(st.GlobalPath) && x.MountPoint != cleanPath(stagingPath) {
				others = append(others, x.MountPoint)
			}
		}
		if len(others) > 0 {
			return fmt.Errorf("unstage: %w", &InUseError{Device: top.Source, Mounts: others})
		}
	}
	if err := unmountAll(stagingPath); err != nil {
		return fmt.Errorf("unstage: %w", err)
	}
	if err := m.Unstage(ctx, st.GlobalPath); err != nil {
		return err
	}
	if err := m.removeStaged(volumeID); err != nil {
		return fmt.Errorf("unstage: %w", err)
	}
	m.log.InfoContext(ctx, "unstaged volume at staging path", "volumeID", volumeID, "stagingPath", stagingPath)
	return nil
}
