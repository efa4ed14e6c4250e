//go:build linux

package iscsinl

import (
	"testing"

	"github.com/gosan/iscsi/internal/testenv/vmtest"
)

// TestKernel runs the guest-only tests (guest_test.go, build tag vmguest)
// inside a qemu guest with Debian's kernel and iscsi_tcp loaded: this host's
// kernel has no NETLINK_ISCSI.
func TestKernel(t *testing.T) {
	vmtest.RunTestInGuest(t, ".", "^TestGuest", nil)
}
