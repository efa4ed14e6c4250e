//go:build linux

package vmtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests boot real guests (about 3-7 s each under TCG).

func TestGuestProbeThroughHarness(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	got := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- "accept: " + err.Error()
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Minute))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			line = "read: " + err.Error()
		}
		got <- line
	}()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	res := RunTestInGuest(t, ".", "^TestGuestISCSIProbe$", map[string]string{"VMTEST_HOST_PORT": port})
	require.NotNil(t, res)
	assert.Equal(t, 0, res.ExitCode)
	assert.Contains(t, res.Output, "--- PASS: TestGuestISCSIProbe")
	select {
	case line := <-got:
		assert.True(t, strings.HasPrefix(line, "hello from guest, iscsi_tcp handle "), "host got %q", line)
	case <-time.After(5 * time.Second):
		t.Fatal("the guest never connected to the host listener")
	}
}

func TestExitCodePropagation(t *testing.T) {
	bin := BuildTest(t, ".")
	disk := filepath.Join(t.TempDir(), "disk.img")
	img := make([]byte, 1<<20)
	copy(img, "VMTEST-DISK-MAGIC")
	require.NoError(t, os.WriteFile(disk, img, 0o644))
	tree := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "sub"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "sub", "f.txt"), []byte("tree file\n"), 0o644))
	single := filepath.Join(t.TempDir(), "one")
	require.NoError(t, os.WriteFile(single, []byte("single file\n"), 0o600))

	tests := []struct {
		name string
		cfg  Config
		want int
	}{
		{"script exit 3", Config{Script: "echo from script; exit 3"}, 3},
		{"go binary exit 3", Config{Binary: bin, Args: []string{"-test.run", "^TestGuestExitCode$"},
			Env: map[string]string{"VMTEST_EXIT_CODE": "3"}}, 3},
		{"script reads virtio disk and files", Config{Disks: []string{disk},
			Files: map[string]string{"/data/tree": tree, "/etc/one": single},
			Script: `set -e
grep -qx 'tree file' /data/tree/sub/f.txt
grep -qx 'single file' /etc/one
head -c 17 /dev/vda | grep -q VMTEST-DISK-MAGIC
exit 7`}, 7},
		{"all module sets load", Config{Sets: []ModuleSet{SetISCSI, SetXFS, SetMultipath, SetLoop, SetLIO},
			Script: `set -e
mkdir -p /sys/kernel/config/target/iscsi
grep -qw xfs /proc/filesystems
grep -qw ext4 /proc/filesystems
[ -e /dev/mapper/control ]
[ -e /dev/loop-control ]
[ -e /sys/class/iscsi_transport/tcp/handle ]
exit 0`}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			res, err := Run(ctx, tc.cfg)
			require.NoError(t, err)
			t.Logf("%s", res)
			assert.Equal(t, tc.want, res.ExitCode, "console:\n%s", res.Output)
			assert.Positive(t, res.Boot)
		})
	}
}

func TestTimeoutKillsGuest(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	g, err := Start(ctx, Config{Script: "echo SLEEPING; sleep 600"})
	require.NoError(t, err)
	defer g.Stop()
	require.NoError(t, g.WaitFor(ctx, "SLEEPING"))

	short, cancel2 := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel2()
	start := time.Now()
	res, err := g.Wait(short)
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.DeadlineExceeded), "%v", err)
	assert.Less(t, time.Since(start), 10*time.Second)
	require.NotNil(t, res)
	assert.Contains(t, res.Output, "SLEEPING")
	select {
	case <-g.Done():
	default:
		t.Fatal("qemu still running after the deadline")
	}
	assert.ErrorIs(t, syscall.Kill(g.Pid(), 0), syscall.ESRCH, "qemu process not reaped")
}

func TestRunDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Run(ctx, Config{Script: "sleep 600"})
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 10*time.Second)
}

func TestBackgroundGuestHostFwd(t *testing.T) {
	bin := BuildTest(t, ".")
	g := StartForTest(t, Config{Binary: bin, Args: []string{"-test.run", "^TestGuestEchoServer$", "-test.v"},
		HostFwd: []Fwd{{GuestPort: 7777}}})
	addr := g.HostAddr(7777)
	require.NotEmpty(t, addr)
	assert.Empty(t, g.HostAddr(1234))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	require.NoError(t, g.WaitFor(ctx, "ECHO-READY"))

	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(time.Minute)))
	_, err = fmt.Fprintf(c, "ping\n")
	require.NoError(t, err)
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "echo: ping\n", line)

	res, err := g.Wait(ctx)
	require.NoError(t, err)
	assert.Equal(t, 0, res.ExitCode, res.Output)
	require.NoError(t, g.Stop())
	assert.ErrorIs(t, syscall.Kill(g.Pid(), 0), syscall.ESRCH)
}

func TestStopRunningGuest(t *testing.T) {
	g, err := Start(t.Context(), Config{Script: "sleep 600"})
	require.NoError(t, err)
	pid := g.Pid()
	require.NoError(t, g.Stop())
	require.NoError(t, g.Stop()) // idempotent
	assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH)
	_, err = os.Stat(g.tmp)
	assert.True(t, os.IsNotExist(err), "per-run files left in %s", g.tmp)
}

func TestMissingPrerequisiteFailsLoudly(t *testing.T) {
	t.Setenv(EnvCache, t.TempDir())
	_, err := Run(t.Context(), Config{Script: "exit 0"})
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrNotInstalled)
	assert.Contains(t, err.Error(), DepsCommand)
}
