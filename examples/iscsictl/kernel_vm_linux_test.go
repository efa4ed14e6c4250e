package main

// Host side of the CLI's guest tests: tgtd runs here, a qemu guest with
// Debian's kernel (internal/testenv/vmtest) runs kernel_guest_test.go, which calls
// run(...) for attach/detach/sessions/supervise and the volume commands.

import (
	"encoding/json"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gosan/iscsi/internal/testenv/tgtd"
	"github.com/gosan/iscsi/internal/testenv/vmtest"
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
		Drop: net.JoinHostPort(vmtest.HostIP, strconv.Itoa(srv.ServeDrops(t))),
	}
	b, err := json.Marshal(env)
	require.NoError(t, err)
	res := vmtest.RunTestInGuestWith(t, ".", "^TestGuestCLI(Kernel|Volume)$", vmtest.Config{
		Env:   map[string]string{cliEnvVar: string(b)},
		Sets:  []vmtest.ModuleSet{vmtest.SetISCSI},
		Files: vmtest.HostTools(t, "mkfs.ext4"),
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
	require.True(t, string(got[:cliDataLen]) == string(vmtest.SeedData(env.Seed, cliDataLen)),
		"tgtd's backing file holds the bytes the guest wrote through the attached device")
	require.True(t, string(got[cliDataLen:]) == string(vmtest.SeedData(env.Seed+1, cliDataLen)),
		"tgtd's backing file holds the bytes written after supervise recovered the dropped connection")

	b2, err := os.ReadFile(fix.MultiLUN.LUNs[1].Path)
	require.NoError(t, err)
	require.True(t, string(b2[1<<20:1<<20+64<<10]) == string(vmtest.SeedData(env.Seed+2, 64<<10)),
		"tgtd's backing file holds the bytes written through the published block volume")
}
