//go:build linux

package lio

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSumReply(t *testing.T) {
	zero := sha256.Sum256(nil)
	good := fmt.Sprintf("ok %x\n", zero)
	for _, tc := range []struct {
		name, in string
		want     string // error substring; "" = success
	}{
		{"ok", good, ""},
		{"ok-crlf", strings.TrimSuffix(good, "\n") + "\r\n", ""},
		{"short", "ok abcd\n", "malformed checksum"},
		{"not-hex", "ok " + strings.Repeat("zz", 32) + "\n", "malformed checksum"},
		{"err", "err bad path\n", "bad path"},
		{"garbage", "hello\n", "unexpected reply"},
		{"empty", "", "unexpected reply"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sum, err := parseSumReply(tc.in)
			if tc.want == "" {
				require.NoError(t, err)
				assert.Equal(t, zero, sum)
				return
			}
			require.ErrorIs(t, err, ErrControl)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func FuzzParseSumReply(f *testing.F) {
	f.Add(fmt.Sprintf("ok %x\n", sha256.Sum256(nil)))
	f.Add("err x\n")
	f.Add("ok \n")
	f.Fuzz(func(t *testing.T, s string) {
		_, err := parseSumReply(s)
		if err != nil {
			require.ErrorIs(t, err, ErrControl)
			require.Less(t, len(err.Error()), 400, "error text is bounded")
		}
	})
}

func TestFixtureDescription(t *testing.T) {
	f := newFixture()
	paths := map[string]bool{}
	for _, tg := range f.Targets() {
		require.True(t, strings.HasPrefix(tg.IQN, IQNPrefix))
		require.NotEmpty(t, tg.LUNs)
		for _, l := range tg.LUNs {
			require.False(t, paths[l.Path], "backing file %s used twice", l.Path)
			paths[l.Path] = true
			require.Zero(t, l.Size%int64(l.BlockSize))
		}
	}
	s := guestScript(f)
	for _, want := range []string{
		"acl " + f.CHAP.IQN + " " + f.Initiator + " 1 0",
		"acl " + f.ACL.IQN + " " + f.AllowedInitiator + " 0 0",
		"open " + f.Plain.IQN,
		"backstore disk2 16777216 4096",
		"userid_mutual 'gosan-mutual-target'",
		ReadyLine,
	} {
		assert.Contains(t, s, want)
	}
	// Secrets stay out of the formatted fixture.
	for _, out := range []string{f.String(), fmt.Sprintf("%v %+v %#v", f.MutualCHAP, f.MutualCHAP, f.MutualCHAP)} {
		assert.NotContains(t, out, f.MutualCHAP.Secret)
		assert.NotContains(t, out, f.MutualCHAP.TargetSecret)
	}
	assert.Equal(t, `'it'\''s'`, shQuote("it's"))
}

// TestGuest boots the LIO guest: the portal accepts connections, a fresh
// LUN reads as zeros through the checksum service, and bad requests are
// refused.
func TestGuest(t *testing.T) {
	start := time.Now()
	g, f := StartFixture(t)
	t.Logf("LIO on kernel %s ready after %v at %s", f.Kernel, time.Since(start).Round(time.Millisecond), f.Portal)
	require.NotEmpty(t, f.Kernel)
	require.Contains(t, g.Output(), "lio: kernel "+f.Kernel)
	c, err := net.DialTimeout("tcp", f.Portal, 5*time.Second)
	require.NoError(t, err)
	c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := f.MultiLUN.LUNs[1]
	sum, err := f.Checksum(ctx, l, 4096, 1<<20)
	require.NoError(t, err)
	assert.Equal(t, sha256.Sum256(make([]byte, 1<<20)), sum)
	sum, err = f.Checksum(ctx, l, l.Size-512, 512)
	require.NoError(t, err)
	assert.Equal(t, sha256.Sum256(make([]byte, 512)), sum)

	_, err = f.Checksum(ctx, l, l.Size, 512)
	require.ErrorIs(t, err, ErrControl, "beyond the LUN")
	bad := l
	bad.Path = "/etc/passwd"
	_, err = f.Checksum(ctx, bad, 0, 1)
	require.ErrorIs(t, err, ErrControl)
	assert.Contains(t, err.Error(), "bad path")
	bad.Path = "/tmp/lio/none.img"
	_, err = f.Checksum(ctx, bad, 0, 1)
	require.ErrorIs(t, err, ErrControl)
	assert.Contains(t, err.Error(), "no such file")

	require.NoError(t, f.Close())
	select {
	case <-g.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("qemu still running after Close")
	}
}
