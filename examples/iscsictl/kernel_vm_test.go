package main

// Host side of the CLI's guest tests: tgtd runs here, a qemu guest with
// Debian's kernel (internal/vmtest) runs kernel_guest_test.go, which calls
// run(...) for attach/detach/sessions/supervise and the volume commands.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gosan/iscsi/internal/tgtd"
	"github.com/gosan/iscsi/internal/vmtest"
)

// cliEnvVar carries cliGuestEnv (JSON) into the guest.
const cliEnvVar = "ISCSICTL_GUEST_ENV"

// Where the guest writes through the attached device.
const (
	cliDataOff = 2 << 20
	cliDataLen = 1 << 20
)

type cliGuestEnv struct {
	Portal     string // tgtd as the guest reaches it
	PlainIQN   string
	PlainSize  int64
	MultiIQN   string
	CHAPIQN    string
	CHAPUser   string
	CHAPSecret string
	Seed       uint64
	PlainTID   int
	// Drop is a host helper: a line "drop <tid>" makes tgtd drop every
	// connection of target tid (the supervise test's fault).
	Drop string
}

// cliData is the deterministic data for seed.
func cliData(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// guestTools maps guest paths to host files for dynamically linked tools and
// their libraries (the guest is busybox only), as blockdev's guest tests do.
func guestTools(t *testing.T, tools ...string) map[string]string {
	t.Helper()
	files := map[string]string{}
	for _, tool := range tools {
		p, err := exec.LookPath(tool)
		require.NoError(t, err, "install %s on the host (apt-get install e2fsprogs)", tool)
		real, err := filepath.EvalSymlinks(p)
		require.NoError(t, err)
		files["/usr/sbin/"+tool] = real
		out, err := exec.Command("ldd", p).Output()
		require.NoError(t, err, "ldd %s", p)
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			var lib string
			switch {
			case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
				lib = f[2]
			case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
				lib = f[0]
			default:
				continue
			}
			r, err := filepath.EvalSymlinks(lib)
			require.NoError(t, err)
			files[lib] = r
		}
	}
	return files
}

// startDropHelper listens on host loopback; a guest line "drop <tid>" drops
// every connection of target tid in tgtd and answers "ok <n>".
func startDropHelper(t *testing.T, srv *tgtd.Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(time.Minute))
				line, err := bufio.NewReader(io.LimitReader(c, 64)).ReadString('\n')
				var tid int
				if err == nil {
					_, err = fmt.Sscanf(line, "drop %d", &tid)
				}
				if err != nil {
					fmt.Fprintf(c, "error %v\n", err)
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				sess, err := srv.Sessions(ctx, tid)
				if err != nil {
					fmt.Fprintf(c, "error %v\n", err)
					return
				}
				n := 0
				for _, s := range sess {
					for _, cn := range s.Connections {
						if srv.DeleteConnection(ctx, tid, s.SID, cn.CID) == nil {
							n++
						}
					}
				}
				fmt.Fprintf(c, "ok %d\n", n)
			}()
		}
	}()
	return net.JoinHostPort(vmtest.HostIP, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
}

// TestCLIInGuest runs attach → write → detach → sessions and the volume
// lifecycle (stage, two publishes, unpublish, unstage, stage again) in a
// guest, then checks tgtd's backing file for the bytes written through the
// kernel's device.
func TestCLIInGuest(t *testing.T) {
	srv, fix := tgtd.StartFixture(t)
	env := cliGuestEnv{
		Portal:   net.JoinHostPort(vmtest.HostIP, strconv.Itoa(srv.Port())),
		PlainIQN: fix.Plain.IQN, PlainSize: fix.Plain.LUNs[0].Size,
		MultiIQN: fix.MultiLUN.IQN,
		CHAPIQN:  fix.CHAP.IQN, CHAPUser: fix.CHAP.User, CHAPSecret: fix.CHAP.Secret,
		Seed: rand.Uint64(), PlainTID: fix.Plain.TID,
		Drop: startDropHelper(t, srv),
	}
	b, err := json.Marshal(env)
	require.NoError(t, err)
	res := vmtest.RunTestInGuestWith(t, ".", "^TestGuestCLI(Kernel|Volume)$", vmtest.Config{
		Env:   map[string]string{cliEnvVar: string(b)},
		Sets:  []vmtest.ModuleSet{vmtest.SetISCSI},
		Files: guestTools(t, "mkfs.ext4"),
		Args:  []string{"-test.timeout=15m"},
	})
	require.NotNil(t, res)
	require.Equal(t, 0, res.ExitCode)
	assert.Contains(t, res.Output, "--- PASS: TestGuestCLIKernel")
	assert.Contains(t, res.Output, "--- PASS: TestGuestCLIVolume")
	assert.NotContains(t, res.Output, fix.CHAP.Secret, "the guest console shows no secret")

	f, err := os.Open(fix.Plain.LUNs[0].Path)
	require.NoError(t, err)
	defer f.Close()
	got := make([]byte, 2*cliDataLen)
	_, err = f.ReadAt(got, cliDataOff)
	require.NoError(t, err)
	require.True(t, string(got[:cliDataLen]) == string(cliData(env.Seed, cliDataLen)),
		"tgtd's backing file holds the bytes the guest wrote through the attached device")
	require.True(t, string(got[cliDataLen:]) == string(cliData(env.Seed+1, cliDataLen)),
		"tgtd's backing file holds the bytes written after supervise recovered the dropped connection")

	b2, err := os.ReadFile(fix.MultiLUN.LUNs[1].Path)
	require.NoError(t, err)
	require.True(t, string(b2[1<<20:1<<20+64<<10]) == string(cliData(env.Seed+2, 64<<10)),
		"tgtd's backing file holds the bytes written through the published block volume")
}
