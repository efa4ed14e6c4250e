//go:build linux

package tgtd

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const crashEnv = "GOSAN_TGTD_CRASH_CHILD"

// TestMain doubles as the child of TestNoLeakWhenTestProcessDies: with
// crashEnv set it starts tgtd, prints its control number, and dies without
// any cleanup, so only PR_SET_PDEATHSIG can stop tgtd.
func TestMain(m *testing.M) {
	mode := os.Getenv(crashEnv)
	if mode == "" {
		os.Exit(m.Run())
	}
	s, err := StartServer(context.Background(), Options{})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	fmt.Printf("CTRL %d\n", s.Control())
	os.Stdout.Sync()
	switch mode {
	case "exit":
		os.Exit(3)
	default:
		panic("boom")
	}
}

func TestNoLeakWhenTestProcessDies(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"exit", "panic"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), crashEnv+"="+mode)
			out, err := cmd.StdoutPipe()
			require.NoError(t, err)
			cmd.Stderr = nil
			require.NoError(t, cmd.Start())
			ctrl := 0
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if v, ok := strings.CutPrefix(sc.Text(), "CTRL "); ok {
					ctrl, err = strconv.Atoi(v)
					require.NoError(t, err)
				}
			}
			require.Error(t, cmd.Wait(), "child must die")
			require.NotZero(t, ctrl, "child started tgtd")
			assert.Eventually(t, func() bool { return len(Processes(ctrl)) == 0 }, 3*time.Second, 20*time.Millisecond,
				"tgtd -C %d must die with the test process", ctrl)
		})
	}
}
