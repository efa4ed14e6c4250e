//go:build !linux

package volume

// mount(2) flags of the generic options in vfsFlags: mount(2) is Linux's,
// and the Manager mounts nothing elsewhere, so they are all zero here
// (the option names still validate the same).
const (
	msRdonly      = 0
	msNosuid      = 0
	msNodev       = 0
	msNoexec      = 0
	msSynchronous = 0
	msDirsync     = 0
	msNoatime     = 0
	msNodiratime  = 0
	msRelatime    = 0
	msStrictatime = 0
	msLazytime    = 0
	msMandlock    = 0
	msNosymfollow = 0
)
