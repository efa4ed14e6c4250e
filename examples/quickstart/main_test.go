package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDemoEmbedded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	require.NoError(t, demoEmbedded(ctx, &out, 3<<20))
	for _, want := range []string{"discovery  1 target(s)", "login      mutual CHAP", "written    3.0 MiB",
		"verified   OK", "memory holds the same 3.0 MiB"} {
		assert.Contains(t, out.String(), want)
	}
	assert.NotContains(t, out.String(), demoSecret)
	assert.NotContains(t, out.String(), demoTargetSecret)
}
