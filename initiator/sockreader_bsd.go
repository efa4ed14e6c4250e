//go:build darwin || freebsd || netbsd || openbsd || dragonfly

package initiator

import "golang.org/x/sys/unix"

// pollIn waits up to pollWaitTime for fd to become readable; false when
// it did not (or poll failed: the caller then parks in Go's poller).
func pollIn(fd int32) bool {
	pfd := [1]unix.PollFd{{Fd: fd, Events: unix.POLLIN}}
	for {
		k, err := unix.Poll(pfd[:], int(pollWaitTime.Milliseconds()))
		if err == unix.EINTR {
			continue
		}
		return err == nil && k > 0
	}
}
