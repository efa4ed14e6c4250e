package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gosan/iscsi/blockdev"
)

// TestReady: Probe's check names what to fix on the node.
func TestReady(t *testing.T) {
	sys := t.TempDir()
	err := ready(fmt.Errorf("open: %w", blockdev.ErrOtherDaemon), sys)
	require.ErrorIs(t, err, blockdev.ErrOtherDaemon)
	assert.Contains(t, err.Error(), "systemctl disable --now iscsid.socket iscsid")

	err = ready(nil, sys)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "iscsi_tcp is not loaded")

	require.NoError(t, os.MkdirAll(filepath.Join(sys, "class", "iscsi_transport", "tcp"), 0o755))
	assert.NoError(t, ready(nil, sys))
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"--endpoint=unix:///x/csi.sock", "-node-id", "n1", "--metrics-address=:9808"})
	require.NoError(t, err)
	assert.Equal(t, "unix:///x/csi.sock", o.endpoint)
	assert.Equal(t, "n1", o.nodeID)
	assert.Equal(t, ":9808", o.metricsAddr)
	assert.Equal(t, defaultStateDir, o.stateDir)
	_, err = parseFlags([]string{"extra"})
	assert.Error(t, err)
}
