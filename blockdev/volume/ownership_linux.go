package volume

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
)

// Permission bits kubelet's SetVolumeOwnership adds (pkg/volume/volume_linux.go).
const (
	ownerGroupRW = os.FileMode(0o660) // rwMask
	ownerGroupR  = os.FileMode(0o440) // roMask
	ownerGroupX  = os.FileMode(0o110) // execMask, directories only
)

// setVolumeOwnership gives group gid ownership of everything under dir and
// makes it accessible, as kubelet's SetVolumeOwnership does: chown the
// group (never the user); add ug+rw (read-only: ug+r) to every file and
// directory, and ug+x and setgid to directories. Symlinks are re-grouped but
// never followed or chmod'ed. A file that cannot be changed is logged and
// skipped, never fatal (kubelet logs and goes on); the walk itself going
// wrong is logged too. With FSGroupChangeOnRootMismatch nothing is done
// when the root already matches.
func setVolumeOwnership(ctx context.Context, log *slog.Logger, dir string, gid int, readOnly bool, policy FSGroupChangePolicy) {
	if policy == FSGroupChangeOnRootMismatch && !ownershipMismatch(dir, gid, readOnly) {
		log.DebugContext(ctx, "fsGroup: volume root already matches; skipping", "path", dir, "gid", gid)
		return
	}
	mask := ownerGroupRW
	if readOnly {
		mask = ownerGroupR
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			log.WarnContext(ctx, "fsGroup: cannot read", "path", p, "err", err)
			return nil
		}
		if err := os.Lchown(p, -1, gid); err != nil {
			log.WarnContext(ctx, "fsGroup: chown failed", "path", p, "err", err)
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			log.WarnContext(ctx, "fsGroup: stat failed", "path", p, "err", err)
			return nil
		}
		want := info.Mode() | mask
		if d.IsDir() {
			want |= ownerGroupX | os.ModeSetgid
		}
		if want != info.Mode() {
			if err := os.Chmod(p, want); err != nil {
				log.WarnContext(ctx, "fsGroup: chmod failed", "path", p, "err", err)
			}
		}
		return nil
	})
	if err != nil {
		log.WarnContext(ctx, "fsGroup: walk failed", "path", dir, "err", err)
	}
}

// ownershipMismatch is kubelet's requiresPermissionChange: the root is not
// a directory of group gid with the permission bits and setgid the walk
// gives.
func ownershipMismatch(dir string, gid int, readOnly bool) bool {
	fi, err := os.Stat(dir)
	if err != nil {
		return true
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || int(st.Gid) != gid || !fi.IsDir() {
		return true
	}
	want := ownerGroupRW
	if readOnly {
		want = ownerGroupR
	}
	want |= ownerGroupX
	return fi.Mode().Perm()&want != want || fi.Mode()&os.ModeSetgid == 0
}
