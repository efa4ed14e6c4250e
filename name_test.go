package iscsi

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/gosan/iscsi/internal/portal"
)

// internal/portal (which this package imports, so it cannot import this
// one) parses portals with the same default port.
func TestDefaultPortIsPortals(t *testing.T) {
	assert.Equal(t, portal.DefaultPort, DefaultPort)
}

func TestDefaultInitiatorName(t *testing.T) {
	assert.Equal(t, "iqn.x:y", parseInitiatorNameFile(bytes.NewBufferString("# c\nInitiatorName=iqn.x:y\n")))
	assert.Equal(t, "iqn.x:y", parseInitiatorNameFile(bytes.NewBufferString("InitiatorName=\n  InitiatorName= iqn.x:y \n")))
	assert.Equal(t, "", parseInitiatorNameFile(bytes.NewBufferString("nothing\n")))
	a, b := generatedName("id", "host"), generatedName("id", "host")
	assert.Equal(t, a, b)
	assert.NotEqual(t, a, generatedName("id2", "host"))
	assert.NotEqual(t, a, generatedName("id", "host2"))
	assert.Regexp(t, `^iqn\.2026-11\.org\.gosan:[0-9a-f]{12}$`, a)
	assert.Equal(t, DefaultInitiatorName(), DefaultInitiatorName(), "stable")
}
