package iscsi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCHAPRedacts(t *testing.T) {
	c := CHAP{User: "alice", Secret: "initiator-secret-1", TargetUser: "tgt", TargetSecret: "target-secret-22"}
	var logs bytes.Buffer
	lg := slog.New(slog.NewJSONHandler(&logs, nil))
	lg.Info("x", "chap", c, "ptr", &c, "nested", struct{ C *CHAP }{&c})
	js, err := json.Marshal(c)
	require.NoError(t, err)
	for _, out := range []string{
		c.String(), c.GoString(), fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s %q", c, c, c, c, c),
		fmt.Sprintf("%v %+v %#v", &c, &c, &c), c.LogValue().String(), logs.String(), string(js),
	} {
		assert.NotContains(t, out, "secret-", out)
		assert.Contains(t, out, "alice", out)
	}
	assert.Contains(t, c.GoString(), "iscsi.CHAP{")
}

func TestCHAPValidate(t *testing.T) {
	ok := CHAP{User: "u", Secret: "long-enough-secret"}
	require.NoError(t, ok.Validate())
	assert.Equal(t, []CHAPAlgorithm{CHAPMD5}, ok.Offered())
	for name, c := range map[string]CHAP{
		"no user":        {Secret: "long-enough-secret"},
		"short":          {User: "u", Secret: "short"},
		"same secrets":   {User: "u", Secret: "same-secret-123", TargetSecret: "same-secret-123"},
		"short target":   {User: "u", Secret: "long-enough-secret", TargetSecret: "short"},
		"unknown alg":    {User: "u", Secret: "long-enough-secret", Algorithms: []CHAPAlgorithm{9}},
		"alg twice":      {User: "u", Secret: "long-enough-secret", Algorithms: []CHAPAlgorithm{CHAPMD5, CHAPMD5}},
		"NUL in user":    {User: "u\x00", Secret: "long-enough-secret"},
		"secret too big": {User: "u", Secret: string(make([]byte, 256)), AllowShortSecrets: true},
	} {
		err := c.Validate()
		require.ErrorIs(t, err, ErrConfig, name)
		assert.NotContains(t, err.Error(), "secret-1", name)
	}
	short := CHAP{User: "u", Secret: "short", AllowShortSecrets: true}
	assert.NoError(t, short.Validate())
	for a, n := range map[CHAPAlgorithm]int{CHAPMD5: 16, CHAPSHA1: 20, CHAPSHA256: 32, CHAPSHA3256: 32, 9: 0} {
		assert.Equal(t, n, a.Size(), a.String())
	}
	assert.Equal(t, "CHAP_A(9)", CHAPAlgorithm(9).String())
}
