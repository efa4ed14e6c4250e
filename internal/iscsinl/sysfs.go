//go:build linux

package iscsinl

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// transportModules maps transport names to the kernel module providing them.
var transportModules = map[string]string{
	"tcp":      "iscsi_tcp",
	"iser":     "ib_iser",
	"cxgb3i":   "cxgb3i",
	"cxgb4i":   "cxgb4i",
	"bnx2i":    "bnx2i",
	"be2iscsi": "be2iscsi",
	"qla4xxx":  "qla4xxx",
	"qedi":     "qedi",
}

// TransportHandle reads the handle of an iSCSI transport ("tcp" for
// iscsi_tcp) from /sys/class/iscsi_transport/<name>/handle. When the file is
// missing the error is a *TransportNotLoadedError (errors.Is
// ErrTransportNotLoaded) naming the module to load.
func TransportHandle(name string) (uint64, error) { return transportHandle("/sys", name) }

func transportHandle(sysfsRoot, name string) (uint64, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return 0, fmt.Errorf("iscsinl: invalid transport name %q", name)
	}
	p := filepath.Join(sysfsRoot, "class", "iscsi_transport", name, "handle")
	b, err := os.ReadFile(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			mod := transportModules[name]
			if mod == "" {
				mod = "providing iSCSI transport " + name
			}
			return 0, &TransportNotLoadedError{Name: name, Module: mod, Path: p}
		}
		return 0, fmt.Errorf("iscsinl: reading transport handle: %w", err)
	}
	h, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("iscsinl: %s: %w", p, err)
	}
	if h == 0 {
		return 0, fmt.Errorf("iscsinl: %s: handle is 0", p)
	}
	return h, nil
}

// otherListeners lists the port ids of NETLINK_ISCSI sockets, other than
// self, subscribed to the iscsid group, from /proc/net/netlink (columns:
// sk Eth Pid Groups ...; Eth is the protocol, Groups the first 32 group
// bits in hex).
func otherListeners(path string, self uint32) ([]uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []uint32
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 4 || fs[1] != "8" {
			continue
		}
		pid, err1 := strconv.ParseUint(fs[2], 10, 32)
		groups, err2 := strconv.ParseUint(fs[3], 16, 64)
		if err1 != nil || err2 != nil || uint32(pid) == self || groups&(1<<(GroupISCSID-1)) == 0 {
			continue
		}
		out = append(out, uint32(pid))
	}
	return out, sc.Err()
}
