//go:build !linux

package blockdev

import (
	"context"
	"errors"
	"testing"
)

// Off Linux every operation says clearly that it is not supported.
func TestNotSupportedOffLinux(t *testing.T) {
	k, err := Open(Options{})
	if !errors.Is(err, ErrNotSupported) || k != nil {
		t.Fatalf("Open: %v, %v", k, err)
	}
	if _, err := k.Attach(context.Background(), Spec{}); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("Attach: %v", err)
	}
	if err := k.Supervise(context.Background()); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("Supervise: %v", err)
	}
	if _, err := (Sysfs{}).Sessions(); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("Sysfs.Sessions: %v", err)
	}
}
