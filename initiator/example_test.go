package initiator_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/initiator"
	"github.com/gosan/iscsi/initiator/iscsitest"
	"github.com/gosan/iscsi/scsi"
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

// Execute sends any CDB to any LUN without opening it as a block device
// (no READ CAPACITY needed: a controller, a tape, an enclosure). A status
// other than GOOD comes back in the Result, not as the error. Here the
// target is an in-process iscsitest server.
func ExampleSession_Execute() {
	const name = "iqn.2026-11.org.example:disk1"
	srv, err := iscsitest.NewServer(iscsitest.Config{Targets: []iscsitest.Target{{
		Name: name,
		LUNs: []iscsitest.LUN{{Number: 0, Blocks: 2048, BlockSize: 512}},
	}}})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := initiator.Dial(ctx, srv.Addr(), name)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	buf := make([]byte, 96)
	res, err := s.Execute(ctx, 0, scsi.InquiryCDB(nil, uint16(len(buf))), buf, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := res.Err(); err != nil {
		log.Fatal(err)
	}
	inq, err := scsi.ParseInquiry(buf[:res.Transferred])
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("LUN 0: %s %s, type %v\n", inq.Vendor, inq.Product, inq.Type)

	// LUN 7 does not exist: the target answers CHECK CONDITION.
	res, err = s.Execute(ctx, 7, scsi.TestUnitReadyCDB(nil), nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("LUN 7:", res.Status, errors.Is(res.Err(), scsi.ErrIllegalRequest))
	// Output:
	// LUN 0: GOSAN ISCSITEST DISK, type disk
	// LUN 7: CHECK CONDITION true
}

// A Queue keeps many reads in flight from one goroutine and reaps their
// completions in batches.
func ExampleQueue() {
	const name = "iqn.2026-12.org.example:disk1"
	srv, err := iscsitest.NewServer(iscsitest.Config{Targets: []iscsitest.Target{{
		Name: name,
		LUNs: []iscsitest.LUN{{Number: 1, Blocks: 2048, BlockSize: 512}},
	}}})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := initiator.Dial(ctx, srv.Addr(), name)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	lun, err := s.LUN(ctx, 1)
	if err != nil {
		log.Fatal(err)
	}

	q := lun.NewQueue()
	defer q.Close()
	ios := make([]initiator.IO, 8)
	for i := range ios {
		ios[i] = initiator.IO{Buf: make([]byte, 4096), Off: int64(i) * 4096, Tag: uint64(i)}
	}
	for len(ios) > 0 {
		n, err := q.Submit(ctx, ios...) // stops early when every slot is busy
		if err != nil {
			log.Fatal(err)
		}
		ios = ios[n:]
		out := make([]initiator.Completion, 8)
		for q.Inflight() > 0 {
			m, err := q.Reap(ctx, out, 1)
			if err != nil {
				log.Fatal(err)
			}
			for _, c := range out[:m] {
				if c.Err != nil {
					log.Fatal(c.Err)
				}
				fmt.Printf("read %d: %d bytes\n", c.Tag, c.N)
			}
		}
	}
	// Unordered output:
	// read 0: 4096 bytes
	// read 1: 4096 bytes
	// read 2: 4096 bytes
	// read 3: 4096 bytes
	// read 4: 4096 bytes
	// read 5: 4096 bytes
	// read 6: 4096 bytes
	// read 7: 4096 bytes
}
