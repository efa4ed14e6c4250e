package initiator_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/gosan/iscsi/initiator"
)

func ExampleDial() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := initiator.Dial(ctx, "192.0.2.10:3260", "iqn.2024-01.com.example:disk1",
		initiator.WithCHAP(initiator.CHAP{User: "alice", Secret: "a-long-secret"}),
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
			fmt.Printf("%s at %s (group %d)\n", t.Name, p, p.GroupTag)
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
