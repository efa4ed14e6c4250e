package blockdev

import (
	"bufio"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Host checks of Open: CAP_SYS_ADMIN and another NETLINK_ISCSI listener
// (iscsid).

// hasCapSysAdmin reads CapEff from /proc/self/status (bit 21).
func hasCapSysAdmin(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			c, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return false, err
			}
			return c&(1<<unix.CAP_SYS_ADMIN) != 0, nil
		}
	}
	return false, errors.New("no CapEff line")
}

// otherISCSIListeners lists NETLINK_ISCSI sockets other than self that
// listen to the iscsid group (/proc/net/netlink: sk Eth Pid Groups ...).
func otherISCSIListeners(path string, self uint32) ([]uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseNetlinkListeners(f, self)
}

// parseNetlinkListeners parses /proc/net/netlink.
func parseNetlinkListeners(r io.Reader, self uint32) ([]uint32, error) {
	var out []uint32
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 4 || fs[1] != strconv.Itoa(unix.NETLINK_ISCSI) {
			continue
		}
		pid, err1 := strconv.ParseUint(fs[2], 10, 32)
		groups, err2 := strconv.ParseUint(fs[3], 16, 64)
		if err1 != nil || err2 != nil || uint32(pid) == self || pid == 0 || groups&1 == 0 {
			continue
		}
		out = append(out, uint32(pid))
	}
	return out, sc.Err()
}
