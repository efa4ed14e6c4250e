package initiator_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/initiator"
	"github.com/gosan/iscsi/initiator/iscsitest"
)

func ExampleDial() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := initiator.Dial(ctx, "192.0.2.10:3260", "iqn.2024-01.com.example:disk1",
		initiator.WithCHAP(iscsi.CHAP{User: "alice", Secret: "a-long-secret"}),
		initiator.WithHeaderDigest(initiator.DigestPreferCRC32C),
		initiator.WithQueueDepth(32),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	luns, err := s.ReportLUNs(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("LUNs:", luns)
}

func ExampleDiscover() {
	ctx := context.Background()
	targets, err := initiator.Discover(ctx, "192.0.2.10")
	if err != nil {
		log.Fatal(err)
	}
	for _, t := range targets {
		for _, p := range t.Portals {
			fmt.Printf("%s at %s (group %d)\n", t.TargetName, p, p.GroupTag)
		}
	}
}

func ExampleLUN_ReadAt() {
	ctx := context.Background()
	s, err := initiator.Dial(ctx, "192.0.2.10", "iqn.2024-01.com.example:disk1")
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	lun, err := s.LUN(ctx, 1)
	if err != nil {
		log.Fatal(err)
	}
	// Offsets and lengths are multiples of the block size.
	buf := make([]byte, 8*lun.BlockSize())
	if _, err := lun.ReadAt(buf, 0); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d-byte LUN, first bytes % x\n", lun.Size(), buf[:16])
}

// DialTarget logs in on the first portal of a discovered target that
// answers and keeps the others for recovery. Here the target is an
// in-process iscsitest server.
func ExampleDialTarget() {
	srv, err := iscsitest.NewServer(iscsitest.Config{Targets: []iscsitest.Target{{
		Name: "iqn.2026-11.org.example:disk1",
		LUNs: []iscsitest.LUN{{Number: 0, Blocks: 2048, BlockSize: 512}},
	}}})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	targets, err := initiator.Discover(ctx, srv.Addr())
	if err != nil {
		log.Fatal(err)
	}
	s, err := initiator.DialTarget(ctx, targets[0])
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	lun, err := s.LUN(ctx, 0)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(s.TargetName(), lun.Size(), "bytes")
	// Output: iqn.2026-11.org.example:disk1 1048576 bytes
}
