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

// Aligned copies go through initiator.Queue; one whose last piece ends
// inside a destination block goes the ReadAt/WriteAt way.
func TestCopyEngineChoice(t *testing.T) {
	file := &endpoint{bs: 1}
	lunLike := &endpoint{bs: 512}
	assert.True(t, useQueue(file, lunLike, 4096, 1024))
	assert.False(t, useQueue(file, lunLike, 4096+100, 1024), "a tail inside a block")
	assert.Equal(t, int64(1024), queueStep(file, lunLike, 1024+100), "whole blocks")
	assert.Equal(t, int64(512), queueStep(file, lunLike, 100), "at least one block")
}
