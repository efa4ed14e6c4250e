package login

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gosan/iscsi"
)

const (
	secretA = "initiator-secret-1"
	secretB = "target-secret-22"
)

func TestCHAPResponseMD5(t *testing.T) {
	// RFC 1994 §4.1: MD5(Identifier || secret || Challenge).
	chal := []byte{1, 2, 3, 4}
	want := md5.Sum(append(append([]byte{7}, "secret"...), chal...))
	assert.Equal(t, want[:], chapResponse(iscsi.CHAPMD5, 7, "secret", chal))
	for a, n := range map[iscsi.CHAPAlgorithm]int{iscsi.CHAPMD5: 16, iscsi.CHAPSHA1: 20, iscsi.CHAPSHA256: 32, iscsi.CHAPSHA3256: 32} {
		assert.Equal(t, n, a.Size())
		assert.Len(t, chapResponse(a, 1, "s", chal), n)
	}
	assert.Equal(t, 0, iscsi.CHAPAlgorithm(9).Size())
	assert.Equal(t, "SHA3-256", iscsi.CHAPSHA3256.String())
}

func TestCHAPChallengeEncodings(t *testing.T) {
	cfg := &iscsi.CHAP{User: "u", Secret: secretA}
	raw := []byte("challenge-bytes!")
	for _, v := range []string{formatHex(raw), "0X" + fmt.Sprintf("%X", raw), "0b" + base64.StdEncoding.EncodeToString(raw)} {
		s := newCHAPState(cfg, nil)
		require.NoError(t, s.handle("CHAP_A", "5"))
		require.NoError(t, s.handle("CHAP_I", "0x0c"))
		require.NoError(t, s.handle("CHAP_C", v), v)
		require.True(t, s.readyToRespond())
		out, err := s.response()
		require.NoError(t, err)
		assert.Equal(t, formatHex(chapResponse(iscsi.CHAPMD5, 12, secretA, raw)), out[1].Value)
	}
	s := newCHAPState(cfg, nil)
	require.ErrorIs(t, s.handle("CHAP_I", "256"), iscsi.ErrLoginProtocol)
	require.ErrorIs(t, s.handle("CHAP_C", "nothex"), iscsi.ErrLoginProtocol)
	require.ErrorIs(t, s.handle("CHAP_C", "0x"), iscsi.ErrLoginProtocol)
	require.ErrorIs(t, s.handle("CHAP_C", formatHex(make([]byte, maxChallengeLen+1))), iscsi.ErrLoginProtocol)
	s = newCHAPState(&iscsi.CHAP{User: "u", Secret: secretA, Algorithms: []iscsi.CHAPAlgorithm{iscsi.CHAPMD5}}, nil)
	require.ErrorIs(t, s.handle("CHAP_A", "7"), iscsi.ErrLoginProtocol, "not offered")
	require.ErrorIs(t, s.handle("CHAP_A", "Reject"), iscsi.ErrAuthentication)
}

func TestCHAPFormattingHidesSecrets(t *testing.T) {
	c := iscsi.CHAP{User: "alice", Secret: secretA, TargetUser: "tgt", TargetSecret: secretB}
	cfg := baseConfig()
	cfg.CHAP = &c
	var outs []string
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		outs = append(outs, fmt.Sprintf(f, c), fmt.Sprintf(f, &c), fmt.Sprintf(f, cfg), fmt.Sprintf(f, &cfg))
	}
	outs = append(outs, c.String(), c.GoString())
	j, err := json.Marshal(cfg)
	require.NoError(t, err)
	outs = append(outs, string(j))
	var buf bytes.Buffer
	for _, h := range []slog.Handler{slog.NewJSONHandler(&buf, nil), slog.NewTextHandler(&buf, nil)} {
		lg := slog.New(h)
		lg.Info("cfg", "config", cfg, "chap", c, "chapptr", &c)
		lg.Info("nested", "any", struct{ C *iscsi.CHAP }{&c})
	}
	outs = append(outs, buf.String())
	for _, o := range outs {
		assert.NotContains(t, o, secretA)
		assert.NotContains(t, o, secretB)
	}
	assert.Contains(t, c.String(), "alice")
	assert.Contains(t, buf.String(), "alice")
}

// TestCHAPLoginLogsNoSecrets captures every log record of a mutual CHAP
// login at debug level and checks no secret and no CHAP_R value appear.
func TestCHAPLoginLogsNoSecrets(t *testing.T) {
	var buf bytes.Buffer
	tt := chapTarget(t, true)
	cfg := chapConfig(true)
	cfg.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	_, err := Login(context.Background(), tt, cfg)
	require.NoError(t, err)
	logs := buf.String()
	require.Contains(t, logs, "CHAP_N", "the exchange was logged")
	require.Contains(t, logs, "<redacted>")
	assert.NotContains(t, logs, cfg.CHAP.Secret)
	assert.NotContains(t, logs, cfg.CHAP.TargetSecret)
	// Every CHAP_R and CHAP_C value on the wire, either direction.
	var values []string
	for i := range tt.reqs {
		for k, v := range tt.sent(i) {
			if k == "CHAP_R" || k == "CHAP_C" {
				values = append(values, v)
			}
		}
	}
	values = append(values, formatHex(tt.challenge))
	// The target's CHAP_R, recomputed from our challenge.
	k2 := tt.sent(2)
	ourChal, err := parseBinary(k2["CHAP_C"])
	require.NoError(t, err)
	id, err := parseNumber(k2["CHAP_I"])
	require.NoError(t, err)
	values = append(values, formatHex(chapResponse(tt.alg, byte(id), secretB, ourChal)))
	require.NotEmpty(t, values)
	for _, v := range values {
		assert.NotContains(t, logs, v)
		assert.NotContains(t, logs, v[2:])
	}
}
