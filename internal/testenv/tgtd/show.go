//go:build linux

package tgtd

import (
	"fmt"
	"strconv"
	"strings"
)

// Target is one target of `tgtadm --mode target --op show`.
type Target struct {
	TID      int
	Name     string
	Driver   string
	State    string
	Sessions []Session
	LUNs     []LUN
	Accounts []Account
	ACLs     []string // "ALL", addresses, or initiator names
}

// LUN is one logical unit as tgtd reports it.
type LUN struct {
	LUN         uint64
	Type        string // "controller" (LUN 0), "disk", ...
	SizeMB      int64  // decimal megabytes, rounded: see SizeMB
	BlockSize   int
	Online      bool
	Readonly    bool
	BackingType string // rdwr, null, ...
	BackingPath string // file path, "None", or "null-..."
}

// Session is one I_T nexus.
type Session struct {
	SID         uint64
	Initiator   string
	Alias       string
	Connections []Connection
}

// Connection is one connection of a session.
type Connection struct {
	CID int
	IP  string
}

// Account is a CHAP account bound to a target.
type Account struct {
	User     string
	Outgoing bool
}

// SizeMB converts bytes to the "Size: N MB" tgtd shows (decimal MB,
// rounded to nearest: 64 MiB shows 67, 1 TiB shows 1099512).
func SizeMB(bytes int64) int64 { return (bytes + 500000) / 1000000 }

// ParseShow parses the output of `tgtadm --lld iscsi --mode target --op show`.
// Unknown lines are ignored; malformed numbers are errors.
func ParseShow(out string) ([]Target, error) {
	var (
		targets []Target
		t       *Target
		section string
		sess    *Session
		lun     *LUN
	)
	for n, raw := range strings.Split(out, "\n") {
		line := strings.TrimSpace(raw)
		if line == "" {
			continue
		}
		bad := func(err error) error { return fmt.Errorf("tgtd: show line %d %q: %w", n+1, line, err) }
		indent := len(raw) - len(strings.TrimLeft(raw, " \t"))
		if indent == 0 {
			rest, ok := strings.CutPrefix(line, "Target ")
			if !ok {
				continue
			}
			num, name, ok := strings.Cut(rest, ":")
			if !ok {
				return nil, bad(fmt.Errorf("no ':'"))
			}
			tid, err := strconv.Atoi(strings.TrimSpace(num))
			if err != nil {
				return nil, bad(err)
			}
			targets = append(targets, Target{TID: tid, Name: strings.TrimSpace(name)})
			t, section, sess, lun = &targets[len(targets)-1], "", nil, nil
			continue
		}
		if t == nil {
			continue
		}
		if indent <= 4 {
			section, sess, lun = strings.TrimSuffix(line, ":"), nil, nil
			continue
		}
		key, val, hasColon := strings.Cut(line, ":")
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		switch section {
		case "System information":
			switch key {
			case "Driver":
				t.Driver = val
			case "State":
				t.State = val
			}
		case "I_T nexus information":
			switch {
			case key == "I_T nexus":
				sid, err := strconv.ParseUint(val, 10, 64)
				if err != nil {
					return nil, bad(err)
				}
				t.Sessions = append(t.Sessions, Session{SID: sid})
				sess = &t.Sessions[len(t.Sessions)-1]
			case sess == nil:
			case key == "Initiator":
				name, alias, _ := strings.Cut(val, " alias:")
				sess.Initiator, sess.Alias = strings.TrimSpace(name), strings.TrimSpace(alias)
			case key == "Connection":
				cid, err := strconv.Atoi(val)
				if err != nil {
					return nil, bad(err)
				}
				sess.Connections = append(sess.Connections, Connection{CID: cid})
			case key == "IP Address" && len(sess.Connections) > 0:
				sess.Connections[len(sess.Connections)-1].IP = val
			}
		case "LUN information":
			if key == "LUN" {
				num, err := strconv.ParseUint(val, 10, 64)
				if err != nil {
					return nil, bad(err)
				}
				t.LUNs = append(t.LUNs, LUN{LUN: num})
				lun = &t.LUNs[len(t.LUNs)-1]
				continue
			}
			if lun == nil {
				continue
			}
			switch key {
			case "Type":
				lun.Type = val
			case "Size":
				// "67 MB, Block size: 512"
				size, bs, _ := strings.Cut(val, ",")
				mb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(size), "MB")), 10, 64)
				if err != nil {
					return nil, bad(err)
				}
				lun.SizeMB = mb
				if _, b, ok := strings.Cut(bs, ":"); ok {
					if lun.BlockSize, err = strconv.Atoi(strings.TrimSpace(b)); err != nil {
						return nil, bad(err)
					}
				}
			case "Online":
				lun.Online = val == "Yes"
			case "Readonly":
				lun.Readonly = val == "Yes"
			case "Backing store type":
				lun.BackingType = val
			case "Backing store path":
				lun.BackingPath = val
			}
		case "Account information":
			if hasColon {
				continue
			}
			user, outgoing := strings.CutSuffix(line, " (outgoing)")
			t.Accounts = append(t.Accounts, Account{User: user, Outgoing: outgoing})
		case "ACL information":
			t.ACLs = append(t.ACLs, line)
		}
	}
	return targets, nil
}

// ParseParams parses the key=value lines of `--mode target --op show --tid T`.
func ParseParams(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok && k != "" {
			m[k] = v
		}
	}
	return m
}

// LUN returns LUN n of the target, or nil.
func (t *Target) LUN(n uint64) *LUN {
	for i := range t.LUNs {
		if t.LUNs[i].LUN == n {
			return &t.LUNs[i]
		}
	}
	return nil
}
