package volume

import "github.com/u-root/u-root/pkg/mount"

// uRootMagic reports whether u-root's filesystem magic table knows b.
func uRootMagic(b []byte) bool { return len(mount.FindMagics(b)) > 0 }
