package volume

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/blockdev"
	"github.com/gosan/iscsi/internal/portal"
)

// Mode is how a volume is handed to its consumer.
type Mode string

// Volume modes, spelled as Kubernetes' PersistentVolumeMode.
const (
	ModeFilesystem Mode = "Filesystem" // formatted if blank, mounted, bind-mounted into targets
	ModeBlock      Mode = "Block"      // the raw device, bind-mounted onto target files
)

// DefaultFSType is used when Volume.FSType is empty.
const DefaultFSType = "ext4"

// maxLUN bounds Volume.LUN: SAM flat addressing covers 0..16383.
const maxLUN = 16383

// Secret map keys, as in the Kubernetes CHAP secret (type kubernetes.io/iscsi-chap).
const (
	SecretSessionUser       = "node.session.auth.username"
	SecretSessionPassword   = "node.session.auth.password"
	SecretSessionUserIn     = "node.session.auth.username_in"
	SecretSessionPasswordIn = "node.session.auth.password_in"

	SecretDiscoveryUser       = "node.sendtargets.auth.username"
	SecretDiscoveryPassword   = "node.sendtargets.auth.password"
	SecretDiscoveryUserIn     = "node.sendtargets.auth.username_in"
	SecretDiscoveryPasswordIn = "node.sendtargets.auth.password_in"
)

// discoveryAltPrefix is the spelling kubelet uses for the discovery keys
// (discovery.sendtargets.auth.*); both are accepted.
const (
	discoveryPrefix    = "node.sendtargets.auth."
	discoveryAltPrefix = "discovery.sendtargets.auth."
)

// SecretRef names the Kubernetes secret the CHAP credentials came from. It is
// carried for fidelity with the pod spec only; the values are in Volume.Secrets.
type SecretRef struct {
	Name string `json:"name,omitempty"`
}

// Volume is the spec of one iSCSI volume, shaped like the `iscsi:` block of
// a Kubernetes pod spec (same JSON names), plus the volume mode and the
// resolved secret values.
type Volume struct {
	TargetPortal string   `json:"targetPortal"`
	Portals      []string `json:"portals,omitempty"` // extra portals for multipath
	// IQN is the target name. It keeps the name of Kubernetes'
	// ISCSIVolumeSource field (and its JSON key) so a pod spec's volume
	// source decodes unchanged; everywhere else in this module, and in
	// SessionKey and Record here, the target IQN is called TargetName.
	IQN string `json:"iqn"`
	LUN int32  `json:"lun"`
	// ISCSIInterface (default "default") names the sessions' iface and
	// binds their sockets: an open-iscsi iface record (/etc/iscsi/ifaces)
	// with transport tcp binds to its iface.net_ifacename, the name of a
	// network device binds to that device. Offload transports (bnx2i,
	// cxgb4i, qla4xxx, be2iscsi, ...) and unknown names fail Stage with an
	// *IfaceError.
	ISCSIInterface string `json:"iscsiInterface,omitempty"`
	// FSType is the filesystem to mount, and to make on a blank device
	// (default ext4): any type with an installed mkfs.<fsType> (ext2/3/4,
	// xfs, btrfs, vfat, ...), lower-case letters and digits only.
	FSType            string     `json:"fsType,omitempty"`
	ReadOnly          bool       `json:"readOnly,omitempty"`
	DiscoveryCHAPAuth bool       `json:"chapAuthDiscovery,omitempty"`
	SessionCHAPAuth   bool       `json:"chapAuthSession,omitempty"`
	SecretRef         *SecretRef `json:"secretRef,omitempty"`
	InitiatorName     string     `json:"initiatorName,omitempty"`
	VolumeMode        Mode       `json:"volumeMode,omitempty"`

	// MountOptions are the PersistentVolume's mountOptions: options for the
	// device's global mount (Stage), as for `mount -o`, one per entry (e.g.
	// "noatime", "discard", "commit=30", "data=ordered", xfs's "nouuid").
	// The generic ones (ro, rw, nosuid, nodev, noexec, sync, dirsync,
	// noatime, nodiratime, relatime, strictatime, lazytime, mand,
	// nosymfollow and their opposites) become mount flags; the rest are
	// passed to the filesystem, which refuses what it does not know (Stage
	// then fails and mounts nothing). Publish's bind mounts do not take them.
	//
	// Each option is non-empty, at most MaxMountOptionLen bytes, without
	// whitespace, commas or control characters; at most MaxMountOptions.
	// Options that change what the mount is (bind, rbind, move, remount,
	// shared, private, slave, unbindable and their r* forms) are refused.
	// Options mount(8) consumes itself ("defaults", "_netdev", "nofail",
	// "auto", "noauto", "x-*") are dropped by Normalize.
	//
	// "ro" makes the volume read-only: Normalize sets ReadOnly, so the
	// device is never formatted and binds are read-only too. ReadOnly
	// already mounts read-only, so "ro" with it is redundant; "rw" with
	// ReadOnly (or with "ro") is an error.
	//
	// Options apply when Stage mounts the device; staging a volume that is
	// already mounted never remounts it (Unstage and Stage again to change
	// them). Kubelet ignores mountOptions for raw block volumes; here a
	// block volume (VolumeMode Block) with mount options is a validation
	// error, so a spec that expects them to matter is not silently accepted.
	MountOptions []string `json:"mountOptions,omitempty"`

	// Secrets holds the CHAP secret's data (keys SecretSession*, SecretDiscovery*).
	// It is never serialized, logged or printed.
	Secrets Secrets `json:"-"`
}

// Secrets is a secret's key/value data. Its String, GoString, LogValue and
// MarshalJSON never reveal values.
type Secrets map[string]string

func (s Secrets) String() string {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	return fmt.Sprintf("Secrets(%d keys, values redacted)", len(keys))
}

// GoString implements fmt.GoStringer (%#v).
func (s Secrets) GoString() string { return s.String() }

// LogValue implements slog.LogValuer.
func (s Secrets) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON writes null: secrets are never serialized.
func (s Secrets) MarshalJSON() ([]byte, error) { return []byte("null"), nil }

// FieldError is one problem found by Validate.
type FieldError struct {
	Field  string // JSON name of the field
	Reason string
}

func (e *FieldError) Error() string { return "iscsi volume: " + e.Field + ": " + e.Reason }

// ValidationError lists every problem found by Validate.
type ValidationError struct {
	Problems []*FieldError
}

func (e *ValidationError) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Field + ": " + p.Reason
	}
	return "invalid iscsi volume: " + strings.Join(msgs, "; ")
}

// Unwrap returns the individual problems (for errors.As on *FieldError).
func (e *ValidationError) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return errs
}

// Validate reports every problem in v as a *ValidationError, or nil.
func (v *Volume) Validate() error {
	_, err := v.Normalize()
	return err
}

// Normalize validates v and returns a copy with defaults filled in: ports
// on portals, fsType ext4, iface "default", mode Filesystem; duplicate
// portals removed (TargetPortal first); MountOptions without the ignored
// ones (nil if none is left), and ReadOnly set if they contain "ro".
func (v *Volume) Normalize() (Volume, error) {
	n := *v
	n.Portals = nil
	var probs []*FieldError
	bad := func(field, format string, args ...any) {
		probs = append(probs, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}

	seen := map[string]bool{}
	addPortal := func(field, p string) {
		np, err := normalizePortal(p)
		if err != nil {
			bad(field, "%v", err)
			return
		}
		if !seen[np] {
			seen[np] = true
			if field == "targetPortal" {
				n.TargetPortal = np
			} else {
				n.Portals = append(n.Portals, np)
			}
		}
	}
	if v.TargetPortal == "" {
		bad("targetPortal", "required")
	} else {
		addPortal("targetPortal", v.TargetPortal)
	}
	for i, p := range v.Portals {
		addPortal(fmt.Sprintf("portals[%d]", i), p)
	}

	if err := checkName(v.IQN); err != nil {
		bad("iqn", "%v", err)
	}
	if v.LUN < 0 || v.LUN > maxLUN {
		bad("lun", "%d out of range 0..%d", v.LUN, maxLUN)
	}
	if v.InitiatorName != "" {
		if err := checkName(v.InitiatorName); err != nil {
			bad("initiatorName", "%v", err)
		}
	}
	if n.ISCSIInterface == "" {
		n.ISCSIInterface = blockdev.DefaultIface
	} else if err := checkPathElem(n.ISCSIInterface); err != nil {
		bad("iscsiInterface", "%v", err)
	}
	switch n.VolumeMode {
	case "":
		n.VolumeMode = ModeFilesystem
	case ModeFilesystem, ModeBlock:
	default:
		bad("volumeMode", "%q is neither %q nor %q", v.VolumeMode, ModeFilesystem, ModeBlock)
	}
	if n.FSType == "" {
		n.FSType = DefaultFSType
	}
	if err := checkFSType(n.FSType); err != nil {
		bad("fsType", "%v", err)
	}
	if len(v.MountOptions) > 0 {
		opts, ro, mprobs := normalizeMountOptions(v.MountOptions, v.ReadOnly)
		probs = append(probs, mprobs...)
		if n.VolumeMode == ModeBlock {
			bad("mountOptions", "not allowed with volumeMode %s (the raw device is not mounted)", ModeBlock)
		}
		n.MountOptions = opts
		n.ReadOnly = n.ReadOnly || ro
	} else {
		n.MountOptions = nil
	}
	if v.DiscoveryCHAPAuth {
		if _, err := v.Secrets.discoveryCHAP(); err != nil {
			bad("chapAuthDiscovery", "%v", err)
		}
	}
	if v.SessionCHAPAuth {
		if _, err := v.Secrets.sessionCHAP(); err != nil {
			bad("chapAuthSession", "%v", err)
		}
	}
	if len(probs) > 0 {
		return Volume{}, &ValidationError{Problems: probs}
	}
	return n, nil
}

// AllPortals returns TargetPortal followed by Portals.
func (v *Volume) AllPortals() []string {
	return append([]string{v.TargetPortal}, v.Portals...)
}

func (s Secrets) sessionCHAP() (*iscsi.CHAP, error) {
	return s.chap(SecretSessionUser, SecretSessionPassword, SecretSessionUserIn, SecretSessionPasswordIn)
}

func (s Secrets) discoveryCHAP() (*iscsi.CHAP, error) {
	c, err := s.chap(SecretDiscoveryUser, SecretDiscoveryPassword, SecretDiscoveryUserIn, SecretDiscoveryPasswordIn)
	if err == nil {
		return c, nil
	}
	alt := func(k string) string { return discoveryAltPrefix + strings.TrimPrefix(k, discoveryPrefix) }
	if c2, err2 := s.chap(alt(SecretDiscoveryUser), alt(SecretDiscoveryPassword), alt(SecretDiscoveryUserIn), alt(SecretDiscoveryPasswordIn)); err2 == nil {
		return c2, nil
	}
	return nil, err
}

// chap builds a CHAP from four keys of a Kubernetes CHAP secret; errors
// name keys, never values. Short secrets are accepted: the secret has no
// field to say so, and kubelet's iscsiadm accepts them.
func (s Secrets) chap(user, pass, userIn, passIn string) (*iscsi.CHAP, error) {
	c := &iscsi.CHAP{User: s[user], Secret: s[pass], TargetUser: s[userIn], TargetSecret: s[passIn], AllowShortSecrets: true}
	switch {
	case c.User == "" || c.Secret == "":
		return nil, fmt.Errorf("secret must contain %s and %s", user, pass)
	case (c.TargetUser == "") != (c.TargetSecret == ""):
		return nil, fmt.Errorf("secret must contain both or neither of %s and %s", userIn, passIn)
	}
	return c, nil
}

// normalizePortal checks host[:port] (IPv6 in brackets; a ",tag" suffix is
// tolerated and dropped) and adds the default port. The host must be an IP
// address or a host name, so a normalized portal is one path element and
// normalizes to itself; see internal/portal.
func normalizePortal(p string) (string, error) { return portal.Normalize(p) }

// checkName checks an iSCSI name (RFC 7143 section 4.2.7: iqn., eui., naa.).
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("required")
	case len(name) > 223:
		return fmt.Errorf("longer than 223 bytes (%d)", len(name))
	case !strings.HasPrefix(name, "iqn.") && !strings.HasPrefix(name, "eui.") && !strings.HasPrefix(name, "naa."):
		return fmt.Errorf("%q does not start with iqn., eui. or naa.", name)
	}
	for _, r := range name {
		if r <= ' ' || r == '/' || r == 0x7f {
			return fmt.Errorf("%q contains whitespace, control characters or '/'", name)
		}
	}
	return nil
}

func checkPathElem(s string) error {
	if s == "." || s == ".." || strings.ContainsAny(s, "/\x00") || filepath.Base(s) != s {
		return fmt.Errorf("%q is not a plain name", s)
	}
	return nil
}
