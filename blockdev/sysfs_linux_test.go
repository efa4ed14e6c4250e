package blockdev

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeSysfs builds the layout the kernel has for iSCSI sessions:
//
//	devices/platform/host<H>/session<S>/iscsi_session/session<S>/{targetname,...}
//	devices/platform/host<H>/session<S>/connection<S>:0/iscsi_connection/connection<S>:0/{persistent_address,...}
//	devices/platform/host<H>/session<S>/target<H>:0:0/<H>:0:0:<L>/block/<sd>
//	class/iscsi_session/session<S> -> the iscsi_session dir (its "device" -> session<S>)
//	class/iscsi_connection/connection<S>:0 -> the iscsi_connection dir
//	class/scsi_host/host<H>/scan, block/<sd>/{size,device/delete}
type fakeSysfs struct {
	t    *testing.T
	root string
	dev  string
}

func newFakeSysfs(t *testing.T) *fakeSysfs {
	d := t.TempDir()
	f := &fakeSysfs{t: t, root: filepath.Join(d, "sys"), dev: filepath.Join(d, "dev")}
	for _, p := range []string{"class/iscsi_session", "class/iscsi_connection", "class/scsi_host", "block", "devices/platform"} {
		require.NoError(t, os.MkdirAll(filepath.Join(f.root, p), 0o755))
	}
	require.NoError(t, os.MkdirAll(f.dev, 0o755))
	return f
}

func (f *fakeSysfs) sys() Sysfs { return Sysfs{Root: f.root, Dev: f.dev} }

func (f *fakeSysfs) write(p, v string) {
	f.t.Helper()
	require.NoError(f.t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(f.t, os.WriteFile(p, []byte(v+"\n"), 0o644))
}

type fakeSession struct {
	sid, host          uint32
	target, addr, port string
	iface, state       string
	username           string // CHAP user name; "" shows as "(null)"
	connAddrOnly       bool   // only address/port, no persistent_*
}

func (f *fakeSysfs) sessionDir(host, sid uint32) string {
	return filepath.Join(f.root, "devices/platform", fmt.Sprintf("host%d", host), fmt.Sprintf("session%d", sid))
}

func (f *fakeSysfs) addSession(s fakeSession) {
	f.t.Helper()
	sd := f.sessionDir(s.host, s.sid)
	is := filepath.Join(sd, "iscsi_session", fmt.Sprintf("session%d", s.sid))
	f.write(filepath.Join(is, "targetname"), s.target)
	f.write(filepath.Join(is, "ifacename"), s.iface)
	f.write(filepath.Join(is, "initiatorname"), "iqn.test:init")
	f.write(filepath.Join(is, "isid"), "00023d000001")
	f.write(filepath.Join(is, "state"), s.state)
	if s.username != "" {
		f.write(filepath.Join(is, "username"), s.username)
	} else {
		f.write(filepath.Join(is, "username"), "(null)") // what the kernel shows without CHAP
	}
	require.NoError(f.t, os.Symlink(fmt.Sprintf("../../../session%d", s.sid), filepath.Join(is, "device")))
	require.NoError(f.t, os.Symlink(is, filepath.Join(f.root, "class/iscsi_session", fmt.Sprintf("session%d", s.sid))))
	cn := fmt.Sprintf("connection%d:0", s.sid)
	ic := filepath.Join(sd, cn, "iscsi_connection", cn)
	if s.connAddrOnly {
		f.write(filepath.Join(ic, "address"), s.addr)
		f.write(filepath.Join(ic, "port"), s.port)
		f.write(filepath.Join(ic, "persistent_address"), "(null)")
	} else {
		f.write(filepath.Join(ic, "persistent_address"), s.addr)
		f.write(filepath.Join(ic, "persistent_port"), s.port)
	}
	require.NoError(f.t, os.Symlink(ic, filepath.Join(f.root, "class/iscsi_connection", cn)))
	f.write(filepath.Join(f.root, "class/scsi_host", fmt.Sprintf("host%d", s.host), "scan"), "")
}

func (f *fakeSysfs) addDevice(host, sid uint32, lun uint64, block string) {
	f.t.Helper()
	d := filepath.Join(f.sessionDir(host, sid), fmt.Sprintf("target%d:0:0", host), fmt.Sprintf("%d:0:0:%d", host, lun))
	require.NoError(f.t, os.MkdirAll(d, 0o755))
	if block == "" {
		return
	}
	require.NoError(f.t, os.MkdirAll(filepath.Join(d, "block", block), 0o755))
	f.write(filepath.Join(f.root, "block", block, "size"), "131072")
	f.write(filepath.Join(f.root, "block", block, "device", "delete"), "")
	f.write(filepath.Join(f.dev, block), "")
}

func TestSysfsSessions(t *testing.T) {
	f := newFakeSysfs(t)
	f.addSession(fakeSession{sid: 3, host: 7, target: "iqn.t:a", addr: "10.0.0.1", port: "3260", iface: "default", state: "LOGGED_IN", username: "node1"})
	f.addSession(fakeSession{sid: 1, host: 2, target: "iqn.t:b", addr: "fd00::1", port: "3261", iface: "eth1", state: "FAILED", connAddrOnly: true})
	// Noise the parser must skip.
	require.NoError(t, os.MkdirAll(filepath.Join(f.root, "class/iscsi_session/bogus"), 0o755))

	all, err := f.sys().Sessions()
	require.NoError(t, err)
	require.Len(t, all, 2)
	assert.Equal(t, SessionInfo{SID: 1, HostNo: 2, TargetName: "iqn.t:b", Portal: "[fd00::1]:3261", Iface: "eth1",
		InitiatorName: "iqn.test:init", ISID: "00023d000001", State: "FAILED"}, all[0])
	assert.Equal(t, uint32(7), all[1].HostNo)
	assert.Equal(t, "10.0.0.1:3260", all[1].Portal)
	assert.Equal(t, "node1", all[1].Username, "a CHAP session shows its user name")

	for _, tc := range []struct {
		portal, target, iface, initiator string
		want                             uint32 // 0: none
	}{
		{"10.0.0.1:3260", "iqn.t:a", "", "", 3},
		{"10.0.0.1:3260", "iqn.t:a", "default", "", 3},
		{"10.0.0.1:3260", "iqn.t:a", "default", "iqn.test:init", 3},
		{"10.0.0.1:3260", "iqn.t:a", "default", "iqn.test:other", 0}, // another initiator's session is not ours
		{"10.0.0.1:3260", "iqn.t:a", "eth1", "", 0},
		{"10.0.0.1:3261", "iqn.t:a", "", "", 0},
		{"10.0.0.2:3260", "iqn.t:a", "", "", 0},
		{"10.0.0.1:3260", "iqn.t:b", "", "", 0},
		{"[fd00:0::1]:3261", "iqn.t:b", "eth1", "", 1},
	} {
		got, err := f.sys().FindSession(tc.portal, tc.target, tc.iface, tc.initiator)
		require.NoError(t, err)
		if tc.want == 0 {
			assert.Nil(t, got, "%+v", tc)
		} else if assert.NotNil(t, got, "%+v", tc) {
			assert.Equal(t, tc.want, got.SID)
		}
	}

	_, err = f.sys().Session(99)
	assert.ErrorIs(t, err, ErrNoSession)
	empty := Sysfs{Root: t.TempDir()}
	all, err = empty.Sessions()
	require.NoError(t, err)
	assert.Empty(t, all)
}

func TestSysfsDevices(t *testing.T) {
	f := newFakeSysfs(t)
	f.addSession(fakeSession{sid: 4, host: 5, target: "iqn.t:a", addr: "10.0.0.1", port: "3260", iface: "default", state: "LOGGED_IN"})
	f.addDevice(5, 4, 2, "sdc")
	f.addDevice(5, 4, 1, "sdb")
	f.addDevice(5, 4, 3, "") // probed, block device not there yet

	devs, err := f.sys().SessionDevices(4)
	require.NoError(t, err)
	assert.Equal(t, []SCSIDevice{
		{Host: 5, Target: 0, LUN: 1, Block: "sdb"},
		{Host: 5, Target: 0, LUN: 2, Block: "sdc"},
		{Host: 5, Target: 0, LUN: 3},
	}, devs)
	assert.Equal(t, "5:0:0:2", devs[1].Address())

	d, err := f.sys().DeviceForLUN(4, 2)
	require.NoError(t, err)
	require.NotNil(t, d)
	assert.Equal(t, "sdc", d.Block)
	d, err = f.sys().DeviceForLUN(4, 9)
	require.NoError(t, err)
	assert.Nil(t, d)
	_, err = f.sys().SessionDevices(8)
	assert.ErrorIs(t, err, ErrNoSession)

	size, err := f.sys().BlockSize("sdb")
	require.NoError(t, err)
	assert.Equal(t, int64(64<<20), size)

	require.NoError(t, f.sys().scanLUN(5, 3))
	b, err := os.ReadFile(filepath.Join(f.root, "class/scsi_host/host5/scan"))
	require.NoError(t, err)
	assert.Equal(t, "0 0 3", string(b), "only the requested LUN is scanned")
	assert.Error(t, f.sys().scanLUN(6, 3), "no such host")

	require.NoError(t, f.sys().deleteBlock("sdb"))
	b, err = os.ReadFile(filepath.Join(f.root, "block/sdb/device/delete"))
	require.NoError(t, err)
	assert.Equal(t, "1", string(b))
	require.NoError(t, f.sys().deleteBlock("sdz"), "a gone device is not an error")
	assert.True(t, f.sys().BlockExists("sdc"))
	assert.False(t, f.sys().BlockExists("sdz"))
}

func TestParseHCTL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want SCSIDevice
		ok   bool
	}{
		{"2:0:0:1", SCSIDevice{Host: 2, LUN: 1}, true},
		{"10:1:2:16384", SCSIDevice{Host: 10, Channel: 1, Target: 2, LUN: 16384}, true},
		{"2:0:0", SCSIDevice{}, false},
		{"target2:0:0", SCSIDevice{}, false},
		{"a:0:0:1", SCSIDevice{}, false},
		{"2:0:0:-1", SCSIDevice{}, false},
		{"4294967296:0:0:1", SCSIDevice{}, false},
		{"", SCSIDevice{}, false},
	} {
		got, ok := parseHCTL(tc.in)
		assert.Equal(t, tc.ok, ok, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
}

func FuzzParseHCTL(f *testing.F) {
	for _, s := range []string{"2:0:0:1", "1:2:3:4:5", ":::", "9:9:9:18446744073709551615"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := parseHCTL(s)
		if ok {
			again, ok2 := parseHCTL(d.Address())
			if !ok2 || again != d {
				t.Fatalf("%q -> %+v does not round-trip", s, d)
			}
		}
	})
}

func TestSamePortal(t *testing.T) {
	assert.True(t, samePortal("10.0.0.1:3260", "10.0.0.1:3260"))
	assert.True(t, samePortal("[::ffff:10.0.0.1]:3260", "10.0.0.1:3260"))
	assert.True(t, samePortal("[fd00::1]:3260", "[fd00:0:0::1]:3260"))
	assert.False(t, samePortal("10.0.0.1:3260", "10.0.0.1:3261"))
	assert.True(t, samePortal("Host:1", "host:1"))
	assert.False(t, samePortal("garbage", "10.0.0.1:1"))
}

func TestWaitFor(t *testing.T) {
	n := 0
	require.NoError(t, waitFor(context.Background(), time.Millisecond, func() (bool, error) { n++; return n == 3, nil }))
	assert.Equal(t, 3, n)
	boom := errors.New("boom")
	assert.ErrorIs(t, waitFor(context.Background(), time.Millisecond, func() (bool, error) { return false, boom }), boom)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, waitFor(ctx, time.Millisecond, func() (bool, error) { return false, nil }), context.DeadlineExceeded)
}

// The sysfs writes run under the lock Attach and Detach take for the
// session: DeleteDevice waits while an Attach (or Detach) of the same
// session holds it, and refuses a block device of no iSCSI session.
func TestDeleteDeviceTakesTheSessionLock(t *testing.T) {
	f := newFakeSysfs(t)
	f.addSession(fakeSession{sid: 4, host: 5, target: "iqn.t:a", addr: "10.0.0.1", port: "3260", iface: "default", state: "LOGGED_IN"})
	f.addDevice(5, 4, 1, "sdb")
	require.NoError(t, os.MkdirAll(filepath.Join(f.root, "block", "sda"), 0o755)) // a local disk
	k := &Kernel{sys: f.sys(), log: slog.New(slog.DiscardHandler), sessions: map[uint32]*session{}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	info, err := f.sys().sessionOfBlock("sdb")
	require.NoError(t, err)
	require.NotNil(t, info)
	assert.Equal(t, uint32(4), info.SID)
	// The key an Attach of iscsi://10.0.0.1/iqn.t:a/1 as the session's
	// initiator takes.
	unlock, err := k.lock(ctx, sessionKey("10.0.0.1:3260", "iqn.t:a", "", "iqn.test:init"))
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- k.DeleteDevice(ctx, "/dev/sdb") }()
	time.Sleep(100 * time.Millisecond)
	deleteAttr := filepath.Join(f.root, "block/sdb/device/delete")
	b, err := os.ReadFile(deleteAttr)
	require.NoError(t, err)
	assert.Equal(t, "\n", string(b), "nothing written while the session is locked")
	select {
	case err := <-done:
		t.Fatalf("DeleteDevice returned while the session was locked: %v", err)
	default:
	}
	unlock()
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(deleteAttr)
		return string(b) == "1"
	}, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, os.RemoveAll(filepath.Join(f.root, "block/sdb"))) // what the kernel does
	require.NoError(t, <-done)

	err = k.DeleteDevice(ctx, "/dev/sda")
	require.ErrorIs(t, err, ErrNoSession, "a disk of no iSCSI session is not deleted")
	require.NoError(t, k.DeleteDevice(ctx, "/dev/sdz"), "a gone device is not an error")
}
