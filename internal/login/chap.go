package login

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"strconv"
	"strings"
)

// CHAPAlgorithm is a CHAP_A value (RFC 7143 §12.1.3, IANA "iSCSI
// parameters" CHAP algorithm registry).
type CHAPAlgorithm uint8

// CHAP algorithms. tgtd and Debian 12's LIO know only MD5; newer LIO and
// open-iscsi also do SHA-1, SHA-256 and SHA3-256.
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
// such login fails (measured here; see initiator's tgtd tests).
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

func (a CHAPAlgorithm) newHash() hash.Hash {
	switch a {
	case CHAPMD5:
		return md5.New()
	case CHAPSHA1:
		return sha1.New()
	case CHAPSHA256:
		return sha256.New()
	case CHAPSHA3256:
		return sha3.New256()
	}
	return nil
}

// Size is the digest length in bytes (0 for an unknown algorithm).
func (a CHAPAlgorithm) Size() int {
	if h := a.newHash(); h != nil {
		return h.Size()
	}
	return 0
}

// chapResponse computes H(id || secret || challenge) (RFC 1994 §4.1).
func chapResponse(a CHAPAlgorithm, id byte, secret string, challenge []byte) []byte {
	h := a.newHash()
	h.Write([]byte{id})
	io.WriteString(h, secret)
	h.Write(challenge)
	return h.Sum(nil)
}

// MinSecretLen is the shortest CHAP secret accepted unless
// AllowShortSecrets is set: RFC 7143 §12.1.3 requires 96 bits.
const MinSecretLen = 12

// maxSecretLen bounds secrets (tgtd and LIO allow less).
const maxSecretLen = 255

// maxChallengeLen bounds the target's CHAP_C (RFC 7143 §12.1.3: 1024).
const maxChallengeLen = 1024

// CHAP configures CHAP authentication. User/Secret authenticate us to
// the target; TargetUser/TargetSecret, when TargetSecret is set, make us
// authenticate the target too (mutual CHAP).
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

func (c CHAP) algorithms() []CHAPAlgorithm {
	if len(c.Algorithms) == 0 {
		return DefaultCHAPAlgorithms()
	}
	return c.Algorithms
}

func (c CHAP) validate() error {
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
	for _, a := range c.algorithms() {
		if a.newHash() == nil {
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
func (c CHAP) GoString() string { return "login." + c.String() }

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

// chapState is one CHAP exchange (RFC 7143 §12.1.3), initiator side.
type chapState struct {
	cfg  *CHAP
	rand io.Reader

	alg          CHAPAlgorithm
	targetID     int // -1 until received
	targetChal   []byte
	ourID        byte
	ourChal      []byte
	responseSent bool
	targetName   *string
	targetResp   []byte
	verified     bool
}

func newCHAPState(cfg *CHAP, rnd io.Reader) *chapState {
	return &chapState{cfg: cfg, rand: rnd, targetID: -1}
}

// offerAlgorithms is the CHAP_A value we send.
func (s *chapState) offerAlgorithms() string {
	var b strings.Builder
	for i, a := range s.cfg.algorithms() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(a)))
	}
	return b.String()
}

// handle takes one CHAP_* key from the target.
func (s *chapState) handle(k, v string) error {
	switch k {
	case "CHAP_A":
		if s.alg != 0 {
			return protoErr("CHAP_A repeated")
		}
		if v == valReject || v == valNotUnderstood || v == valIrrelevant {
			return fmt.Errorf("%w: target answered CHAP_A=%s to our offer %s", ErrAuthentication, v, s.offerAlgorithms())
		}
		n, err := parseNumber(v)
		if err != nil {
			return protoErr("CHAP_A=%q: %v", truncate(v, 32), err)
		}
		for _, a := range s.cfg.algorithms() {
			if uint64(a) == n {
				s.alg = a
				return nil
			}
		}
		return protoErr("target chose CHAP_A=%d, which we did not offer (%s)", n, s.offerAlgorithms())
	case "CHAP_I":
		n, err := parseNumber(v)
		if err != nil || n > 255 {
			return protoErr("CHAP_I=%q is not 0..255", truncate(v, 32))
		}
		s.targetID = int(n)
	case "CHAP_C":
		c, err := parseBinary(v)
		if err != nil {
			return protoErr("CHAP_C: %v", err)
		}
		if len(c) == 0 || len(c) > maxChallengeLen {
			return protoErr("CHAP_C of %d bytes (want 1..%d)", len(c), maxChallengeLen)
		}
		if s.ourChal != nil && subtle.ConstantTimeCompare(c, s.ourChal) == 1 {
			return ErrCHAPReflection
		}
		s.targetChal = c
	case "CHAP_N":
		if !s.responseSent || !s.cfg.Mutual() {
			return protoErr("unexpected CHAP_N from target")
		}
		s.targetName = &v
	case "CHAP_R":
		if !s.responseSent || !s.cfg.Mutual() {
			return protoErr("unexpected CHAP_R from target")
		}
		r, err := parseBinary(v)
		if err != nil {
			return fmt.Errorf("%w: target CHAP_R unreadable: %v", ErrMutualAuth, err)
		}
		s.targetResp = r
	default:
		return protoErr("unexpected %s from target", k)
	}
	return nil
}

// readyToRespond: algorithm, identifier and challenge all received.
func (s *chapState) readyToRespond() bool {
	return !s.responseSent && s.alg != 0 && s.targetID >= 0 && s.targetChal != nil
}

// response builds CHAP_N, CHAP_R and, for mutual CHAP, our CHAP_I/CHAP_C.
func (s *chapState) response() ([]kv, error) {
	out := []kv{
		{"CHAP_N", s.cfg.User},
		{"CHAP_R", formatHex(chapResponse(s.alg, byte(s.targetID), s.cfg.Secret, s.targetChal))},
	}
	if s.cfg.Mutual() {
		var idb [1]byte
		n := max(s.alg.Size(), 16)
		chal := make([]byte, n)
		if _, err := io.ReadFull(s.rand, idb[:]); err != nil {
			return nil, fmt.Errorf("login: CHAP challenge: %w", err)
		}
		if _, err := io.ReadFull(s.rand, chal); err != nil {
			return nil, fmt.Errorf("login: CHAP challenge: %w", err)
		}
		if subtle.ConstantTimeCompare(chal, s.targetChal) == 1 {
			// The target's challenge is the one we are about to send:
			// answering it would hand the target the proof it needs.
			return nil, ErrCHAPReflection
		}
		s.ourID, s.ourChal = idb[0], chal
		out = append(out, kv{"CHAP_I", strconv.Itoa(int(s.ourID))}, kv{"CHAP_C", formatHex(s.ourChal)})
	}
	s.responseSent = true
	return out, nil
}

// verify checks the target's answer to our challenge (mutual CHAP).
func (s *chapState) verify() error {
	if !s.cfg.Mutual() {
		return nil
	}
	if s.verified {
		return nil
	}
	if s.targetName == nil || s.targetResp == nil {
		return fmt.Errorf("%w: target sent no CHAP_N/CHAP_R", ErrMutualAuth)
	}
	if s.cfg.TargetUser != "" && *s.targetName != s.cfg.TargetUser {
		return fmt.Errorf("%w: target CHAP_N is %q, want %q", ErrMutualAuth, truncate(*s.targetName, 64), s.cfg.TargetUser)
	}
	want := chapResponse(s.alg, s.ourID, s.cfg.TargetSecret, s.ourChal)
	if subtle.ConstantTimeCompare(want, s.targetResp) != 1 {
		// A target answering with the initiator's own secret would also
		// land here: the secrets are checked to differ in validate.
		return fmt.Errorf("%w: wrong CHAP_R", ErrMutualAuth)
	}
	s.verified = true
	return nil
}
