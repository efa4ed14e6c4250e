//go:build vmguest

package blockdev

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/internal/testenv/vmtest"
)

// TestGuestSupervisorAdopts: a process attaches LUNs and exits; the
// restarted process runs only a Supervisor, which finds the sessions in
// sysfs and recovers them when tgtd drops their connections mid-write.
// A CHAP session is adopted only with credentials from Options.Credentials.
func TestGuestSupervisorAdopts(t *testing.T) {
	e := loadEnv(t)
	fix := e.Fixture
	ctx := guestCtx(t, 4*time.Minute)
	const iname = "iqn.2026-11.org.gosan.test:guest"
	oneWay := &iscsi.CHAP{User: fix.CHAP.User, Secret: fix.CHAP.Secret}
	mutual := &iscsi.CHAP{User: fix.MutualCHAP.User, Secret: fix.MutualCHAP.Secret,
		TargetUser: fix.MutualCHAP.TargetUser, TargetSecret: fix.MutualCHAP.TargetSecret}

	k1, err := Open(Options{InitiatorName: iname})
	require.NoError(t, err)
	plain, err := k1.Attach(ctx, Spec{Portal: fix.Portal, TargetName: fix.Plain.IQN, LUN: 1})
	require.NoError(t, err)
	withCHAP, err := k1.Attach(ctx, Spec{Portal: fix.Portal, TargetName: fix.CHAP.IQN, LUN: 1, CHAP: oneWay})
	require.NoError(t, err)
	noCreds, err := k1.Attach(ctx, Spec{Portal: fix.Portal, TargetName: fix.MutualCHAP.IQN, LUN: 1, CHAP: mutual})
	require.NoError(t, err)
	require.NoError(t, k1.Close(), "the first process exits; its sessions stay")

	asked := map[string]int{}
	k2, err := Open(Options{InitiatorName: iname, Credentials: func(target, portal string) *iscsi.CHAP {
		asked[target]++ // called from Supervise's goroutine only, before the test reads it
		assert.Equal(t, fix.Portal, portal)
		if target == fix.CHAP.IQN {
			return oneWay
		}
		return nil
	}})
	require.NoError(t, err)
	defer k2.Close()
	sup, stop := context.WithCancel(ctx)
	supDone := make(chan error, 1)
	go func() { supDone <- k2.Supervise(sup) }()
	knows := func(sid uint32) bool {
		k2.mu.Lock()
		defer k2.mu.Unlock()
		_, ok := k2.sessions[sid]
		return ok
	}
	require.Eventually(t, func() bool { return knows(plain.SessionID) && knows(withCHAP.SessionID) },
		30*time.Second, 20*time.Millisecond, "the Supervisor adopts the sessions it has what it needs for")
	assert.False(t, knows(noCreds.SessionID), "a CHAP session without credentials is left alone")

	for _, tc := range []struct {
		name string
		d    *Disk
		tid  int
		off  int64
		seed uint64
	}{
		{"plain", plain, fix.Plain.TID, adoptPlainOff, e.Seed + 3},
		{"chap", withCHAP, fix.CHAP.TID, guestDataOff, e.Seed + 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := vmtest.SeedData(tc.seed, adoptLen)
			t0 := time.Now()
			writeAcrossDrop(t, e, tc.d.Path, tc.off, data, tc.tid)
			t.Logf("%d MiB written across a dropped connection of an adopted session in %v", adoptLen>>20, time.Since(t0))
			si, err := Sysfs{}.Session(tc.d.SessionID)
			require.NoError(t, err)
			assert.Equal(t, "LOGGED_IN", si.State)
		})
	}
	stop()
	assert.ErrorIs(t, <-supDone, context.Canceled)
	assert.Equal(t, 1, asked[fix.CHAP.IQN])
	assert.Equal(t, 1, asked[fix.MutualCHAP.IQN])

	for _, d := range []*Disk{plain, withCHAP, noCreds} {
		require.NoError(t, k2.Detach(ctx, d))
	}
	requireNoSessions(t)
}

// writeAcrossDrop writes data at off on dev with O_DIRECT in 1 MiB chunks,
// has the host drop target tid's connections after the first chunk, syncs,
// and reads everything back.
func writeAcrossDrop(t *testing.T, e guestEnv, dev string, off int64, data []byte, tid int) {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_RDWR|unix.O_DIRECT, 0)
	require.NoError(t, err)
	defer f.Close()
	buf := alignedBuf(t, guestDataLen)
	for i := 0; i*guestDataLen < len(data); i++ {
		copy(buf, data[i*guestDataLen:])
		_, err := f.WriteAt(buf, off+int64(i*guestDataLen))
		require.NoError(t, err, "I/O must survive the dropped connection (chunk %d)", i)
		if i == 0 {
			poke(t, e.Poke, tid)
		}
	}
	require.NoError(t, f.Sync())
	for i := 0; i*guestDataLen < len(data); i++ {
		_, err := f.ReadAt(buf, off+int64(i*guestDataLen))
		require.NoError(t, err)
		require.True(t, string(buf) == string(data[i*guestDataLen:(i+1)*guestDataLen]), "chunk %d", i)
	}
}
