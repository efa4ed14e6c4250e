//go:build !linux

package volume

// uRootMagic: u-root's magic table is built for Linux only; this
// package's own probes and blkid still run.
func uRootMagic(b []byte) bool { return false }
