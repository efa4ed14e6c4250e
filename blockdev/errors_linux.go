package blockdev

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/gosan/iscsi/internal/iscsinl"
)

// isPermission: the kernel refused for lack of CAP_SYS_ADMIN.
func isPermission(err error) bool {
	return errors.Is(err, iscsinl.ErrPermission) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES)
}

// isModuleMissing: iscsi_tcp (or the netlink family) is not there.
func isModuleMissing(err error) bool {
	return errors.Is(err, iscsinl.ErrTransportNotLoaded) || errors.Is(err, iscsinl.ErrKernelUnsupported)
}

// mapOpenErr turns iscsinl.Dial errors into the package's sentinels.
func mapOpenErr(err error) error {
	switch {
	case isModuleMissing(err):
		return fmt.Errorf("%w: %w", ErrModuleNotLoaded, err)
	case isPermission(err):
		return fmt.Errorf("%w: %w", ErrPermission, err)
	}
	return fmt.Errorf("blockdev: opening NETLINK_ISCSI: %w", err)
}
