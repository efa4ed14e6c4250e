package volume

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// devNumber returns the major/minor of block device path.
func devNumber(path string) (uint32, uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, 0, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, 0, fmt.Errorf("%s is not a block device", path)
	}
	return unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)), nil
}

// mountsOfDevice returns mounts that use block device dev: filesystems
// mounted from it (by major:minor) and bind mounts of the device node
// itself (block mode publishes: a devtmpfs mount whose root is /<name>).
func mountsOfDevice(mi []MountInfo, dev string) ([]MountInfo, error) {
	maj, min, err := devNumber(dev)
	if err != nil {
		return nil, err
	}
	name := "/" + filepath.Base(cleanPath(dev))
	var out []MountInfo
	for _, m := range mi {
		if m.Major == maj && m.Minor == min || sourceIsDevice(m, maj, min) {
			out = append(out, m)
		} else if m.Root == name && (m.FSType == "devtmpfs" || m.FSType == "tmpfs") {
			out = append(out, m)
		}
	}
	return out, nil
}

// sourceIsDevice says whether m's source is the block device maj:min. It
// catches filesystems that show an anonymous device number in mountinfo
// (btrfs: 0:N) instead of the device they were mounted from.
func sourceIsDevice(m MountInfo, maj, min uint32) bool {
	if !strings.HasPrefix(m.Source, "/dev/") {
		return false
	}
	smaj, smin, err := devNumber(m.Source)
	return err == nil && smaj == maj && smin == min
}
