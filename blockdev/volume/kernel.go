package volume

import (
	"context"

	"github.com/gosan/iscsi/blockdev"
	"github.com/gosan/iscsi/initiator"
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

// Discover runs the SendTargets discovery from userspace (package
// initiator): the kernel has no discovery sessions.
func (a kernelAttacher) Discover(ctx context.Context, spec DiscoverySpec) ([]string, error) {
	iname := spec.InitiatorName
	if iname == "" {
		iname = a.k.InitiatorName()
	}
	opts := []initiator.Option{initiator.WithInitiatorName(iname)}
	if spec.CHAP != nil {
		opts = append(opts, initiator.WithCHAP(*spec.CHAP))
	}
	targets, err := initiator.Discover(ctx, spec.Portal, opts...)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, t := range targets {
		if t.TargetName != spec.TargetName {
			continue
		}
		for _, p := range t.Portals {
			out = append(out, p.String())
		}
	}
	return out, nil
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
