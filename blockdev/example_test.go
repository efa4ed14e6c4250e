package blockdev_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/blockdev"
	"github.com/gosan/iscsi/blockdev/volume"
)

// Attach one LUN through the kernel's iscsi_tcp, use /dev/sdX, detach.
// Needs root, iscsi_tcp loaded and no iscsid running.
func ExampleKernel_Attach() {
	k, err := blockdev.Open(blockdev.Options{InitiatorName: "iqn.2026-11.org.example:node1"})
	if err != nil {
		log.Fatal(err) // ErrPermission, ErrModuleNotLoaded, ErrOtherDaemon
	}
	defer k.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := k.Attach(ctx, blockdev.Spec{
		Portal:     "192.0.2.10:3260",
		TargetName: "iqn.2026-11.org.example:storage",
		LUN:        1,
		CHAP:       &iscsi.CHAP{User: "node1", Secret: "a-long-chap-secret"},
	})
	if err != nil {
		log.Fatal(err) // errors.Is: iscsi.ErrAuthentication, iscsi.ErrTargetNotFound, blockdev.ErrUnreachable, blockdev.ErrNoDevice
	}
	fmt.Println(d.Path, d.SCSIAddress, d.Size)
	if err := k.Detach(ctx, d); err != nil {
		log.Fatal(err)
	}
}

// A node daemon keeps its sessions alive and runs the volume lifecycle on
// real iSCSI disks.
func ExampleKernel_Supervise() {
	k, err := blockdev.Open(blockdev.Options{Timeouts: blockdev.Timeouts{Recovery: 30 * time.Second}})
	if err != nil {
		log.Fatal(err)
	}
	defer k.Close()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { _ = k.Supervise(ctx) }() // reconnects on connection errors

	m, err := volume.NewManager("/var/lib/kubelet/plugins/kubernetes.io", volume.KernelAttacher(k))
	if err != nil {
		log.Fatal(err)
	}
	v := volume.Volume{TargetPortal: "192.0.2.10:3260", IQN: "iqn.2026-11.org.example:storage", LUN: 1, FSType: "ext4"}
	if _, err := m.Stage(ctx, v); err != nil {
		log.Fatal(err)
	}
}
