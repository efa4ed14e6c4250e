// Package iscsiurl parses the iSCSI URL form that libiscsi and qemu use:
//
//	iscsi://[user[%secret]@]host[:port]/target-iqn/lun[?target_user=U&target_password=P&header_digest=crc32c&data_digest=crc32c]
//
// Users of libiscsi and qemu already know it, so examples/iscsictl and
// examples/quickstart take addresses in this form. Secrets may also come from
// the environment (LIBISCSI_CHAP_USERNAME, LIBISCSI_CHAP_PASSWORD,
// LIBISCSI_CHAP_TARGET_USERNAME, LIBISCSI_CHAP_TARGET_PASSWORD) so they stay
// off the command line; see ApplyEnv.
package iscsiurl

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/gosan/iscsi/internal/portal"
)

// DefaultPort is the IANA iSCSI port.
const DefaultPort = portal.DefaultPort

// URL is a parsed iSCSI URL. Secrets are never printed by String or %v.
type URL struct {
	Host   string // host name or address, without brackets
	Port   int
	Target string // target IQN; empty for a portal-only URL (discovery)
	LUN    uint64
	HasLUN bool

	User, Secret             string // CHAP: the target checks us
	TargetUser, TargetSecret string // mutual CHAP: we check the target

	HeaderDigest, DataDigest bool
}

// Error is returned for a URL that cannot be parsed. It never contains secrets.
type Error struct {
	Reason string
}

func (e *Error) Error() string { return "iscsi url: " + e.Reason }

// ErrNoTarget is returned by Parse with RequireTarget when the URL names no target.
var ErrNoTarget = errors.New("iscsi url: no target IQN in URL")

// Portal returns host:port with IPv6 addresses in brackets.
func (u *URL) Portal() string { return net.JoinHostPort(u.Host, strconv.Itoa(u.Port)) }

// String returns the URL with any secret replaced by "xxxxx".
func (u URL) String() string {
	var b strings.Builder
	b.WriteString("iscsi://")
	if u.User != "" {
		b.WriteString(url.PathEscape(u.User))
		if u.Secret != "" {
			b.WriteString("%xxxxx")
		}
		b.WriteByte('@')
	}
	b.WriteString(u.Portal())
	if u.Target != "" {
		b.WriteByte('/')
		b.WriteString(u.Target)
		if u.HasLUN {
			b.WriteByte('/')
			b.WriteString(strconv.FormatUint(u.LUN, 10))
		}
	}
	return b.String()
}

// GoString hides secrets from %#v as String does.
func (u URL) GoString() string { return "iscsiurl.URL(" + u.String() + ")" }

// Parse parses an iscsi:// URL. A URL with only a portal (for discovery) is
// valid; callers that need a target or a LUN check Target and HasLUN.
func Parse(raw string) (*URL, error) {
	const scheme = "iscsi://"
	if !strings.HasPrefix(strings.ToLower(raw), scheme) {
		return nil, &Error{Reason: "must start with iscsi://"}
	}
	rest := raw[len(scheme):]
	var query string
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		rest, query = rest[:i], rest[i+1:]
	}
	u := &URL{Port: DefaultPort}
	// The user part ends at the last '@' before the first '/': secrets may
	// contain '@' but not '/'.
	hostAndPath := rest
	if slash := strings.IndexByte(rest, '/'); slash >= 0 {
		if at := strings.LastIndexByte(rest[:slash], '@'); at >= 0 {
			if err := u.setUser(rest[:at]); err != nil {
				return nil, err
			}
			hostAndPath = rest[at+1:]
		}
	} else if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		if err := u.setUser(rest[:at]); err != nil {
			return nil, err
		}
		hostAndPath = rest[at+1:]
	}
	hostport, path, _ := strings.Cut(hostAndPath, "/")
	if err := u.setHostPort(hostport); err != nil {
		return nil, err
	}
	path = strings.TrimSuffix(path, "/")
	if path != "" {
		target, lun, hasLUN := path, "", false
		if i := strings.LastIndexByte(path, '/'); i >= 0 {
			target, lun, hasLUN = path[:i], path[i+1:], true
		}
		if target == "" || strings.Contains(target, "/") {
			return nil, &Error{Reason: fmt.Sprintf("bad target %q", target)}
		}
		u.Target = target
		if hasLUN {
			n, err := strconv.ParseUint(lun, 10, 64)
			if err != nil {
				return nil, &Error{Reason: fmt.Sprintf("bad LUN %q", lun)}
			}
			u.LUN, u.HasLUN = n, true
		}
	}
	if err := u.setQuery(query); err != nil {
		return nil, err
	}
	return u, nil
}

func (u *URL) setUser(s string) error {
	user, secret, hasSecret := strings.Cut(s, "%")
	var err error
	if u.User, err = url.PathUnescape(user); err != nil {
		return &Error{Reason: "bad escape in user name"}
	}
	if hasSecret {
		// libiscsi takes the secret literally after '%'; accept it as is.
		u.Secret = secret
	}
	if u.User == "" {
		return &Error{Reason: "empty user name before '@'"}
	}
	return nil
}

// setHostPort takes host[:port] as internal/portal parses it, minus what a
// URL cannot hold: a bare IPv6 address (RFC 3986 wants brackets) and a
// ",portal-group-tag". Reasons never repeat the input: a malformed user part
// can leave pieces of a secret here.
func (u *URL) setHostPort(hp string) error {
	if hp == "" {
		return &Error{Reason: "no host"}
	}
	if !strings.HasPrefix(hp, "[") && strings.Count(hp, ":") > 1 {
		return &Error{Reason: "IPv6 address must be in brackets"}
	}
	a, err := portal.Parse(hp)
	if err != nil {
		var pe *portal.Error
		if errors.As(err, &pe) {
			return &Error{Reason: "bad host[:port]: " + pe.Reason}
		}
		return &Error{Reason: "bad host[:port]"}
	}
	if a.HasTag {
		return &Error{Reason: "bad host[:port]: portal group tag not allowed in a URL"}
	}
	u.Host, u.Port = a.Host, a.Port
	return nil
}

func (u *URL) setQuery(q string) error {
	if q == "" {
		return nil
	}
	vals, err := url.ParseQuery(q)
	if err != nil {
		return &Error{Reason: "bad query string"}
	}
	for k, vs := range vals {
		v := vs[len(vs)-1]
		switch k {
		case "target_user":
			u.TargetUser = v
		case "target_password":
			u.TargetSecret = v
		case "header_digest":
			if u.HeaderDigest, err = digest(v); err != nil {
				return err
			}
		case "data_digest":
			if u.DataDigest, err = digest(v); err != nil {
				return err
			}
		default:
			return &Error{Reason: fmt.Sprintf("unknown URL argument %q", k)}
		}
	}
	return nil
}

func digest(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "crc32c":
		return true, nil
	case "none":
		return false, nil
	}
	return false, &Error{Reason: fmt.Sprintf("digest must be crc32c or none, not %q", v)}
}

// ApplyEnv fills credentials the URL does not carry from libiscsi's
// environment variables, looked up with getenv (os.Getenv in programs; a map
// in tests).
func (u *URL) ApplyEnv(getenv func(string) string) {
	set := func(dst *string, key string) {
		if *dst == "" {
			*dst = getenv(key)
		}
	}
	set(&u.User, "LIBISCSI_CHAP_USERNAME")
	set(&u.Secret, "LIBISCSI_CHAP_PASSWORD")
	set(&u.TargetUser, "LIBISCSI_CHAP_TARGET_USERNAME")
	set(&u.TargetSecret, "LIBISCSI_CHAP_TARGET_PASSWORD")
}
