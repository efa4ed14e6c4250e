package volume

import (
	"io/fs"
	"os"
	"path/filepath"
)

// setVolumeOwnership gives group gid ownership of everything under dir and
// makes it group-accessible, as kubelet's SetVolumeOwnership does: chown
// the group (never the user), add g+rw (read-only: g+r) to files, g+rwx
// (read-only: g+rx) and setgid to directories. Symlinks are re-grouped but
// never followed.
func setVolumeOwnership(dir string, gid int, readOnly bool) error {
	rw, x := os.FileMode(0o060), os.FileMode(0o010)
	if readOnly {
		rw = 0o040
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, -1, gid); err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := info.Mode()
		want := mode | rw
		if d.IsDir() {
			want |= x | os.ModeSetgid
		}
		if want == mode {
			return nil
		}
		return os.Chmod(p, want)
	})
}
