package login

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/internal/portal"
)

// A target's TargetAddress ends up in a dial string and in logs: a host that
// is neither an IP address nor a DNS-ish name is a protocol error, and the
// error repeats a bounded prefix of the value only.
func TestParseTargetAddressRefusesHostileValues(t *testing.T) {
	for _, v := range []string{
		"h/../x", "a b", "h\x00", "[10.0.0.1]:3260", "h:+3260", "h:3260,", "[::1]]:1",
		"fe80::1:99999", strings.Repeat("x", 4096) + ":3260,1",
	} {
		_, _, _, _, err := ParseTargetAddress(v)
		require.ErrorIs(t, err, iscsi.ErrLoginProtocol, "%q", v)
		var pe *portal.Error
		require.True(t, errors.As(err, &pe), "%q: want a *portal.Error inside, got %v", v, err)
		assert.LessOrEqual(t, len(err.Error()), 400, "%q", v)
	}
}
