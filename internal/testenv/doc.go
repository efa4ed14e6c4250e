//go:build linux

// Package testenv holds the test rigs, kept apart from the product code in
// internal/: tgtd (a userspace target on loopback), vmtest (a qemu guest with
// Debian's stock kernel), lio (the kernel target in such a guest) and
// benchrun (make bench). Nothing outside tests and make bench imports them.
package testenv
