//go:build linux

package tgtd_test

import (
	"context"
	"fmt"
	"log"

	"github.com/gosan/iscsi/internal/testenv/tgtd"
)

// A program (benchmark script, VM test) starts its own tgtd and closes it.
// Tests use tgtd.Start(t) or tgtd.StartFixture(t), which close it for them.
func ExampleStartServer() {
	ctx := context.Background()
	srv, err := tgtd.StartServer(ctx, tgtd.Options{})
	if err != nil {
		log.Fatal(err) // says "install Debian package tgt (make deps)" when missing
	}
	defer srv.Close()

	fix, err := srv.SetupFixture(ctx, "")
	if err != nil {
		log.Fatal(err)
	}
	t, err := srv.Target(ctx, fix.Plain.TID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(t.Name, t.LUN(1).SizeMB, "MB")
	// Output: iqn.2026-11.org.gosan.test:plain 67 MB
}
