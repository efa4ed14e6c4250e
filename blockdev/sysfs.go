package blockdev

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Sysfs reads the kernel's iSCSI and SCSI state under a sysfs root ("/sys"
// on a real system, a temporary tree in tests). Its writes (the one-LUN
// scan, the device delete) are unexported: Kernel makes them under the
// per-session lock of Attach and Detach. It is the map
// the Kubernetes iscsi plugin uses: sessions in /sys/class/iscsi_session,
// their connections' portals in /sys/class/iscsi_connection, their SCSI
// host from the session's device path, and block devices under
// target<H>:<C>:<T>/<H>:<C>:<T>:<L>/block.
type Sysfs struct {
	Root string // "/sys" when empty
	// Dev is where device nodes live ("/dev" when empty).
	Dev string
}

func (s Sysfs) root() string {
	if s.Root == "" {
		return "/sys"
	}
	return s.Root
}

func (s Sysfs) dev() string {
	if s.Dev == "" {
		return "/dev"
	}
	return s.Dev
}

func (s Sysfs) path(elem ...string) string {
	return filepath.Join(append([]string{s.root()}, elem...)...)
}

// SessionInfo is one iSCSI session as sysfs shows it.
type SessionInfo struct {
	SID        uint32
	HostNo     uint32
	TargetName string
	// Portal is the connection's persistent address and port
	// (net.JoinHostPort form), falling back to address/port.
	Portal        string
	Iface         string // ifacename ("default" for sessions this package creates without an Iface)
	InitiatorName string
	ISID          string
	State         string // LOGGED_IN, FAILED, FREE
	// Username is the CHAP name the session logged in with ("" without
	// CHAP); the kernel never holds the secret.
	Username string
}

// readAttr reads a sysfs attribute, trimmed; a missing file gives "".
func readAttr(p string) (string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil
		}
		return "", err
	}
	v := strings.TrimSpace(string(b))
	if v == "(null)" {
		v = ""
	}
	return v, nil
}

// parseIndexed parses names like "session12" (prefix "session").
func parseIndexed(name, prefix string) (uint32, bool) {
	if !strings.HasPrefix(name, prefix) {
		return 0, false
	}
	n, err := strconv.ParseUint(name[len(prefix):], 10, 32)
	if err != nil {
		return 0, false
	}
	return uint32(n), true
}

// Sessions lists every iSCSI session in sysfs, by sid. Sessions that vanish
// while being read are skipped. Off Linux it returns ErrNotSupported.
func (s Sysfs) Sessions() ([]SessionInfo, error) {
	if runtime.GOOS != "linux" {
		return nil, ErrNotSupported
	}
	ents, err := os.ReadDir(s.path("class", "iscsi_session"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("blockdev: listing iSCSI sessions: %w", err)
	}
	var out []SessionInfo
	for _, e := range ents {
		sid, ok := parseIndexed(e.Name(), "session")
		if !ok {
			continue
		}
		info, err := s.Session(sid)
		if err != nil {
			if errors.Is(err, ErrNoSession) {
				continue
			}
			return nil, err
		}
		out = append(out, *info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SID < out[j].SID })
	return out, nil
}

// Session reads session sid. A missing session gives an error matching
// ErrNoSession; off Linux it returns ErrNotSupported.
func (s Sysfs) Session(sid uint32) (*SessionInfo, error) {
	if runtime.GOOS != "linux" {
		return nil, ErrNotSupported
	}
	dir := s.path("class", "iscsi_session", fmt.Sprintf("session%d", sid))
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: session %d", ErrNoSession, sid)
		}
		return nil, fmt.Errorf("blockdev: %w", err)
	}
	info := &SessionInfo{SID: sid}
	var err error
	attr := func(dst *string, p string) {
		if err == nil {
			*dst, err = readAttr(p)
		}
	}
	attr(&info.TargetName, filepath.Join(dir, "targetname"))
	attr(&info.Iface, filepath.Join(dir, "ifacename"))
	attr(&info.InitiatorName, filepath.Join(dir, "initiatorname"))
	attr(&info.ISID, filepath.Join(dir, "isid"))
	attr(&info.State, filepath.Join(dir, "state"))
	attr(&info.Username, filepath.Join(dir, "username"))
	if err != nil {
		return nil, fmt.Errorf("blockdev: session %d: %w", sid, err)
	}
	host, err := s.sessionHost(sid)
	if err != nil {
		return nil, err
	}
	info.HostNo = host
	cdir := s.path("class", "iscsi_connection", fmt.Sprintf("connection%d:0", sid))
	var addr, port string
	attr(&addr, filepath.Join(cdir, "persistent_address"))
	attr(&port, filepath.Join(cdir, "persistent_port"))
	if err == nil && (addr == "" || port == "") {
		attr(&addr, filepath.Join(cdir, "address"))
		attr(&port, filepath.Join(cdir, "port"))
	}
	if err != nil {
		return nil, fmt.Errorf("blockdev: connection %d:0: %w", sid, err)
	}
	if addr != "" && port != "" {
		info.Portal = net.JoinHostPort(addr, port)
	}
	return info, nil
}

// sessionDevice is the session's device directory
// (.../host<H>/session<S>), resolved through the class symlink.
func (s Sysfs) sessionDevice(sid uint32) (string, error) {
	p := s.path("class", "iscsi_session", fmt.Sprintf("session%d", sid), "device")
	d, err := filepath.EvalSymlinks(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%w: session %d", ErrNoSession, sid)
		}
		return "", fmt.Errorf("blockdev: session %d: %w", sid, err)
	}
	return d, nil
}

// sessionHost finds the SCSI host number of session sid: the session's
// device directory sits in host<N>.
func (s Sysfs) sessionHost(sid uint32) (uint32, error) {
	d, err := s.sessionDevice(sid)
	if err != nil {
		return 0, err
	}
	for dir := filepath.Dir(d); dir != "/" && dir != "." && dir != s.root(); dir = filepath.Dir(dir) {
		if n, ok := parseIndexed(filepath.Base(dir), "host"); ok {
			return n, nil
		}
	}
	return 0, fmt.Errorf("blockdev: session %d: no SCSI host above %s", sid, d)
}

// FindSession returns the session for (portal, target, iface, initiator
// name), or nil. The portal must be in net.JoinHostPort form with a literal
// IP, as the kernel stores it; iface "" matches "default"; initiatorName ""
// matches any (so does a session whose sysfs shows none).
func (s Sysfs) FindSession(portal, targetName, iface, initiatorName string) (*SessionInfo, error) {
	all, err := s.Sessions()
	if err != nil {
		return nil, err
	}
	want := normIface(iface)
	for i := range all {
		si := &all[i]
		if si.TargetName == targetName && samePortal(si.Portal, portal) && normIface(si.Iface) == want &&
			(initiatorName == "" || si.InitiatorName == "" || si.InitiatorName == initiatorName) {
			return si, nil
		}
	}
	return nil, nil
}

func normIface(s string) string {
	if s == "" {
		return DefaultIface
	}
	return s
}

// samePortal compares two host:port strings, IPs by value.
func samePortal(a, b string) bool {
	ah, ap, err1 := net.SplitHostPort(a)
	bh, bp, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil {
		return a == b
	}
	if ap != bp {
		return false
	}
	aip, bip := net.ParseIP(ah), net.ParseIP(bh)
	if aip != nil && bip != nil {
		return aip.Equal(bip)
	}
	return strings.EqualFold(ah, bh)
}

// SCSIDevice is one SCSI device (LUN) of a session with its block device.
type SCSIDevice struct {
	Host, Channel, Target uint32
	LUN                   uint64
	Block                 string // "sdb"; "" while the block device is not there yet
}

// Address is H:C:T:L.
func (d SCSIDevice) Address() string {
	return fmt.Sprintf("%d:%d:%d:%d", d.Host, d.Channel, d.Target, d.LUN)
}

// parseHCTL parses "2:0:0:1".
func parseHCTL(s string) (SCSIDevice, bool) {
	f := strings.Split(s, ":")
	if len(f) != 4 {
		return SCSIDevice{}, false
	}
	var v [3]uint32
	for i := 0; i < 3; i++ {
		n, err := strconv.ParseUint(f[i], 10, 32)
		if err != nil {
			return SCSIDevice{}, false
		}
		v[i] = uint32(n)
	}
	l, err := strconv.ParseUint(f[3], 10, 64)
	if err != nil {
		return SCSIDevice{}, false
	}
	return SCSIDevice{Host: v[0], Channel: v[1], Target: v[2], LUN: l}, true
}

// SessionDevices lists the SCSI devices of session sid
// (<session device>/target*/H:C:T:L), with their block device names. No
// session gives an error matching ErrNoSession.
func (s Sysfs) SessionDevices(sid uint32) ([]SCSIDevice, error) {
	d, err := s.sessionDevice(sid)
	if err != nil {
		return nil, err
	}
	targets, err := filepath.Glob(filepath.Join(d, "target*"))
	if err != nil {
		return nil, err
	}
	var out []SCSIDevice
	for _, t := range targets {
		ents, err := os.ReadDir(t)
		if err != nil {
			continue // vanished
		}
		for _, e := range ents {
			dev, ok := parseHCTL(e.Name())
			if !ok {
				continue
			}
			blocks, _ := os.ReadDir(filepath.Join(t, e.Name(), "block"))
			for _, b := range blocks {
				dev.Block = b.Name()
				break
			}
			out = append(out, dev)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LUN < out[j].LUN })
	return out, nil
}

// DeviceForLUN returns the SCSI device of lun on session sid, or nil.
func (s Sysfs) DeviceForLUN(sid uint32, lun uint64) (*SCSIDevice, error) {
	devs, err := s.SessionDevices(sid)
	if err != nil {
		return nil, err
	}
	for i := range devs {
		if devs[i].LUN == lun {
			return &devs[i], nil
		}
	}
	return nil, nil
}

// scanLUN asks the kernel to probe exactly one LUN of a host
// ("0 0 <lun>" to /sys/class/scsi_host/host<N>/scan), never a wildcard.
// Only Kernel.Attach calls it, under the session's lock.
func (s Sysfs) scanLUN(host uint32, lun uint64) error {
	p := s.path("class", "scsi_host", fmt.Sprintf("host%d", host), "scan")
	if err := writeAttr(p, fmt.Sprintf("0 0 %d", lun)); err != nil {
		return fmt.Errorf("blockdev: scanning LUN %d on host%d: %w", lun, host, err)
	}
	return nil
}

// writeAttr writes a sysfs attribute without O_CREAT (a missing attribute
// is an error, not a new file).
func writeAttr(p, v string) error {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(v)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// sessionOfBlock returns the iSCSI session the block device name belongs
// to, or nil when it belongs to none.
func (s Sysfs) sessionOfBlock(name string) (*SessionInfo, error) {
	sessions, err := s.Sessions()
	if err != nil {
		return nil, err
	}
	for i := range sessions {
		devs, err := s.SessionDevices(sessions[i].SID)
		if errors.Is(err, ErrNoSession) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, d := range devs {
			if d.Block == name {
				return &sessions[i], nil
			}
		}
	}
	return nil, nil
}

// BlockExists reports whether /sys/block/<name> exists.
func (s Sysfs) BlockExists(name string) bool {
	_, err := os.Stat(s.path("block", name))
	return err == nil
}

// BlockSize reads /sys/block/<name>/size (512-byte sectors) in bytes.
func (s Sysfs) BlockSize(name string) (int64, error) {
	v, err := readAttr(s.path("block", name, "size"))
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("blockdev: /sys/block/%s/size: %w", name, err)
	}
	return n * 512, nil
}

// deleteBlock writes "1" to /sys/block/<name>/device/delete. A device that
// is already gone is not an error. Only Kernel's DeleteDevice and Detach
// call it, under the session's lock.
func (s Sysfs) deleteBlock(name string) error {
	err := writeAttr(s.path("block", name, "device", "delete"), "1")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blockdev: deleting %s: %w", name, err)
	}
	return nil
}

// waitFor polls cond every interval until it returns true, an error, or
// ctx ends.
func waitFor(ctx context.Context, interval time.Duration, cond func() (bool, error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
