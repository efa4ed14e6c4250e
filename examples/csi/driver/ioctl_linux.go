package driver

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctlGetSize64 is BLKGETSIZE64.
func ioctlGetSize64(fd int, size *uint64) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(size)))
	if e != 0 {
		return e
	}
	return nil
}
