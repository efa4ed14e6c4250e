//go:build vmguest

package blockdev

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/internal/testenv/tgtd"
	"github.com/gosan/iscsi/internal/testenv/vmtest"
)

// Guest side: runs inside the qemu guest (vmtest), tgtd on the host.

func loadEnv(t *testing.T) guestEnv {
	t.Helper()
	vmtest.RequireGuest(t)
	var e guestEnv
	require.NoError(t, json.Unmarshal([]byte(os.Getenv("BD_ENV")), &e), "BD_ENV")
	require.NotNil(t, e.Fixture)
	return e
}

func openKernel(t *testing.T) *Kernel {
	t.Helper()
	k, err := Open(Options{InitiatorName: "iqn.2026-11.org.gosan.test:guest"})
	require.NoError(t, err)
	t.Cleanup(func() { k.Close() })
	return k
}

func guestCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// alignedBuf returns a page-aligned buffer for O_DIRECT.
func alignedBuf(t *testing.T, n int) []byte {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Munmap(b) })
	return b
}

// directIO writes data at off with O_DIRECT and reads it back the same way.
func directIO(t *testing.T, dev string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_RDWR|unix.O_DIRECT, 0)
	require.NoError(t, err)
	defer f.Close()
	buf := alignedBuf(t, len(data))
	copy(buf, data)
	_, err = f.WriteAt(buf, off)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	clear(buf)
	_, err = f.ReadAt(buf, off)
	require.NoError(t, err)
	require.True(t, string(buf) == string(data), "read back differs from what was written")
}

func sessionsFor(t *testing.T, iqn string) []SessionInfo {
	all, err := Sysfs{}.Sessions()
	require.NoError(t, err)
	var out []SessionInfo
	for _, s := range all {
		if s.TargetName == iqn {
			out = append(out, s)
		}
	}
	return out
}

func requireNoSessions(t *testing.T) {
	t.Helper()
	ents, _ := os.ReadDir("/sys/class/iscsi_session")
	assert.Empty(t, ents, "sessions left in /sys/class/iscsi_session")
	ents, _ = os.ReadDir("/sys/class/iscsi_host")
	assert.Empty(t, ents, "iSCSI SCSI hosts left in /sys/class/iscsi_host")
}

func TestGuestAttach(t *testing.T) {
	e := loadEnv(t)
	fix := e.Fixture
	k := openKernel(t)
	ctx := guestCtx(t, 3*time.Minute)

	t0 := time.Now()
	d, err := k.Attach(ctx, Spec{Portal: fix.Portal, TargetName: fix.Plain.IQN, LUN: 1})
	require.NoError(t, err)
	t.Logf("attach plain: %s %s session %d host %d; login %v, device %v, total %v",
		d.Path, d.SCSIAddress, d.SessionID, d.HostNo, d.LoginTime, d.DeviceTime, time.Since(t0))
	assert.True(t, d.NewSession)
	assert.Equal(t, int64(tgtd.PlainSize), d.Size)
	assert.Equal(t, fmt.Sprintf("%d:0:0:1", d.HostNo), d.SCSIAddress)
	assert.True(t, strings.HasPrefix(d.Path, "/dev/sd"), d.Path)
	si, err := Sysfs{}.Session(d.SessionID)
	require.NoError(t, err)
	assert.Equal(t, "LOGGED_IN", si.State)
	assert.Equal(t, DefaultIface, si.Iface)
	assert.Equal(t, "iqn.2026-11.org.gosan.test:guest", si.InitiatorName)
	directIO(t, d.Path, guestDataOff, vmtest.SeedData(e.Seed, guestDataLen))

	// Attaching the same LUN again returns the same device, no new login.
	d2, err := k.Attach(ctx, Spec{Portal: fix.Portal, TargetName: fix.Plain.IQN, LUN: 1})
	require.NoError(t, err)
	assert.False(t, d2.NewSession)
	assert.Equal(t, d.Path, d2.Path)

	// Two LUNs of one target: one session.
	m1, err := k.Attach(ctx, Spec{Portal: fix.Portal, TargetName: fix.MultiLUN.IQN, LUN: 1})
	require.NoError(t, err)
	assert.True(t, m1.NewSession)
	t0 = time.Now()
	m2, err := k.Attach(ctx, Spec{Portal: fix.Portal, TargetName: fix.MultiLUN.IQN, LUN: 2})
	require.NoError(t, err)
	t.Logf("attach second LUN on the existing session: %s in %v", m2.Path, time.Since(t0))
	assert.False(t, m2.NewSession, "second LUN must reuse the session")
	assert.Equal(t, m1.SessionID, m2.SessionID)
	assert.NotEqual(t, m1.Path, m2.Path)
	assert.Len(t, sessionsFor(t, fix.MultiLUN.IQN), 1)
	assert.Equal(t, fix.MultiLUN.LUNs[1].Size, m2.Size)
	directIO(t, m2.Path, guestDataOff, vmtest.SeedData(e.Seed+1, guestDataLen))

	// A second Kernel (a new process) finds and reuses the session.
	k.Close()
	k2 := openKernel(t)
	m2b, err := k2.Attach(ctx, Spec{Portal: fix.Portal, TargetName: fix.MultiLUN.IQN, LUN: 2})
	require.NoError(t, err)
	assert.False(t, m2b.NewSession)
	assert.Equal(t, m2.Path, m2b.Path)
	// The kernel holds its own reference to the socket: I/O still works
	// after the process side closed its copy.
	directIO(t, m2.Path, guestDataOff, vmtest.SeedData(e.Seed+1, guestDataLen))

	// Detach: the first LUN leaves the session, the second ends it.
	require.NoError(t, k2.Detach(ctx, m1))
	assert.Len(t, sessionsFor(t, fix.MultiLUN.IQN), 1)
	t0 = time.Now()
	require.NoError(t, k2.Detach(ctx, m2))
	t.Logf("detach last LUN + logout: %v", time.Since(t0))
	assert.Empty(t, sessionsFor(t, fix.MultiLUN.IQN))
	assert.NoDirExists(t, fmt.Sprintf("/sys/class/scsi_host/host%d", m2.HostNo))

	t0 = time.Now()
	require.NoError(t, k2.Detach(ctx, d))
	t.Logf("detach plain (delete + logout): %v", time.Since(t0))
	require.NoError(t, k2.Detach(ctx, d), "detaching what is gone succeeds")
	require.NoError(t, k2.LogoutSession(ctx, d.SessionID))
	assert.NoFileExists(t, d.Path)
	requireNoSessions(t)
}

func TestGuestCHAP(t *testing.T) {
	e := loadEnv(t)
	fix := e.Fixture
	k := openKernel(t)
	ctx := guestCtx(t, 3*time.Minute)
	for _, tc := range []struct {
		name string
		tgt  tgtd.FixtureTarget
		chap *iscsi.CHAP
	}{
		{"one-way", fix.CHAP, &iscsi.CHAP{User: fix.CHAP.User, Secret: fix.CHAP.Secret}},
		{"mutual", fix.MutualCHAP, &iscsi.CHAP{User: fix.MutualCHAP.User, Secret: fix.MutualCHAP.Secret,
			TargetUser: fix.MutualCHAP.TargetUser, TargetSecret: fix.MutualCHAP.TargetSecret}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := k.Attach(ctx, Spec{Portal: fix.Portal, TargetName: tc.tgt.IQN, LUN: 1, CHAP: tc.chap})
			require.NoError(t, err)
			assert.Equal(t, tc.tgt.LUNs[0].Size, d.Size)
			// Secrets never reach sysfs.
			for _, f := range []string{"password", "password_in"} {
				b, _ := os.ReadFile(filepath.Join("/sys/class/iscsi_session", fmt.Sprintf("session%d", d.SessionID), f))
				assert.NotContains(t, string(b), tc.chap.Secret)
			}
			directIO(t, d.Path, 0, vmtest.SeedData(e.Seed+7, 64<<10))
			require.NoError(t, k.Detach(ctx, d))
		})
	}
	requireNoSessions(t)
}

func TestGuestFailures(t *testing.T) {
	e := loadEnv(t)
	fix := e.Fixture
	k := openKernel(t)
	ctx := guestCtx(t, 3*time.Minute)
	host, _, _ := net.SplitHostPort(fix.Portal)
	for _, tc := range []struct {
		name string
		spec Spec
		want error
	}{
		{"wrong secret", Spec{Portal: fix.Portal, TargetName: fix.CHAP.IQN, LUN: 1,
			CHAP: &iscsi.CHAP{User: fix.CHAP.User, Secret: "wrong-secret-0123"}}, iscsi.ErrAuthentication},
		{"mutual target fails", Spec{Portal: fix.Portal, TargetName: fix.MutualCHAP.IQN, LUN: 1,
			CHAP: &iscsi.CHAP{User: fix.MutualCHAP.User, Secret: fix.MutualCHAP.Secret, TargetSecret: "not-the-target-secret"}}, iscsi.ErrMutualAuth},
		{"unknown target", Spec{Portal: fix.Portal, TargetName: tgtd.IQNPrefix + "nosuch", LUN: 1}, iscsi.ErrTargetNotFound},
		{"unreachable portal", Spec{Portal: net.JoinHostPort(host, "1"), TargetName: fix.Plain.IQN, LUN: 1}, ErrUnreachable},
		{"no such LUN", Spec{Portal: fix.Portal, TargetName: fix.Plain.IQN, LUN: 9}, ErrNoDevice},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k.tmo.Device = 5 * time.Second
			_, err := k.Attach(ctx, tc.spec)
			require.ErrorIs(t, err, tc.want)
			t.Logf("%s: %v", tc.name, err)
			if tc.spec.CHAP != nil {
				assert.NotContains(t, err.Error(), tc.spec.CHAP.Secret)
			}
			requireNoSessions(t)
		})
	}
}

// poke asks the host helper to drop every connection of target tid.
func poke(t *testing.T, addr string, tid int) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	fmt.Fprintf(c, "drop %d\n", tid)
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "ok "), "host helper: %q", line)
	require.NotEqual(t, "ok 0\n", line, "no connection dropped")
}

func TestGuestRecovery(t *testing.T) {
	e := loadEnv(t)
	fix := e.Fixture
	k := openKernel(t)
	ctx := guestCtx(t, 4*time.Minute)
	sup, stop := context.WithCancel(ctx)
	supDone := make(chan error, 1)
	go func() { supDone <- k.Supervise(sup) }()

	d, err := k.Attach(ctx, Spec{Portal: fix.Portal, TargetName: fix.Plain.IQN, LUN: 1})
	require.NoError(t, err)
	f, err := os.OpenFile(d.Path, os.O_RDWR|unix.O_DIRECT, 0)
	require.NoError(t, err)
	defer f.Close()
	data := vmtest.SeedData(e.Seed+2, 8*guestDataLen)
	buf := alignedBuf(t, guestDataLen)

	var wg sync.WaitGroup
	wg.Add(1)
	var ioErr error
	t0 := time.Now()
	go func() {
		defer wg.Done()
		for i := 0; i < 8; i++ {
			copy(buf, data[i*guestDataLen:])
			if _, err := f.WriteAt(buf, guestDataOff+int64(i*guestDataLen)); err != nil {
				ioErr = err
				return
			}
			if i == 2 {
				poke(t, e.Poke, fix.Plain.TID) // connection dropped mid-stream
			}
		}
		ioErr = f.Sync()
	}()
	wg.Wait()
	require.NoError(t, ioErr, "I/O must survive the dropped connection")
	t.Logf("8 MiB written across a dropped connection in %v", time.Since(t0))
	si, err := Sysfs{}.Session(d.SessionID)
	require.NoError(t, err)
	assert.Equal(t, "LOGGED_IN", si.State)
	for i := 0; i < 8; i++ {
		_, err := f.ReadAt(buf, guestDataOff+int64(i*guestDataLen))
		require.NoError(t, err)
		require.True(t, string(buf) == string(data[i*guestDataLen:(i+1)*guestDataLen]), "chunk %d", i)
	}
	stop()
	assert.ErrorIs(t, <-supDone, context.Canceled)

	// Without a Supervisor the session goes FAILED; the next Attach on it
	// (as a restarted process would do) reconnects it.
	poke(t, e.Poke, fix.Plain.TID)
	require.Eventually(t, func() bool {
		si, err := Sysfs{}.Session(d.SessionID)
		return err == nil && si.State == "FAILED"
	}, time.Minute, 50*time.Millisecond, "session goes FAILED")
	t0 = time.Now()
	d2, err := k.Attach(ctx, Spec{Portal: fix.Portal, TargetName: fix.Plain.IQN, LUN: 1})
	require.NoError(t, err)
	t.Logf("FAILED session reconnected by Attach in %v", time.Since(t0))
	assert.False(t, d2.NewSession)
	assert.Equal(t, d.Path, d2.Path, "the block device stayed")
	si, err = Sysfs{}.Session(d.SessionID)
	require.NoError(t, err)
	assert.Equal(t, "LOGGED_IN", si.State)
	_, err = f.ReadAt(buf, guestDataOff)
	require.NoError(t, err)
	require.True(t, string(buf) == string(data[:guestDataLen]))

	require.NoError(t, k.Detach(ctx, d))
	requireNoSessions(t)
}
