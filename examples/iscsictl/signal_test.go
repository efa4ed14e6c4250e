package main

import (
	"bytes"
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The first signal cancels the command; the second exits at once with
// 128+signal even though the command has not returned (issue 15: a caller
// stuck in the library must not make iscsictl deaf to SIGTERM).
func TestSecondSignalExits(t *testing.T) {
	for _, tc := range []struct {
		sig  os.Signal
		code int
	}{{os.Interrupt, 130}, {syscall.SIGTERM, 143}} {
		sigs := make(chan os.Signal, 2)
		ctx, cancel := context.WithCancel(context.Background())
		exited := make(chan int, 1)
		var stderr bytes.Buffer
		go onSignals(sigs, cancel, &stderr, func(code int) { exited <- code })

		sigs <- tc.sig
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("the first signal did not cancel the command")
		}
		select {
		case code := <-exited:
			t.Fatalf("exited (%d) at the first signal", code)
		case <-time.After(50 * time.Millisecond):
		}
		sigs <- tc.sig
		select {
		case code := <-exited:
			assert.Equal(t, tc.code, code)
		case <-time.After(5 * time.Second):
			t.Fatal("the second signal did not exit")
		}
		require.Contains(t, stderr.String(), "again: exiting without cleaning up")
	}
}
