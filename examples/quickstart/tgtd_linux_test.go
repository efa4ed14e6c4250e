package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gosan/iscsi/internal/testenv/tgtd"
)

// TestDemoURL runs the demo against a real tgtd LUN and checks that the
// region it wrote was restored byte for byte in the backing file.
func TestDemoURL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, f := tgtd.StartFixture(t)
	l := f.CHAP.LUNs[0]
	before := bytes.Repeat([]byte("original"), 1<<17) // 1 MiB of known bytes
	fh, err := os.OpenFile(l.Path, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = fh.WriteAt(before, 0)
	require.NoError(t, err)
	require.NoError(t, fh.Close())

	url := fmt.Sprintf("iscsi://%s%%%s@%s/%s/%d", f.CHAP.User, f.CHAP.Secret, f.Portal, f.CHAP.IQN, l.LUN)
	var out bytes.Buffer
	require.NoError(t, demoURL(ctx, &out, url, len(before)))
	assert.Contains(t, out.String(), "verified   OK")
	assert.Contains(t, out.String(), "restored   the original 1.0 MiB")
	assert.NotContains(t, out.String(), f.CHAP.Secret)
	after, err := os.ReadFile(l.Path)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(before, after[:len(before)]), "the LUN's original bytes are back")
}
