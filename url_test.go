package iscsi

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		in   string
		want URL
	}{
		{"iscsi://127.0.0.1/iqn.2026-11.org.gosan:a/1",
			URL{Host: "127.0.0.1", Port: 3260, TargetName: "iqn.2026-11.org.gosan:a", LUN: 1, HasLUN: true}},
		{"iscsi://10.0.0.1:3261",
			URL{Host: "10.0.0.1", Port: 3261}},
		{"iscsi://host:3261/",
			URL{Host: "host", Port: 3261}},
		{"iscsi://[fe80::1]:3262/iqn.x:y/300",
			URL{Host: "fe80::1", Port: 3262, TargetName: "iqn.x:y", LUN: 300, HasLUN: true}},
		{"iscsi://[::1]/iqn.x:y",
			URL{Host: "::1", Port: 3260, TargetName: "iqn.x:y"}},
		{"iscsi://alice%s3cr3t@pass@h/iqn.x:y/0?target_user=tgt&target_password=tp&header_digest=crc32c&data_digest=CRC32C",
			URL{Host: "h", Port: 3260, TargetName: "iqn.x:y", HasLUN: true, CHAP: CHAP{User: "alice", Secret: "s3cr3t@pass", TargetUser: "tgt", TargetSecret: "tp"}, HeaderDigest: true, DataDigest: true}},
		{"ISCSI://bob@h:1/iqn.x:y/2",
			URL{Host: "h", Port: 1, TargetName: "iqn.x:y", LUN: 2, HasLUN: true, CHAP: CHAP{User: "bob"}}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseURL(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.want, *got)
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{
		"http://h/iqn/1", "iscsi://", "iscsi://h:0/x/1", "iscsi://h:99999/x", "iscsi://fe80::1/x",
		"iscsi://[fe80::1/x", "iscsi://h/x/notanumber", "iscsi://h/x/1?bogus=1",
		"iscsi://h/x/1?header_digest=md5", "iscsi://@h/x", "iscsi://[::1]x/t",
		"iscsi://h,1/t", "iscsi://h:/t", "iscsi://h%x/t", "iscsi://[10.0.0.1]/t", "iscsi://h:+1/t",
		"iscsi://h:3260:1/t", "iscsi://-h/t",
	} {
		t.Run(in, func(t *testing.T) {
			_, err := ParseURL(in)
			var e *URLError
			require.ErrorAs(t, err, &e)
		})
	}
}

func TestHostErrorHidesInput(t *testing.T) {
	// A secret holding '/' ends the user part early; what is left before
	// the '/' is taken as host:port and must not be repeated in the error.
	_, err := ParseURL("iscsi://alice%pass:wordpart/more@h/iqn.x:y/1")
	var e *URLError
	require.ErrorAs(t, err, &e)
	assert.NotContains(t, err.Error(), "wordpart")
	assert.NotContains(t, err.Error(), "pass")
}

func TestSecretsHidden(t *testing.T) {
	u, err := ParseURL("iscsi://alice%topsecretvalue@h/iqn.x:y/1?target_password=othersecretvalue")
	require.NoError(t, err)
	for _, s := range []string{u.String(), fmt.Sprintf("%v", *u), fmt.Sprintf("%+v", u), fmt.Sprintf("%#v", *u)} {
		assert.NotContains(t, s, "topsecretvalue")
		assert.NotContains(t, s, "othersecretvalue")
	}
	assert.Equal(t, "iscsi://alice%xxxxx@h:3260/iqn.x:y/1", u.String())
}

func TestApplyEnv(t *testing.T) {
	env := map[string]string{
		"LIBISCSI_CHAP_USERNAME": "envuser", "LIBISCSI_CHAP_PASSWORD": "envpass",
		"LIBISCSI_CHAP_TARGET_USERNAME": "tu", "LIBISCSI_CHAP_TARGET_PASSWORD": "tp",
	}
	u, err := ParseURL("iscsi://urluser@h/iqn.x:y/1")
	require.NoError(t, err)
	u.ApplyEnv(func(k string) string { return env[k] })
	assert.Equal(t, "urluser", u.CHAP.User, "URL wins over environment")
	assert.Equal(t, "envpass", u.CHAP.Secret)
	assert.Equal(t, "tu", u.CHAP.TargetUser)
	assert.Equal(t, "tp", u.CHAP.TargetSecret)
}

func FuzzParseURL(f *testing.F) {
	f.Add("iscsi://a%b@[::1]:3260/iqn.x:y/1?header_digest=crc32c")
	f.Add("iscsi://h/t/1")
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURL(s)
		if err != nil {
			return
		}
		// The printed form must not depend on the secrets' values: a
		// substring test would misfire when a secret such as "200000"
		// happens to occur in an escaped user name ("%20000001").
		other := *u
		if other.CHAP.Secret != "" {
			other.CHAP.Secret = "a-different-secret"
		}
		if other.CHAP.TargetSecret != "" {
			other.CHAP.TargetSecret = "a-different-secret"
		}
		if got, want := u.String(), other.String(); got != want {
			t.Fatalf("String depends on a secret: %q vs %q", got, want)
		}
		if got, want := fmt.Sprintf("%#v", *u), fmt.Sprintf("%#v", other); got != want {
			t.Fatalf("GoString depends on a secret: %q vs %q", got, want)
		}
	})
}
