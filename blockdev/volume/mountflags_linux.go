package volume

import "golang.org/x/sys/unix"

// mount(2) flags of the generic options in vfsFlags.
const (
	msRdonly      = unix.MS_RDONLY
	msNosuid      = unix.MS_NOSUID
	msNodev       = unix.MS_NODEV
	msNoexec      = unix.MS_NOEXEC
	msSynchronous = unix.MS_SYNCHRONOUS
	msDirsync     = unix.MS_DIRSYNC
	msNoatime     = unix.MS_NOATIME
	msNodiratime  = unix.MS_NODIRATIME
	msRelatime    = unix.MS_RELATIME
	msStrictatime = unix.MS_STRICTATIME
	msLazytime    = unix.MS_LAZYTIME
	msMandlock    = unix.MS_MANDLOCK
	msNosymfollow = unix.MS_NOSYMFOLLOW
)
