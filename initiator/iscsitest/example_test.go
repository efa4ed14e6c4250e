package iscsitest_test

import (
	"context"
	"fmt"
	"log"

	"github.com/gosan/iscsi/initiator"
	"github.com/gosan/iscsi/initiator/iscsitest"
)

// A test starts a target in-process, preloads a LUN and reads it back
// through the initiator.
func Example() {
	srv, err := iscsitest.NewServer(iscsitest.Config{Targets: []iscsitest.Target{{
		Name: "iqn.2024-01.example:disk",
		LUNs: []iscsitest.LUN{{Number: 1, Blocks: 2048, BlockSize: 512}},
	}}})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	if err := srv.WriteLUN("iqn.2024-01.example:disk", 1, 4096, []byte("hello, iSCSI")); err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	sess, err := initiator.Dial(ctx, srv.Addr(), "iqn.2024-01.example:disk")
	if err != nil {
		log.Fatal(err)
	}
	defer sess.Close()
	lun, err := sess.LUN(ctx, 1)
	if err != nil {
		log.Fatal(err)
	}
	buf := make([]byte, 512)
	if _, err := lun.ReadAt(buf, 4096); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s, %d bytes\n", buf[:12], lun.Size())
	// Output: hello, iSCSI, 1048576 bytes
}
