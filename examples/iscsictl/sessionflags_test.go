package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gosan/iscsi/initiator"
	"github.com/gosan/iscsi/initiator/iscsitest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The usage text states the library's defaults for the session flags.
func TestSessionFlagDefaultsInUsage(t *testing.T) {
	for flag, d := range map[string]time.Duration{
		"--timeout": initiator.DefaultCommandTimeout, "--tmf-timeout": initiator.DefaultTMFTimeout,
		"--login-timeout": initiator.DefaultLoginTimeout, "--replacement-timeout": initiator.DefaultReplacementTimeout,
		"--nop-interval": initiator.DefaultNOPInterval, "--nop-timeout": initiator.DefaultNOPTimeout,
		"--send-timeout": initiator.DefaultSendTimeout,
	} {
		assert.Contains(t, usage, flag+" "+d.String(), "usage text default of %s", flag)
	}
}

// iscsictl read against a target that never answers the READ: with
// --timeout it fails with the typed timeout in bounded time instead of
// waiting forever (issue 12: it was still waiting after 150 s).
func TestReadTimeoutFlag(t *testing.T) {
	const iqn = "iqn.2026-12.org.gosan.test:ctl-timeout"
	srv := iscsitest.NewTestServer(t, iscsitest.Config{Targets: []iscsitest.Target{{
		Name: iqn, LUNs: []iscsitest.LUN{{Number: 1, Blocks: 64}},
	}}, NoUnitAttention: true})
	srv.Faults().SwallowCommands(-1, iscsitest.MatchOpcode(0x28))
	start := time.Now()
	code, _, errs := ctl(t, nil, nil, "read", fmt.Sprintf("iscsi://%s/%s/1", srv.Addr(), iqn),
		"--length", "512", "--timeout", "300ms", "--tmf-timeout", "500ms", "-o", t.TempDir()+"/out")
	took := time.Since(start)
	require.Equal(t, 1, code, errs)
	assert.Contains(t, errs, "command timed out after 300ms, 2 times")
	assert.Contains(t, errs, "abort task")
	assert.Equal(t, 1, strings.Count(errs, "\n"), "one line: %q", errs)
	assert.Less(t, took, 10*time.Second)
}
