//go:build vmguest

package main

// Guest side of the CLI's kernel and volume tests: runs inside the qemu guest
// (internal/testenv/vmtest), calls run(...) in-process as the command line would,
// against tgtd on the host (kernel_vm_test.go).

import (
	"bufio"
	"bytes"
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

	"github.com/gosan/iscsi/internal/testenv/vmtest"
)

func loadCLIEnv(t *testing.T) cliGuestEnv {
	t.Helper()
	vmtest.RequireGuest(t)
	var e cliGuestEnv
	require.NoError(t, json.Unmarshal([]byte(os.Getenv(cliEnvVar)), &e), cliEnvVar)
	require.NotEmpty(t, e.Portal)
	return e
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// gctl runs iscsictl in-process with a timeout fit for TCG emulation; every
// output is also kept in all (to check that no secret is ever printed).
type gctl struct {
	t   *testing.T
	env map[string]string
	all strings.Builder
}

func (g *gctl) run(args ...string) (int, string, string) {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, args, strings.NewReader(""), &out, &errb, func(k string) string { return g.env[k] })
	g.t.Logf("iscsictl %s => %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	g.all.WriteString(out.String())
	g.all.WriteString(errb.String())
	return code, out.String(), errb.String()
}

// ok runs a command that must succeed and returns its stdout.
func (g *gctl) ok(args ...string) string {
	g.t.Helper()
	code, out, errs := g.run(args...)
	require.Equal(g.t, 0, code, "iscsictl %v: %s", args, errs)
	return out
}

func (g *gctl) sessions() []sessionOutput {
	g.t.Helper()
	var s []sessionOutput
	require.NoError(g.t, json.Unmarshal([]byte(g.ok("sessions", "--json")), &s))
	return s
}

func (g *gctl) noSecrets(secrets ...string) {
	g.t.Helper()
	for _, s := range secrets {
		require.NotEmpty(g.t, s)
		assert.NotContains(g.t, g.all.String(), s, "a secret was printed")
	}
}

// writeDirect writes data at off with O_DIRECT and reads it back.
func writeDirect(t *testing.T, dev string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_RDWR|unix.O_DIRECT, 0)
	require.NoError(t, err)
	defer f.Close()
	buf, err := unix.Mmap(-1, 0, len(data), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	require.NoError(t, err)
	defer unix.Munmap(buf)
	copy(buf, data)
	_, err = f.WriteAt(buf, off)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	clear(buf)
	_, err = f.ReadAt(buf, off)
	require.NoError(t, err)
	require.True(t, bytes.Equal(buf, data), "read back through %s differs", dev)
}

func TestGuestCLIKernel(t *testing.T) {
	e := loadCLIEnv(t)
	g := &gctl{t: t, env: map[string]string{}}
	plain := fmt.Sprintf("iscsi://%s/%s/1", e.Portal, e.PlainIQN)

	require.Empty(t, g.sessions(), "no session before the test")

	// attach: JSON shape, size, device node.
	var a attachOutput
	require.NoError(t, json.Unmarshal([]byte(g.ok("attach", plain, "--json")), &a))
	assert.True(t, a.NewSession)
	assert.Equal(t, e.PlainSize, a.Size)
	assert.Equal(t, uint64(1), a.LUN)
	assert.Equal(t, fmt.Sprintf("%d:0:0:1", a.Host), a.SCSIAddress)
	assert.Equal(t, e.PlainIQN, a.TargetName)
	assert.Equal(t, "default", a.Iface)
	assert.NotZero(t, a.Session)
	require.True(t, strings.HasPrefix(a.Path, "/dev/sd"), a.Path)
	st, err := os.Stat(a.Path)
	require.NoError(t, err)
	assert.NotZero(t, st.Mode()&os.ModeDevice, "%s is a device node", a.Path)
	var raw map[string]any
	require.NoError(t, json.Unmarshal([]byte(g.ok("attach", plain, "--json")), &raw))
	for _, k := range []string{"path", "scsi_address", "session", "host", "size", "new_session"} {
		assert.Contains(t, raw, k)
	}
	assert.Equal(t, false, raw["new_session"], "second attach reuses the session")

	// Text form: the path and nothing else.
	assert.Equal(t, a.Path+"\n", g.ok("attach", plain))

	// Write through the device; the host checks tgtd's backing file.
	writeDirect(t, a.Path, cliDataOff, vmtest.SeedData(e.Seed, cliDataLen))

	ss := g.sessions()
	require.Len(t, ss, 1)
	assert.Equal(t, a.Session, ss[0].SID)
	assert.Equal(t, a.Host, ss[0].Host)
	assert.Equal(t, e.PlainIQN, ss[0].TargetName)
	assert.Equal(t, e.Portal, ss[0].Portal)
	assert.Equal(t, "default", ss[0].Iface)
	assert.Equal(t, "LOGGED_IN", ss[0].State)
	require.Len(t, ss[0].Devices, 1)
	assert.Equal(t, deviceOutput{LUN: 1, SCSIAddress: a.SCSIAddress, Path: a.Path}, ss[0].Devices[0])
	text := g.ok("sessions")
	assert.Contains(t, text, filepath.Base(a.Path)+"(lun 1)")
	assert.Contains(t, text, "LOGGED_IN")

	// Two LUNs on one session: detaching one keeps the session.
	multi := func(l int) string { return fmt.Sprintf("iscsi://%s/%s/%d", e.Portal, e.MultiIQN, l) }
	m1 := strings.TrimSpace(g.ok("attach", multi(1)))
	m2 := strings.TrimSpace(g.ok("attach", multi(2)))
	assert.NotEqual(t, m1, m2)
	var d detachOutput
	require.NoError(t, json.Unmarshal([]byte(g.ok("detach", m1, "--json")), &d))
	assert.Equal(t, m1, d.Path)
	assert.False(t, d.LoggedOut, "LUN 2 still uses the session")
	_, err = os.Stat(m1)
	assert.True(t, os.IsNotExist(err), "%s deleted", m1)
	ss = g.sessions()
	require.Len(t, ss, 2)
	for _, s := range ss {
		if s.TargetName == e.MultiIQN {
			require.Len(t, s.Devices, 1)
			assert.Equal(t, uint64(2), s.Devices[0].LUN)
		}
	}
	out := g.ok("detach", multi(2))
	assert.Contains(t, out, "logged out")

	// Detach by URL, then again (gone is success), and by the old path.
	require.NoError(t, json.Unmarshal([]byte(g.ok("detach", plain, "--json")), &d))
	assert.Equal(t, detachOutput{Path: a.Path, Session: a.Session, LoggedOut: true}, d)
	d = detachOutput{}
	require.NoError(t, json.Unmarshal([]byte(g.ok("detach", plain, "--json")), &d))
	assert.True(t, d.Gone)
	assert.Contains(t, g.ok("detach", a.Path), "not attached")
	require.Empty(t, g.sessions(), "every session logged out")

	// CHAP from the environment, with --verbose: the secret never shows.
	g.env = map[string]string{"LIBISCSI_CHAP_USERNAME": e.CHAPUser, "LIBISCSI_CHAP_PASSWORD": e.CHAPSecret}
	chapURL := fmt.Sprintf("iscsi://%s/%s/1", e.Portal, e.CHAPIQN)
	dev := strings.TrimSpace(g.ok("--verbose", "attach", chapURL))
	assert.True(t, strings.HasPrefix(dev, "/dev/sd"), dev)
	g.ok("--verbose", "detach", chapURL)
	g.env = map[string]string{"LIBISCSI_CHAP_USERNAME": e.CHAPUser, "LIBISCSI_CHAP_PASSWORD": "wrong-" + e.CHAPSecret}
	code, _, errs := g.run("attach", chapURL)
	assert.Equal(t, 1, code)
	assert.Equal(t, 1, strings.Count(errs, "\n"), "one line: %q", errs)
	assert.Contains(t, errs, "authentication")
	g.noSecrets(e.CHAPSecret, "wrong-"+e.CHAPSecret)
	require.Empty(t, g.sessions(), "a failed attach leaves no session")

	// supervise adopts the existing session and stops cleanly on cancel;
	// meanwhile other kernel commands see it as another daemon.
	g.env = nil
	dev = strings.TrimSpace(g.ok("attach", plain))
	ctx, cancel := context.WithCancel(context.Background())
	var sout, serr syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"supervise"}, strings.NewReader(""), &sout, &serr, g.env2()) }()
	require.Eventually(t, func() bool { return strings.Contains(sout.String(), "supervising 1 session(s)") },
		2*time.Minute, 50*time.Millisecond, "supervise output: %s %s", sout.String(), serr.String())
	assert.Contains(t, sout.String(), fmt.Sprintf("%s %s", e.Portal, e.PlainIQN))
	code, _, errs = g.run("attach", plain)
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "another iSCSI daemon")

	// The target drops the connection: supervise logs in again and I/O
	// through the same device goes on (without a supervisor it would fail
	// after the kernel's recovery timeout).
	dropConnections(t, e.Drop, e.PlainTID)
	writeDirect(t, dev, cliDataOff+cliDataLen, vmtest.SeedData(e.Seed+1, cliDataLen))
	require.Eventually(t, func() bool { return strings.Contains(serr.String(), "blockdev: session recovered") },
		time.Minute, 50*time.Millisecond, "supervise reports the recovery: %s", serr.String())
	ss = g.sessions()
	require.Len(t, ss, 1)
	assert.Equal(t, "LOGGED_IN", ss[0].State)

	assert.Equal(t, dev+"\n", g.ok("attach", plain, "--allow-other-daemon"))
	cancel()
	select {
	case code := <-done:
		assert.Equal(t, 0, code, "supervise exits 0 on SIGINT/SIGTERM: %s", serr.String())
	case <-time.After(time.Minute):
		t.Fatal("supervise did not stop")
	}
	t.Logf("supervise stdout:\n%sstderr:\n%s", sout.String(), serr.String())
	g.ok("detach", dev)
	require.Empty(t, g.sessions())
}

// dropConnections asks the host helper to drop every connection of tid.
func dropConnections(t *testing.T, helper string, tid int) {
	t.Helper()
	c, err := net.DialTimeout("tcp", helper, 30*time.Second)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	_, err = fmt.Fprintf(c, "drop %d\n", tid)
	require.NoError(t, err)
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "ok ") && line != "ok 0\n", "drop helper: %q", line)
}

// env2 is the getenv of g.env.
func (g *gctl) env2() func(string) string { return func(k string) string { return g.env[k] } }

func TestGuestCLIVolume(t *testing.T) {
	e := loadCLIEnv(t)
	g := &gctl{t: t}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	spec := filepath.Join(dir, "volume.json")
	secret := filepath.Join(dir, "secret.json")
	require.NoError(t, os.WriteFile(spec, []byte(fmt.Sprintf(
		`{"targetPortal": %q, "iqn": %q, "lun": 1, "fsType": "ext4", "chapAuthSession": true}`, e.Portal, e.CHAPIQN)), 0o600))
	require.NoError(t, os.WriteFile(secret, []byte(fmt.Sprintf(
		`{"node.session.auth.username": %q, "node.session.auth.password": %q}`, e.CHAPUser, e.CHAPSecret)), 0o600))
	vol := []string{"--spec", spec, "--secret", secret, "--root", root}

	var st stageOutput
	require.NoError(t, json.Unmarshal([]byte(g.ok(append([]string{"stage", "--json"}, vol...)...)), &st))
	assert.True(t, st.Formatted, "a blank LUN is formatted")
	assert.Equal(t, "ext4", st.FSType)
	assert.Equal(t, "filesystem", st.VolumeMode)
	assert.True(t, strings.HasPrefix(st.GlobalPath, root+"/iscsi/iface-default/"), st.GlobalPath)
	require.Len(t, st.Devices, 1)
	assert.Equal(t, st.Devices[0].Path, st.Device)
	assert.Equal(t, uint64(1), st.Devices[0].LUN)
	assert.Equal(t, e.Portal, st.Devices[0].Portal)
	assert.NotZero(t, st.Devices[0].Session)
	assert.Empty(t, st.Failed)
	// Stage is idempotent.
	out := g.ok(append([]string{"stage"}, vol...)...)
	assert.Contains(t, out, "global path: "+st.GlobalPath+"\n")
	assert.Contains(t, out, "formatted: no\n")

	p1, p2 := filepath.Join(dir, "pod1", "vol"), filepath.Join(dir, "pod2", "vol")
	var pub publishOutput
	require.NoError(t, json.Unmarshal([]byte(g.ok(append([]string{"publish", "--json", "--target-path", p1}, vol...)...)), &pub))
	assert.Equal(t, publishOutput{TargetPath: p1, GlobalPath: st.GlobalPath}, pub)
	// The second publish names the volume by flags, CHAP secrets from the environment.
	g.env = map[string]string{"LIBISCSI_CHAP_USERNAME": e.CHAPUser, "LIBISCSI_CHAP_PASSWORD": e.CHAPSecret}
	flagVol := []string{"--portal", e.Portal, "--iqn", e.CHAPIQN, "--lun", "1", "--chap-session", "--root", root}
	assert.Contains(t, g.ok(append([]string{"publish", "--target-path", p2}, flagVol...)...), "published "+st.GlobalPath+" at "+p2)
	require.NoError(t, os.WriteFile(filepath.Join(p1, "hello.txt"), []byte("hello from the CLI"), 0o644))
	b, err := os.ReadFile(filepath.Join(p2, "hello.txt"))
	require.NoError(t, err)
	assert.Equal(t, "hello from the CLI", string(b))

	// Unstage refuses while published.
	code, _, errs := g.run(append([]string{"unstage"}, vol...)...)
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "still mounted")
	assert.Equal(t, 1, strings.Count(errs, "\n"), "one line: %q", errs)

	assert.Equal(t, "unpublished "+p1+"\n", g.ok("unpublish", "--target-path", p1, "--root", root))
	g.ok("unpublish", "--target-path", p2, "--root", root, "--json")
	g.ok("unpublish", "--target-path", p2, "--root", root) // idempotent
	assert.Equal(t, "unstaged "+st.GlobalPath+"\n", g.ok(append([]string{"unstage"}, vol...)...))
	require.Empty(t, g.sessions(), "unstage logged out")

	// Stage again: no reformat, the file is there.
	out = g.ok(append([]string{"stage"}, flagVol...)...)
	assert.Contains(t, out, "formatted: no\n")
	b, err = os.ReadFile(filepath.Join(st.GlobalPath, "hello.txt"))
	require.NoError(t, err, "the file survives: no reformat")
	assert.Equal(t, "hello from the CLI", string(b))
	g.ok("unstage", "--global-path", st.GlobalPath, "--root", root)
	g.ok("unstage", "--global-path", st.GlobalPath, "--root", root) // idempotent
	require.Empty(t, g.sessions())
	g.noSecrets(e.CHAPSecret)

	// Block mode: the raw device bind-mounted onto a file.
	blockVol := []string{"--portal", e.Portal, "--iqn", e.MultiIQN, "--lun", "2", "--volume-mode", "block", "--root", root}
	var bst stageOutput
	require.NoError(t, json.Unmarshal([]byte(g.ok(append([]string{"stage", "--json"}, blockVol...)...)), &bst))
	assert.Equal(t, "block", bst.VolumeMode)
	assert.False(t, bst.Formatted)
	assert.Empty(t, bst.FSType)
	pb := filepath.Join(dir, "pod3", "dev")
	g.ok(append([]string{"publish", "--target-path", pb}, blockVol...)...)
	data := vmtest.SeedData(e.Seed+2, 64<<10)
	writeDirect(t, pb, 1<<20, data)
	g.ok(append([]string{"unpublish", "--target-path", pb}, blockVol...)...)
	_, err = os.Stat(pb)
	assert.True(t, os.IsNotExist(err), "unpublish removes the file publish created")
	g.ok(append([]string{"unstage"}, blockVol...)...)
	require.Empty(t, g.sessions())
}
