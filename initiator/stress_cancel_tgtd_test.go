//go:build linux

package initiator

import (
	"testing"
	"time"

	"github.com/gosan/iscsi/internal/testenv/tgtd"
	"github.com/stretchr/testify/require"
)

func TestStressCancelledWritesTgtd(t *testing.T) {
	fixture(t)
	_, f := tgtd.StartFixture(t)
	before := goroutines()
	states := &stateLog{}
	s, l := recoverySession(t, f, states, WithTMFTimeout(2*time.Second))
	r := stressCancel(t, l, 30, 32, recRegion, 100*time.Millisecond, 60*time.Second)
	t.Logf("tgtd: %d runs, %d writes (%d cancelled, %d failed otherwise), longest call %v, stats %+v",
		r.runs, r.writes, r.cancelled, r.failed, r.longest.Round(time.Millisecond), s.Stats())
	require.Positive(t, r.cancelled, "no write was cancelled: the stress did not stress")
	verifyRegion(t, l, recRegion, backing(t, f))
	require.NoError(t, s.Close())
	checkNoLeak(t, before)
}
