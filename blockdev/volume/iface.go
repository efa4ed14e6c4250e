package volume

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gosan/iscsi/blockdev"
)

// DefaultIfaceDir is where open-iscsi keeps its iface records
// (iscsiadm -m iface), read to map Volume.ISCSIInterface.
const DefaultIfaceDir = "/etc/iscsi/ifaces"

// Errors callers branch on (errors.Is) for Volume.ISCSIInterface; both are
// wrapped in an *IfaceError.
var (
	// ErrIfaceUnsupported: the iface uses a transport other than iscsi_tcp
	// (a hardware offload: bnx2i, cxgb3i, cxgb4i, qla4xxx, be2iscsi, qedi;
	// or iser), which this initiator does not drive.
	ErrIfaceUnsupported = errors.New("iSCSI interface needs a transport other than iscsi_tcp")
	// ErrIfaceUnknown: the name is neither "default", an iface record nor a
	// network interface of this node.
	ErrIfaceUnknown = errors.New("iSCSI interface not found")
)

// IfaceError is a Volume.ISCSIInterface that Stage cannot honour.
type IfaceError struct {
	Iface     string
	Transport string // the iface record's transport, when known
	Err       error  // ErrIfaceUnsupported or ErrIfaceUnknown
}

func (e *IfaceError) Error() string {
	if e.Transport != "" {
		return fmt.Sprintf("iscsiInterface %q (transport %s): %v", e.Iface, e.Transport, e.Err)
	}
	return fmt.Sprintf("iscsiInterface %q: %v", e.Iface, e.Err)
}

func (e *IfaceError) Unwrap() error { return e.Err }

// offloadTransports are open-iscsi's transports other than tcp; their
// default iface names are <transport>.<mac>.
var offloadTransports = []string{"bnx2i", "cxgb3i", "cxgb4i", "qla4xxx", "be2iscsi", "qedi", "iser"}

// resolveIface maps an iscsiInterface to the network device the session's
// socket binds to (SO_BINDTODEVICE): "default" binds none; an open-iscsi
// iface record in ifaceDir gives its iface.net_ifacename (transport tcp
// only); a name of a network device in <sysfs>/class/net binds that
// device. Offload transports and anything else are errors: kubelet hands
// them to iscsiadm, which this initiator replaces.
func resolveIface(ifaceDir, sysfs, name string) (netdev string, err error) {
	if name == blockdev.DefaultIface {
		return "", nil
	}
	for _, t := range offloadTransports {
		if name == t || strings.HasPrefix(name, t+".") {
			return "", &IfaceError{Iface: name, Transport: t, Err: ErrIfaceUnsupported}
		}
	}
	rec, err := readIfaceRecord(filepath.Join(ifaceDir, name))
	switch {
	case err == nil:
		if t := rec["iface.transport_name"]; t != "" && t != "tcp" {
			return "", &IfaceError{Iface: name, Transport: t, Err: ErrIfaceUnsupported}
		}
		return rec["iface.net_ifacename"], nil
	case !isNotExist(err):
		return "", fmt.Errorf("iscsiInterface %q: %w", name, err)
	}
	if _, err := os.Stat(filepath.Join(sysfs, "class", "net", name)); err == nil {
		return name, nil
	}
	return "", &IfaceError{Iface: name, Err: ErrIfaceUnknown}
}

// readIfaceRecord reads an open-iscsi iface record: "key = value" lines,
// "#" comments.
func readIfaceRecord(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			v = strings.TrimSpace(v)
			if v == "<empty>" {
				v = ""
			}
			out[strings.TrimSpace(k)] = v
		}
	}
	return out, sc.Err()
}
