package iscsi

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
)

// CHAPAlgorithm is a CHAP_A value (RFC 7143 §12.1.3, IANA "iSCSI
// parameters" CHAP algorithm registry).
type CHAPAlgorithm uint8

// CHAP algorithms. tgtd and Debian 12's LIO know only MD5; newer LIO and
// open-iscsi also do SHA-1, SHA-256 and SHA3-256 (RFC 7143 §12.1.3,
// RFC 8507 for SHA).
const (
	CHAPMD5     CHAPAlgorithm = 5
	CHAPSHA1    CHAPAlgorithm = 6
	CHAPSHA256  CHAPAlgorithm = 7
	CHAPSHA3256 CHAPAlgorithm = 8
)

// DefaultCHAPAlgorithms is the order offered when CHAP.Algorithms is
// empty: MD5 alone, as open-iscsi (node.session.auth.chap_algs) and libiscsi
// default to. Stronger algorithms are opt-in because a target may accept an
// offer it cannot carry out: tgtd 1.0.85 (Debian 12) answers CHAP_A=7 to an
// offer of "7,6,5" but can then only verify an MD5-sized response, so every
// such login fails.
func DefaultCHAPAlgorithms() []CHAPAlgorithm {
	return []CHAPAlgorithm{CHAPMD5}
}

func (a CHAPAlgorithm) String() string {
	switch a {
	case CHAPMD5:
		return "MD5"
	case CHAPSHA1:
		return "SHA1"
	case CHAPSHA256:
		return "SHA256"
	case CHAPSHA3256:
		return "SHA3-256"
	}
	return "CHAP_A(" + strconv.Itoa(int(a)) + ")"
}

// Size is the digest length in bytes (0 for an unknown algorithm).
func (a CHAPAlgorithm) Size() int {
	switch a {
	case CHAPMD5:
		return 16
	case CHAPSHA1:
		return 20
	case CHAPSHA256, CHAPSHA3256:
		return 32
	}
	return 0
}

// MinSecretLen is the shortest CHAP secret accepted unless
// AllowShortSecrets is set: RFC 7143 §12.1.3 requires 96 bits.
const MinSecretLen = 12

// maxSecretLen bounds secrets (tgtd and LIO allow less).
const maxSecretLen = 255

// CHAP holds the CHAP credentials of a login (RFC 7143 §12.1.3), for the
// userspace initiator (initiator.WithCHAP) and the kernel binding
// (blockdev.Spec.CHAP) alike. User/Secret authenticate the initiator to
// the target; TargetUser/TargetSecret, when TargetSecret is set, make the
// initiator authenticate the target too (mutual CHAP).
//
// Its String, GoString, Format, LogValue and MarshalJSON methods never
// reveal the secrets.
type CHAP struct {
	User   string
	Secret string
	// TargetUser is the name the target must send in CHAP_N; empty accepts
	// any name (the proof is CHAP_R).
	TargetUser   string
	TargetSecret string
	// Algorithms in order of preference; empty means DefaultCHAPAlgorithms().
	Algorithms []CHAPAlgorithm
	// AllowShortSecrets accepts secrets shorter than MinSecretLen (12
	// bytes), for targets configured that way. Off by default.
	AllowShortSecrets bool
}

// Mutual reports whether the target must authenticate itself.
func (c CHAP) Mutual() bool { return c.TargetSecret != "" }

// Offered returns the algorithms offered, in order: Algorithms, or
// DefaultCHAPAlgorithms() when that is empty.
func (c CHAP) Offered() []CHAPAlgorithm {
	if len(c.Algorithms) == 0 {
		return DefaultCHAPAlgorithms()
	}
	return c.Algorithms
}

// Validate reports why c cannot be used for a login; the error wraps
// ErrConfig and never contains a secret.
func (c CHAP) Validate() error {
	if c.User == "" {
		return fmt.Errorf("%w: CHAP user is empty", ErrConfig)
	}
	if len(c.User) > 255 || len(c.TargetUser) > 255 || strings.ContainsRune(c.User+c.TargetUser, 0) {
		return fmt.Errorf("%w: CHAP user name too long or contains NUL", ErrConfig)
	}
	check := func(which, s string) error {
		switch {
		case s == "":
			return fmt.Errorf("%w: %s is empty", ErrConfig, which)
		case len(s) > maxSecretLen:
			return fmt.Errorf("%w: %s longer than %d bytes", ErrConfig, which, maxSecretLen)
		case len(s) < MinSecretLen && !c.AllowShortSecrets:
			return fmt.Errorf("%w: %s is %d bytes, shorter than %d (set AllowShortSecrets to accept)", ErrConfig, which, len(s), MinSecretLen)
		}
		return nil
	}
	if err := check("CHAP secret", c.Secret); err != nil {
		return err
	}
	if c.Mutual() {
		if err := check("CHAP target secret", c.TargetSecret); err != nil {
			return err
		}
		if subtle.ConstantTimeCompare([]byte(c.Secret), []byte(c.TargetSecret)) == 1 {
			// RFC 7143 §12.1.3: a secret MUST NOT serve both directions
			// (that is what makes reflection attacks work).
			return fmt.Errorf("%w: CHAP secret and target secret are the same", ErrConfig)
		}
	}
	seen := map[CHAPAlgorithm]bool{}
	for _, a := range c.Offered() {
		if a.Size() == 0 {
			return fmt.Errorf("%w: unknown CHAP algorithm %d", ErrConfig, a)
		}
		if seen[a] {
			return fmt.Errorf("%w: CHAP algorithm %v listed twice", ErrConfig, a)
		}
		seen[a] = true
	}
	return nil
}

func redacted(s string) string {
	if s == "" {
		return ""
	}
	return "<redacted>"
}

// String shows the user names and algorithms, never the secrets.
func (c CHAP) String() string {
	return fmt.Sprintf("CHAP{User:%q Secret:%s TargetUser:%q TargetSecret:%s Algorithms:%v AllowShortSecrets:%t}",
		c.User, redacted(c.Secret), c.TargetUser, redacted(c.TargetSecret), c.Algorithms, c.AllowShortSecrets)
}

// GoString is String, for %#v.
func (c CHAP) GoString() string { return "iscsi." + c.String() }

// Format makes every fmt verb print String (or GoString for %#v).
func (c CHAP) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		io.WriteString(f, c.GoString())
		return
	}
	io.WriteString(f, c.String())
}

// LogValue hides the secrets from log/slog.
func (c CHAP) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("user", c.User),
		slog.String("secret", redacted(c.Secret)),
		slog.String("target_user", c.TargetUser),
		slog.String("target_secret", redacted(c.TargetSecret)),
		slog.Any("algorithms", c.Algorithms),
		slog.Bool("allow_short_secrets", c.AllowShortSecrets),
	)
}

// MarshalJSON hides the secrets from encoding/json (and so from
// slog.JSONHandler when a CHAP is nested in another struct).
func (c CHAP) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		User, Secret, TargetUser, TargetSecret string
		Algorithms                             []CHAPAlgorithm
		AllowShortSecrets                      bool
	}{c.User, redacted(c.Secret), c.TargetUser, redacted(c.TargetSecret), c.Algorithms, c.AllowShortSecrets})
}
