package volume_test

import (
	"context"
	"fmt"
	"log"

	"github.com/gosan/iscsi/blockdev/volume"
)

// A pod spec's iscsi block, validated and with defaults filled in.
func ExampleVolume_Normalize() {
	v := volume.Volume{
		TargetPortal:    "10.0.0.1",
		Portals:         []string{"[fd00::2]"},
		IQN:             "iqn.2024-01.org.example:storage",
		LUN:             1,
		SessionCHAPAuth: true,
		Secrets: volume.Secrets{
			volume.SecretSessionUser:     "node1",
			volume.SecretSessionPassword: "not-printed-anywhere",
		},
	}
	n, err := v.Normalize()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(n.AllPortals(), n.FSType, n.ISCSIInterface, n.VolumeMode)
	fmt.Println(n.Secrets)

	bad := volume.Volume{TargetPortal: "10.0.0.1:99999", IQN: "disk1"}
	fmt.Println(bad.Validate())
	// Output:
	// [10.0.0.1:3260 [fd00::2]:3260] ext4 default Filesystem
	// Secrets(2 keys, values redacted)
	// invalid iscsi volume: targetPortal: portal "10.0.0.1:99999": bad port (want 1..65535); iqn: "disk1" does not start with iqn., eui. or naa.
}

// The node-side lifecycle. att is the kernel binding (package blockdev).
func ExampleManager() {
	var att volume.Attacher // e.g. the blockdev kernel attacher
	if att == nil {
		return
	}
	ctx := context.Background()
	m, err := volume.NewManager("/var/lib/kubelet/plugins/kubernetes.io", att)
	if err != nil {
		log.Fatal(err)
	}
	v := volume.Volume{TargetPortal: "10.0.0.1:3260", IQN: "iqn.2024-01.org.example:storage", LUN: 0, FSType: "xfs"}
	staged, err := m.Stage(ctx, v) // attach, format if blank, mount at the global path
	if err != nil {
		log.Fatal(err)
	}
	target := "/var/lib/kubelet/pods/uid/volumes/kubernetes.io~iscsi/data"
	if err := m.Publish(ctx, v, target, volume.PublishOptions{}); err != nil {
		log.Fatal(err)
	}
	// ... the pod runs ...
	if err := m.Unpublish(ctx, target); err != nil {
		log.Fatal(err)
	}
	if err := m.Unstage(ctx, staged.GlobalPath); err != nil { // delete devices, logout if unused
		log.Fatal(err)
	}
}
