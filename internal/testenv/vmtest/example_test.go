//go:build linux

package vmtest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gosan/iscsi/internal/testenv/vmtest"
)

// Run a busybox script in a guest with the iSCSI initiator modules loaded.
func ExampleRun() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := vmtest.Run(ctx, vmtest.Config{
		Sets:   []vmtest.ModuleSet{vmtest.SetISCSI},
		Script: "cat /sys/class/iscsi_transport/tcp/handle",
	})
	if err != nil {
		fmt.Println("guest failed:", err)
		return
	}
	fmt.Println("exit code", res.ExitCode)
}

// A background LIO target in a guest, reached from the host through a
// forwarded loopback port.
func ExampleStartForTest() {
	var t *testing.T // the calling test
	g := vmtest.StartForTest(t, vmtest.Config{
		Sets:    []vmtest.ModuleSet{vmtest.SetLIO},
		Script:  "T=/sys/kernel/config/target\n# ... configfs recipe ...\necho LIO-READY\nsleep 3600",
		HostFwd: []vmtest.Fwd{{GuestPort: 3260}},
	})
	if err := g.WaitFor(t.Context(), "LIO-READY"); err != nil {
		t.Fatal(err)
	}
	portal := g.HostAddr(3260) // "127.0.0.1:NNNNN"
	_ = portal
}

// The host-side wrapper of a guest-only test (TestGuestAttach lives in a
// file with //go:build vmguest and starts with vmtest.RequireGuest(t)).
func ExampleRunTestInGuest() {
	var t *testing.T // the calling test
	vmtest.RunTestInGuest(t, ".", "^TestGuestAttach$", map[string]string{"PORTAL": "10.0.2.2:3260"})
}
