package login

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/subtle"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"

	"github.com/gosan/iscsi"
)

// newHash returns the hash of a CHAP algorithm (nil for an unknown one).
func newHash(a iscsi.CHAPAlgorithm) hash.Hash {
	switch a {
	case iscsi.CHAPMD5:
		return md5.New()
	case iscsi.CHAPSHA1:
		return sha1.New()
	case iscsi.CHAPSHA256:
		return sha256.New()
	case iscsi.CHAPSHA3256:
		return sha3.New256()
	}
	return nil
}

// chapResponse computes H(id || secret || challenge) (RFC 1994 §4.1).
func chapResponse(a iscsi.CHAPAlgorithm, id byte, secret string, challenge []byte) []byte {
	h := newHash(a)
	h.Write([]byte{id})
	io.WriteString(h, secret)
	h.Write(challenge)
	return h.Sum(nil)
}

// maxChallengeLen bounds the target's CHAP_C (RFC 7143 §12.1.3: 1024).
const maxChallengeLen = 1024

// chapState is one CHAP exchange (RFC 7143 §12.1.3), initiator side.
type chapState struct {
	cfg  *iscsi.CHAP
	rand io.Reader

	alg          iscsi.CHAPAlgorithm
	targetID     int // -1 until received
	targetChal   []byte
	ourID        byte
	ourChal      []byte
	responseSent bool
	targetName   *string
	targetResp   []byte
	verified     bool
}

func newCHAPState(cfg *iscsi.CHAP, rnd io.Reader) *chapState {
	return &chapState{cfg: cfg, rand: rnd, targetID: -1}
}

// offerAlgorithms is the CHAP_A value we send.
func (s *chapState) offerAlgorithms() string {
	var b strings.Builder
	for i, a := range s.cfg.Offered() {
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
			return fmt.Errorf("%w: target answered CHAP_A=%s to our offer %s", iscsi.ErrAuthentication, v, s.offerAlgorithms())
		}
		n, err := parseNumber(v)
		if err != nil {
			return protoErr("CHAP_A=%q: %v", truncate(v, 32), err)
		}
		for _, a := range s.cfg.Offered() {
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
			return iscsi.ErrCHAPReflection
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
			return fmt.Errorf("%w: target CHAP_R unreadable: %v", iscsi.ErrMutualAuth, err)
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
			return nil, iscsi.ErrCHAPReflection
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
		return fmt.Errorf("%w: target sent no CHAP_N/CHAP_R", iscsi.ErrMutualAuth)
	}
	if s.cfg.TargetUser != "" && *s.targetName != s.cfg.TargetUser {
		return fmt.Errorf("%w: target CHAP_N is %q, want %q", iscsi.ErrMutualAuth, truncate(*s.targetName, 64), s.cfg.TargetUser)
	}
	want := chapResponse(s.alg, s.ourID, s.cfg.TargetSecret, s.ourChal)
	if subtle.ConstantTimeCompare(want, s.targetResp) != 1 {
		// A target answering with the initiator's own secret would also
		// land here: the secrets are checked to differ in validate.
		return fmt.Errorf("%w: wrong CHAP_R", iscsi.ErrMutualAuth)
	}
	s.verified = true
	return nil
}
