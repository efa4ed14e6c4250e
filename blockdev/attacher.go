package blockdev

import (
	"context"
	"errors"
	"path/filepath"

	"github.com/gosan/iscsi/blockdev/volume"
)

// Attacher returns k as a volume.Attacher, so blockdev/volume's Manager
// runs its volume lifecycle on real iSCSI disks.
func (k *Kernel) Attacher() volume.Attacher { return volumeAttacher{k} }

type volumeAttacher struct{ k *Kernel }

var _ volume.Attacher = volumeAttacher{}

func (a volumeAttacher) Attach(ctx context.Context, spec volume.AttachSpec) (volume.Device, error) {
	s := Spec{Portal: spec.Portal, TargetName: spec.TargetName, LUN: spec.LUN, Iface: spec.Iface, InitiatorName: spec.InitiatorName}
	s.CHAP = spec.SessionCHAP
	d, err := a.k.Attach(ctx, s)
	if err != nil {
		return volume.Device{}, err
	}
	return volume.Device{Path: d.Path, Portal: spec.Portal, LUN: d.LUN, HostNo: int(d.HostNo),
		SessionID: int(d.SessionID), SCSIAddress: d.SCSIAddress}, nil
}

func (a volumeAttacher) DeleteDevice(ctx context.Context, dev volume.Device) error {
	return a.k.DeleteDevice(ctx, dev.Path)
}

func (a volumeAttacher) SessionDevices(ctx context.Context, key volume.SessionKey) ([]volume.Device, error) {
	addr, err := resolvePortal(ctx, key.Portal)
	if err != nil {
		return nil, err
	}
	info, err := a.k.sys.FindSession(portalString(addr), key.TargetName, key.Iface)
	if err != nil || info == nil {
		return nil, err
	}
	devs, err := a.k.sys.SessionDevices(info.SID)
	if errors.Is(err, ErrNoSession) {
		return nil, nil // the session went away meanwhile
	}
	if err != nil {
		return nil, err
	}
	var out []volume.Device
	for _, d := range devs {
		if d.Block == "" {
			continue
		}
		out = append(out, volume.Device{Path: filepath.Join(a.k.sys.dev(), d.Block), Portal: key.Portal, LUN: d.LUN,
			HostNo: int(info.HostNo), SessionID: int(info.SID), SCSIAddress: d.Address()})
	}
	return out, nil
}

func (a volumeAttacher) Logout(ctx context.Context, key volume.SessionKey) error {
	return a.k.Logout(ctx, key.Portal, key.TargetName, key.Iface)
}
