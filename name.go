package iscsi

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"strings"
)

// DefaultPort is the IANA iSCSI port, used when a portal names none.
const DefaultPort = 3260

// InitiatorNameFile is open-iscsi's initiator name file, which
// DefaultInitiatorName reads first.
const InitiatorNameFile = "/etc/iscsi/initiatorname.iscsi"

// DefaultInitiatorName returns the host's initiator name, the one every
// package of this module logs in with when the caller names none: the
// InitiatorName= value of InitiatorNameFile when present (so this module
// and open-iscsi present the same identity), else a stable IQN derived
// from /etc/machine-id and the host name
// ("iqn.2026-11.org.gosan:" + 12 hex digits). The userspace initiator and
// the kernel binding both call it, so a target ACL written for one admits
// the other.
func DefaultInitiatorName() string {
	if f, err := os.Open(InitiatorNameFile); err == nil {
		defer f.Close()
		if n := parseInitiatorNameFile(f); n != "" {
			return n
		}
	}
	id, _ := os.ReadFile("/etc/machine-id")
	host, _ := os.Hostname()
	return generatedName(strings.TrimSpace(string(id)), host)
}

func parseInitiatorNameFile(r io.Reader) string {
	sc := bufio.NewScanner(io.LimitReader(r, 64<<10))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") {
			continue
		}
		if v, ok := strings.CutPrefix(line, "InitiatorName="); ok {
			if v = strings.TrimSpace(v); v != "" {
				return v
			}
		}
	}
	return ""
}

func generatedName(machineID, host string) string {
	h := sha256.Sum256([]byte(machineID + "\x00" + host))
	return "iqn.2026-11.org.gosan:" + hex.EncodeToString(h[:6])
}
