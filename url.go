package iscsi

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/gosan/iscsi/internal/portal"
)

// URL is an address in the iSCSI URL form that libiscsi and qemu use:
//
//	iscsi://[user[%secret]@]host[:port]/target-name/lun[?target_user=U&target_password=P&header_digest=crc32c&data_digest=crc32c]
//
// ParseURL reads it. String and %v never print the secrets.
type URL struct {
	Host       string // host name or address, without brackets
	Port       int    // DefaultPort when the URL names none
	TargetName string // target IQN; empty for a portal-only URL (discovery)
	LUN        uint64
	HasLUN     bool

	// CHAP holds the credentials of the URL: User and Secret from the
	// user part, TargetUser and TargetSecret from the target_user and
	// target_password arguments. CHAP.User is empty when the URL names
	// none (log in without CHAP).
	CHAP CHAP

	HeaderDigest, DataDigest bool // header_digest, data_digest = crc32c
}

// URLError is returned for a URL that cannot be parsed. It never contains
// secrets.
type URLError struct {
	Reason string
}

func (e *URLError) Error() string { return "iscsi url: " + e.Reason }

// Portal returns host:port with IPv6 addresses in brackets: the form
// initiator.Dial and blockdev.Spec take.
func (u *URL) Portal() string { return net.JoinHostPort(u.Host, strconv.Itoa(u.Port)) }

// String returns the URL with any secret replaced by "xxxxx".
func (u URL) String() string {
	var b strings.Builder
	b.WriteString("iscsi://")
	if u.CHAP.User != "" {
		b.WriteString(url.PathEscape(u.CHAP.User))
		if u.CHAP.Secret != "" {
			b.WriteString("%xxxxx")
		}
		b.WriteByte('@')
	}
	b.WriteString(u.Portal())
	if u.TargetName != "" {
		b.WriteByte('/')
		b.WriteString(u.TargetName)
		if u.HasLUN {
			b.WriteByte('/')
			b.WriteString(strconv.FormatUint(u.LUN, 10))
		}
	}
	return b.String()
}

// GoString hides secrets from %#v as String does.
func (u URL) GoString() string { return "iscsi.URL(" + u.String() + ")" }

// ParseURL parses an iscsi:// URL. A URL with only a portal (for
// discovery) is valid; callers that need a target or a LUN check
// TargetName and HasLUN. Errors are *URLError.
func ParseURL(raw string) (*URL, error) {
	const scheme = "iscsi://"
	if !strings.HasPrefix(strings.ToLower(raw), scheme) {
		return nil, &URLError{Reason: "must start with iscsi://"}
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
			return nil, &URLError{Reason: fmt.Sprintf("bad target %q", target)}
		}
		u.TargetName = target
		if hasLUN {
			n, err := strconv.ParseUint(lun, 10, 64)
			if err != nil {
				return nil, &URLError{Reason: fmt.Sprintf("bad LUN %q", lun)}
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
	if u.CHAP.User, err = url.PathUnescape(user); err != nil {
		return &URLError{Reason: "bad escape in user name"}
	}
	if hasSecret {
		// libiscsi takes the secret literally after '%'; accept it as is.
		u.CHAP.Secret = secret
	}
	if u.CHAP.User == "" {
		return &URLError{Reason: "empty user name before '@'"}
	}
	return nil
}

// setHostPort takes host[:port] as internal/portal parses it, minus what a
// URL cannot hold: a bare IPv6 address (RFC 3986 wants brackets) and a
// ",portal-group-tag". Reasons never repeat the input: a malformed user part
// can leave pieces of a secret here.
func (u *URL) setHostPort(hp string) error {
	if hp == "" {
		return &URLError{Reason: "no host"}
	}
	if !strings.HasPrefix(hp, "[") && strings.Count(hp, ":") > 1 {
		return &URLError{Reason: "IPv6 address must be in brackets"}
	}
	a, err := portal.Parse(hp)
	if err != nil {
		var pe *portal.Error
		if errors.As(err, &pe) {
			return &URLError{Reason: "bad host[:port]: " + pe.Reason}
		}
		return &URLError{Reason: "bad host[:port]"}
	}
	if a.HasTag {
		return &URLError{Reason: "bad host[:port]: portal group tag not allowed in a URL"}
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
		return &URLError{Reason: "bad query string"}
	}
	for k, vs := range vals {
		v := vs[len(vs)-1]
		switch k {
		case "target_user":
			u.CHAP.TargetUser = v
		case "target_password":
			u.CHAP.TargetSecret = v
		case "header_digest":
			if u.HeaderDigest, err = digest(v); err != nil {
				return err
			}
		case "data_digest":
			if u.DataDigest, err = digest(v); err != nil {
				return err
			}
		default:
			return &URLError{Reason: fmt.Sprintf("unknown URL argument %q", k)}
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
	return false, &URLError{Reason: fmt.Sprintf("digest must be crc32c or none, not %q", v)}
}

// ApplyEnv fills the credentials the URL does not carry from libiscsi's
// environment variables LIBISCSI_CHAP_USERNAME, LIBISCSI_CHAP_PASSWORD,
// LIBISCSI_CHAP_TARGET_USERNAME and LIBISCSI_CHAP_TARGET_PASSWORD, looked
// up with getenv (os.Getenv in programs; a map in tests), so secrets can
// stay off the command line. What the URL names wins.
func (u *URL) ApplyEnv(getenv func(string) string) {
	set := func(dst *string, key string) {
		if *dst == "" {
			*dst = getenv(key)
		}
	}
	set(&u.CHAP.User, "LIBISCSI_CHAP_USERNAME")
	set(&u.CHAP.Secret, "LIBISCSI_CHAP_PASSWORD")
	set(&u.CHAP.TargetUser, "LIBISCSI_CHAP_TARGET_USERNAME")
	set(&u.CHAP.TargetSecret, "LIBISCSI_CHAP_TARGET_PASSWORD")
}
