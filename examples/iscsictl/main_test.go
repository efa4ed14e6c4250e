package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ctl runs iscsictl in-process and returns its exit code, stdout and stderr.
func ctl(t *testing.T, env map[string]string, stdin []byte, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, args, bytes.NewReader(stdin), &out, &errb, func(k string) string { return env[k] })
	return code, out.String(), errb.String()
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"4k": 4096, "64K": 65536, "1M": 1 << 20, "1MiB": 1 << 20, "2g": 2 << 30, "512": 512} {
		got, err := parseSize(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "x", "-1", "1q", "99999999999t"} {
		_, err := parseSize(in)
		assert.Error(t, err, in)
	}
}
