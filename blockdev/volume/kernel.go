package volume

import (
	"context"

	"github.com/gosan/iscsi/blockdev"
)

// KernelAttacher returns k, the kernel binding, as an Attacher, so a
// Manager runs its volume lifecycle on real iSCSI disks:
//
//	m, err := volume.NewManager(root, volume.KernelAttacher(k))
//
// The mount layer depends on the kernel binding, never the reverse; tests
// give NewManager a fake Attacher instead.
func KernelAttacher(k *blockdev.Kernel) Attacher { return kernelAttacher{k} }

type kernelAttacher struct{ k *blockdev.Kernel }

func (a kernelAttacher) Attach(ctx context.Context, spec AttachSpec) (Device, error) {
	d, err := a.k.Attach(ctx, blockdev.Spec{Portal: spec.Portal, TargetName: spec.TargetName, LUN: spec.LUN,
		Iface: spec.Iface, NetDev: spec.NetDev, InitiatorName: spec.InitiatorName, CHAP: spec.SessionCHAP})
	if err != nil {
		return Device{}, err
	}
	return device(spec.Portal, *d), nil
}

func (a kernelAttacher) DeleteDevice(ctx context.Context, dev Device) error {
	return a.k.DeleteDevice(ctx, dev.Path)
}

func (a kernelAttacher) SessionDevices(ctx context.Context, key SessionKey) ([]Device, error) {
	disks, err := a.k.SessionDisks(ctx, key.Portal, key.TargetName, key.Iface, key.InitiatorName)
	if err != nil {
		return nil, err
	}
	var out []Device
	for _, d := range disks {
		out = append(out, device(key.Portal, d))
	}
	return out, nil
}

func (a kernelAttacher) Logout(ctx context.Context, key SessionKey) error {
	return a.k.Logout(ctx, key.Portal, key.TargetName, key.Iface, key.InitiatorName)
}

// device is d as the Manager records it, with the portal as the volume
// names it (not as the kernel shows it).
func device(portal string, d blockdev.Disk) Device {
	return Device{Path: d.Path, Portal: portal, LUN: d.LUN, HostNo: int(d.HostNo),
		SessionID: int(d.SessionID), SCSIAddress: d.SCSIAddress}
}
