package volume

import (
	"context"
	"fmt"

	"github.com/gosan/iscsi"
)

// Attacher is what the kernel binding (package blockdev) implements: log in
// to a target portal, make exactly one LUN appear as a block device, and
// undo that. The Manager serializes all calls for one target (in-process and
// across processes), so an implementation need not guard against a logout
// racing a login for the same target through this package.
//
// Every method must be idempotent: the Manager repeats calls after crashes
// and retries.
type Attacher interface {
	// Attach logs in to spec.Portal/spec.TargetName through spec.Iface as
	// spec.InitiatorName unless a session for that SessionKey already
	// exists (then it is reused, never duplicated; a session under another
	// initiator name is never reused), scans only spec.LUN on that session's SCSI host (never a
	// wildcard scan), waits (bounded by ctx) for the block device and returns
	// it. If the LUN's device already exists it is returned as is.
	// Sessions must not be persisted for automatic login at boot.
	Attach(ctx context.Context, spec AttachSpec) (Device, error)

	// DeleteDevice removes the SCSI device dev (the Manager has unmounted and
	// flushed it): write "1" to /sys/block/<sd>/device/delete, wait for it
	// to go. A device that no longer exists is not an error.
	DeleteDevice(ctx context.Context, dev Device) error

	// SessionDevices lists the block devices that currently exist on the
	// session key (all LUNs), with Device.LUN filled in. No session is not
	// an error: it returns an empty list.
	SessionDevices(ctx context.Context, key SessionKey) ([]Device, error)

	// Logout ends the session key (Logout PDU, then destroy the kernel
	// session). The Manager calls it only after SessionDevices returned no
	// device and no device of the session is mounted. No session is not an
	// error.
	Logout(ctx context.Context, key SessionKey) error
}

// SessionKey names one session: a portal, a target, an iface and an
// initiator name. Volumes with different initiator names never share a
// session (kubelet gives each its own iface clone for that).
type SessionKey struct {
	Portal     string `json:"portal"`     // host:port, IPv6 in brackets
	TargetName string `json:"targetName"` // target IQN
	Iface      string `json:"iface"`      // "default" for iscsi_tcp
	// InitiatorName is the volume's initiatorName; "" is the attacher's
	// default name.
	InitiatorName string `json:"initiatorName,omitempty"`
}

func (k SessionKey) String() string {
	s := k.Iface + "/" + k.Portal + "/" + k.TargetName
	if k.InitiatorName != "" {
		s += " as " + k.InitiatorName
	}
	return s
}

// AttachSpec is one Attach request: one path (portal) to one LUN.
type AttachSpec struct {
	SessionKey  // its InitiatorName: empty => the attacher's default
	LUN         uint64
	NetDev      string      // bind the session's socket to this network device ("" => none)
	SessionCHAP *iscsi.CHAP // nil => AuthMethod=None
}

// String never prints secrets.
func (s AttachSpec) String() string {
	return fmt.Sprintf("%s lun %d (initiator %q, %v)", s.SessionKey, s.LUN, s.InitiatorName, s.SessionCHAP)
}

// Device is one block device of one path.
type Device struct {
	Path        string `json:"path"`        // /dev/sdX
	Portal      string `json:"portal"`      // the portal of the session it belongs to
	LUN         uint64 `json:"lun"`         // the LUN it shows
	HostNo      int    `json:"hostNo"`      // SCSI host number of the session
	SessionID   int    `json:"sessionID"`   // kernel session id (sysfs sessionN)
	SCSIAddress string `json:"scsiAddress"` // H:C:T:L
}
