//go:build linux

package tgtd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func dialOK(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	require.NoError(t, err, "portal %s should accept TCP", addr)
	require.NoError(t, c.Close())
}

func procState(pid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0
	}
	return s[i+2]
}

func TestFixtureShow(t *testing.T) {
	t.Parallel()
	s, f := StartFixture(t)
	ctx := t.Context()

	assert.Equal(t, s.Portal(), f.Portal)
	assert.True(t, strings.HasPrefix(f.Portal, "127.0.0.1:"), f.Portal)
	dialOK(t, f.Portal)

	raw, err := s.Show(ctx)
	require.NoError(t, err)
	for _, ft := range f.Targets() {
		assert.Contains(t, raw, ft.IQN)
	}

	ts, err := s.Targets(ctx)
	require.NoError(t, err)
	require.Len(t, ts, 6)
	for _, ft := range f.Targets() {
		t.Run(ft.IQN, func(t *testing.T) {
			tg, err := s.Target(ctx, ft.TID)
			require.NoError(t, err)
			assert.Equal(t, ft.IQN, tg.Name)
			assert.Equal(t, "ready", tg.State)
			require.NotNil(t, tg.LUN(0), "LUN 0 controller")
			assert.Equal(t, "controller", tg.LUN(0).Type)
			require.Len(t, tg.LUNs, 1+len(ft.LUNs))
			for _, fl := range ft.LUNs {
				l := tg.LUN(fl.LUN)
				require.NotNil(t, l, "LUN %d", fl.LUN)
				assert.Equal(t, "disk", l.Type)
				assert.Equal(t, SizeMB(fl.Size), l.SizeMB)
				assert.Equal(t, fl.BlockSize, l.BlockSize)
				if fl.Path != "" {
					assert.Equal(t, fl.Path, l.BackingPath)
					assert.Equal(t, "rdwr", l.BackingType)
					var st syscall.Stat_t
					require.NoError(t, syscall.Stat(fl.Path, &st))
					assert.Equal(t, fl.Size, st.Size)
					assert.Less(t, st.Blocks*512, int64(1<<20), "backing file must be sparse")
				} else {
					assert.Equal(t, "null", l.BackingType)
				}
			}
		})
	}
	chap, err := s.Target(ctx, TIDCHAP)
	require.NoError(t, err)
	assert.Equal(t, []Account{{User: f.CHAP.User}}, chap.Accounts)
	mutual, err := s.Target(ctx, TIDMutual)
	require.NoError(t, err)
	assert.ElementsMatch(t, []Account{{User: f.MutualCHAP.User}, {User: f.MutualCHAP.TargetUser, Outgoing: true}}, mutual.Accounts)
	acl, err := s.Target(ctx, TIDACL)
	require.NoError(t, err)
	assert.Equal(t, []string{f.AllowedInitiator}, acl.ACLs)
	plain, err := s.Target(ctx, TIDPlain)
	require.NoError(t, err)
	assert.Equal(t, []string{"ALL"}, plain.ACLs)
	assert.Equal(t, int64(1099512), SizeMB(NullSize))

	for _, ft := range f.Targets() {
		for _, secret := range []string{ft.Secret, ft.TargetSecret} {
			if secret != "" {
				assert.GreaterOrEqual(t, len(secret), 12)
				assert.NotContains(t, f.String(), secret)
				assert.NotContains(t, fmt.Sprintf("%v %+v %#v", ft, ft, ft), secret)
			}
		}
	}
}

func TestLoginAgainstFixture(t *testing.T) {
	t.Parallel()
	s, f := StartFixture(t)
	tests := []struct {
		name      string
		initiator string
		target    string
		wantClass uint16 // 0 = success
	}{
		{"plain", "iqn.2026-11.org.gosan.test:init", f.Plain.IQN, 0},
		{"acl allowed", f.AllowedInitiator, f.ACL.IQN, 0},
		{"acl denied", "iqn.2026-11.org.gosan.test:stranger", f.ACL.IQN, 2},
		{"chap without auth", "iqn.2026-11.org.gosan.test:init", f.CHAP.IQN, 2},
		{"unknown target", "iqn.2026-11.org.gosan.test:init", IQNPrefix + "nope", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, status, err := rawLogin(t.Context(), s.Portal(), tc.initiator, tc.target)
			require.NoError(t, err)
			if c != nil {
				defer c.Close()
			}
			assert.Equal(t, tc.wantClass, status>>8, "status %#04x", status)
		})
	}
}

func TestSessionsDeleteConnection(t *testing.T) {
	t.Parallel()
	s, f := StartFixture(t)
	ctx := t.Context()

	err := s.DeleteConnection(ctx, TIDPlain, 999, 0)
	require.Error(t, err)
	var ae *AdminError
	require.ErrorAs(t, err, &ae)
	assert.NotEmpty(t, ae.Output, "error carries tgtadm output")
	assert.Contains(t, err.Error(), ae.Output)
	assert.ErrorIs(t, err, ErrNotFound)

	const ini = "iqn.2026-11.org.gosan.test:sessions"
	c, status, err := rawLogin(ctx, s.Portal(), ini, f.Plain.IQN)
	require.NoError(t, err)
	require.Zero(t, status)
	defer c.Close()

	sess, err := s.Sessions(ctx, TIDPlain)
	require.NoError(t, err)
	require.Len(t, sess, 1)
	assert.Equal(t, ini, sess[0].Initiator)
	require.Len(t, sess[0].Connections, 1)
	assert.Equal(t, "127.0.0.1", sess[0].Connections[0].IP)

	require.NoError(t, s.DeleteConnection(ctx, TIDPlain, sess[0].SID, sess[0].Connections[0].CID))
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = c.Read(make([]byte, 64))
	assert.ErrorIs(t, err, io.EOF, "dropped connection is closed by the target")
	require.Eventually(t, func() bool {
		ss, err := s.Sessions(ctx, TIDPlain)
		return err == nil && len(ss) == 0
	}, 5*time.Second, 50*time.Millisecond)
}

func TestKillRestart(t *testing.T) {
	t.Parallel()
	s, f := StartFixture(t, WithPortals(2))
	ctx := t.Context()
	require.NoError(t, s.SetParam(ctx, TIDPlain, "MaxRecvDataSegmentLength", "262144"))
	before, err := s.Targets(ctx)
	require.NoError(t, err)
	portals, ctrl, pid := s.Portals(), s.Control(), s.PID()
	require.Len(t, portals, 2)

	require.NoError(t, s.Kill())
	assert.False(t, s.Running())
	assert.Empty(t, Processes(ctrl))
	assert.Zero(t, procState(pid), "killed tgtd is reaped")
	_, err = net.DialTimeout("tcp", portals[0], time.Second)
	require.Error(t, err, "portal is gone after Kill")
	assert.ErrorIs(t, s.Kill(), ErrNotRunning)

	start := time.Now()
	require.NoError(t, s.Restart(ctx))
	t.Logf("restart with replay of the fixture took %v", time.Since(start))
	assert.Equal(t, portals, s.Portals())
	assert.Equal(t, ctrl, s.Control())
	assert.NotEqual(t, pid, s.PID())
	for _, p := range portals {
		dialOK(t, p)
	}
	after, err := s.Targets(ctx)
	require.NoError(t, err)
	assert.Equal(t, before, after)
	params, err := s.Params(ctx, TIDPlain)
	require.NoError(t, err)
	assert.Equal(t, "262144", params["MaxRecvDataSegmentLength"])

	c, status, err := rawLogin(ctx, portals[1], "iqn.2026-11.org.gosan.test:restart", f.Plain.IQN)
	require.NoError(t, err)
	require.Zero(t, status)
	require.NoError(t, c.Close())
}

func TestStopCont(t *testing.T) {
	t.Parallel()
	s := Start(t)
	pid := s.PID()
	require.NotZero(t, pid)
	require.NoError(t, s.Stop())
	require.Eventually(t, func() bool { return procState(pid) == 'T' }, 2*time.Second, 10*time.Millisecond)
	require.NoError(t, s.Cont())
	require.Eventually(t, func() bool { return procState(pid) != 'T' }, 2*time.Second, 10*time.Millisecond)
	// Close must work on a frozen tgtd too.
	require.NoError(t, s.Stop())
	require.NoError(t, s.Close())
	assert.Empty(t, Processes(s.Control()))
}

func TestCloseLeavesNothing(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	start := time.Now()
	s, err := StartServer(ctx, Options{})
	require.NoError(t, err)
	t.Logf("start took %v", time.Since(start))
	pid, ctrl, dir := s.PID(), s.Control(), s.Dir()
	require.NotZero(t, pid)
	assert.Equal(t, []int{pid}, Processes(ctrl))
	require.NoError(t, s.NewTarget(ctx, 1, IQNPrefix+"close"))
	_, err = CreateBackingFile(dir, 1<<20)
	require.NoError(t, err)

	start = time.Now()
	require.NoError(t, s.Close())
	t.Logf("clean stop took %v", time.Since(start))
	assert.Less(t, time.Since(start), 2*time.Second, "clean stop, not the SIGKILL fallback")
	assert.Empty(t, Processes(ctrl), "no tgtd -C %d left", ctrl)
	assert.Zero(t, procState(pid))
	assert.NoDirExists(t, dir)
	assert.NoFileExists(t, filepath.Join("/var/run/tgtd", fmt.Sprintf("socket.%d.lock", ctrl)))
	assert.NoError(t, s.Close(), "Close is idempotent")
	assert.False(t, s.Running())
	assert.Error(t, s.Restart(ctx))
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	other := Start(t)

	tests := []struct {
		name  string
		opts  Options
		check func(t *testing.T, se *StartError)
	}{
		{"port taken", Options{Port: taken}, func(t *testing.T, se *StartError) {
			assert.True(t, se.BindFailed, "%v", se)
			assert.Contains(t, se.Log, msgBindFailed)
		}},
		{"control in use", Options{Control: other.Control()}, func(t *testing.T, se *StartError) {
			assert.True(t, se.ControlInUse, "%v", se)
			assert.Contains(t, se.Log, msgCtrlInUse)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := StartServer(ctx, tc.opts)
			if s != nil {
				s.Close()
			}
			require.Error(t, err)
			var se *StartError
			require.ErrorAs(t, err, &se)
			tc.check(t, se)
			if tc.opts.Control == 0 {
				assert.Empty(t, Processes(se.Control), "failed start leaves no process")
			}
		})
	}
	assert.True(t, other.Running(), "the other tgtd is untouched")
}

func TestAdminErrors(t *testing.T) {
	t.Parallel()
	s := Start(t)
	ctx := t.Context()
	const secret = "very-secret-password-42"
	require.NoError(t, s.NewAccount(ctx, "dup", secret))
	err := s.NewAccount(ctx, "dup", secret)
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrExists)
	assert.NotContains(t, err.Error(), secret)
	assert.NotContains(t, fmt.Sprintf("%+v %#v", err, err), secret)

	require.NoError(t, s.NewTarget(ctx, 1, IQNPrefix+"a"))
	assert.ErrorIs(t, s.NewTarget(ctx, 1, IQNPrefix+"a"), ErrExists)
	assert.ErrorIs(t, s.AddLUN(ctx, 9, 1, "/nonexistent", 0), ErrNotFound)
	assert.Error(t, s.LinkDown(ctx), "LinkDown needs a namespace")
}

func TestMultiPortalNOP(t *testing.T) {
	t.Parallel()
	s := Start(t, WithPortals(3), WithNOP(7, 4))
	ports := map[string]bool{}
	for _, p := range s.Portals() {
		dialOK(t, p)
		ports[p] = true
	}
	assert.Len(t, ports, 3)
	out, err := s.Admin(t.Context(), "--mode", "portal", "--op", "show")
	require.NoError(t, err)
	for _, p := range s.Portals() {
		assert.Contains(t, out, p)
	}
	require.NoError(t, s.NewTarget(t.Context(), 1, IQNPrefix+"nop"))
	params, err := s.Params(t.Context(), 1)
	require.NoError(t, err)
	assert.Equal(t, "7", params["nop_interval"])
	assert.Equal(t, "4", params["nop_count"])
}

func TestNetnsLinkDownUp(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := StartInNetns(t)
	name, veth, hostAddr := s.Netns()
	require.NotEmpty(t, name)
	assert.True(t, strings.HasPrefix(s.Host(), "10.200."), s.Host())
	assert.True(t, strings.HasPrefix(hostAddr, "10.200."), hostAddr)
	assert.Equal(t, 3260, s.Port())
	require.NoError(t, s.NewTarget(ctx, 1, IQNPrefix+"netns"))
	require.NoError(t, s.BindAddress(ctx, 1, "ALL"))
	dialOK(t, s.Portal())
	c, status, err := rawLogin(ctx, s.Portal(), "iqn.2026-11.org.gosan.test:netns", IQNPrefix+"netns")
	require.NoError(t, err)
	require.Zero(t, status)
	defer c.Close()

	require.NoError(t, s.LinkDown(ctx))
	_, err = net.DialTimeout("tcp", s.Portal(), 300*time.Millisecond)
	require.Error(t, err, "portal unreachable with %s down", veth)

	require.NoError(t, s.LinkUp(ctx))
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", s.Portal(), 300*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 5*time.Second, 50*time.Millisecond)

	// Kill + Restart inside the namespace.
	require.NoError(t, s.Kill())
	require.NoError(t, s.Restart(ctx))
	dialOK(t, s.Portal())

	require.NoError(t, s.Close())
	_, err = os.Stat(filepath.Join("/var/run/netns", name))
	assert.True(t, errors.Is(err, os.ErrNotExist), "netns %s removed", name)
	_, err = net.InterfaceByName(veth)
	assert.Error(t, err, "veth %s removed", veth)
	assert.Empty(t, Processes(s.Control()))
}

func TestParallelServersDoNotCollide(t *testing.T) {
	t.Parallel()
	const n = 4
	type res struct {
		s   *Server
		err error
	}
	ch := make(chan res, n)
	for i := 0; i < n; i++ {
		go func() {
			s, err := StartServer(t.Context(), Options{Control: ctrlBase + 7}) // same fixed control: n-1 must fail
			ch <- res{s, err}
		}()
	}
	var ok []*Server
	fails := 0
	for i := 0; i < n; i++ {
		r := <-ch
		if r.err != nil {
			var se *StartError
			require.ErrorAs(t, r.err, &se)
			assert.True(t, se.ControlInUse, "%v", r.err)
			fails++
			continue
		}
		ok = append(ok, r.s)
	}
	for _, s := range ok {
		require.NoError(t, s.Close())
	}
	assert.Len(t, ok, 1, "exactly one tgtd gets a fixed control number")
	assert.Equal(t, n-1, fails)

	// Free picks in parallel never collide.
	for i := 0; i < n; i++ {
		go func() {
			s, err := StartServer(t.Context(), Options{})
			ch <- res{s, err}
		}()
	}
	ctrls, portals := map[int]bool{}, map[string]bool{}
	for i := 0; i < n; i++ {
		r := <-ch
		require.NoError(t, r.err)
		t.Cleanup(func() { r.s.Close() })
		ctrls[r.s.Control()] = true
		portals[r.s.Portal()] = true
	}
	assert.Len(t, ctrls, n)
	assert.Len(t, portals, n)
}

func TestSubnet30(t *testing.T) {
	seen := map[string]bool{}
	for c := ctrlBase; c < ctrlBase+ctrlSpan; c++ {
		h, n, _ := subnet30(c)
		require.False(t, seen[n], "duplicate %s", n)
		seen[n] = true
		ip := net.ParseIP(h).To4()
		require.NotNil(t, ip)
		assert.Equal(t, byte(1), ip[3]%4, h)
	}
}

func TestStartTimeoutContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	s, err := StartServer(ctx, Options{})
	if s != nil {
		s.Close()
	}
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestReapStaleNetns(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ip, err := lookTool("ip")
	require.NoError(t, err, "install Debian package iproute2 (make deps)")
	const ctrl = 99999 // outside tgtd's range: no live server can own it
	ns, err := createNetns(ctx, ip, ctrl)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ns.remove(context.Background()) })
	path := filepath.Join("/var/run/netns", netnsPrefix+"99999")
	require.FileExists(t, path)

	reapStaleNetns(ctx, ip, time.Hour, ctrl)
	require.FileExists(t, path, "a young namespace is left alone")
	reapStaleNetns(ctx, ip, 0, ctrl)
	assert.NoFileExists(t, path)
	_, err = net.InterfaceByName(ns.hostVeth)
	assert.Error(t, err, "veth removed with the namespace")
}
