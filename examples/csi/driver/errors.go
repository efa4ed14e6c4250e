package driver

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/blockdev"
	"github.com/gosan/iscsi/blockdev/volume"
	"github.com/gosan/iscsi/initiator"
)

// toStatus maps an error of the mount layer or the kernel binding onto
// the gRPC code a CO acts on. Messages come from errors that never hold
// secrets (CHAP prints redacted; volume errors name keys, not values).
func toStatus(op string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var ve *volume.ValidationError
	var ce *initiator.ConnectionError // a discovery's userspace session
	code := codes.Internal
	switch {
	case errors.As(err, &ve):
		code = codes.InvalidArgument
	case errors.Is(err, volume.ErrStagedElsewhere), errors.Is(err, volume.ErrIncompatible):
		code = codes.AlreadyExists
	case errors.Is(err, volume.ErrNotStaged), errors.Is(err, volume.ErrInUse), errors.Is(err, volume.ErrBlockReadOnly),
		errors.Is(err, volume.ErrNotBlank), errors.Is(err, volume.ErrReadOnlyBlank), errors.Is(err, volume.ErrToolMissing):
		code = codes.FailedPrecondition
	case errors.Is(err, iscsi.ErrAuthentication), errors.Is(err, iscsi.ErrAuthorization), errors.Is(err, iscsi.ErrMutualAuth):
		code = codes.PermissionDenied
	case errors.Is(err, iscsi.ErrTargetNotFound), errors.Is(err, iscsi.ErrTargetRemoved),
		errors.Is(err, volume.ErrTargetNotAdvertised):
		code = codes.NotFound
	case errors.Is(err, blockdev.ErrUnreachable), errors.As(err, &ce), errors.Is(err, iscsi.ErrServiceUnavailable),
		errors.Is(err, iscsi.ErrOutOfResources), errors.Is(err, blockdev.ErrNoDevice):
		code = codes.Unavailable
	case errors.Is(err, blockdev.ErrModuleNotLoaded), errors.Is(err, blockdev.ErrOtherDaemon),
		errors.Is(err, blockdev.ErrPermission):
		code = codes.FailedPrecondition
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Error(code, op+": "+err.Error())
}
