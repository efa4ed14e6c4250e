//go:build linux

package vmtest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// GuestTag is the build tag of guest-only test files; BuildTest compiles
// with it.
const GuestTag = "vmguest"

// SeedData returns n bytes determined by seed: a guest test writes them
// through the kernel and the host, given the same seed, checks the
// target's backing file for them.
func SeedData(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// InGuest reports whether this process runs as a vmtest payload.
func InGuest() bool { return os.Getenv(EnvInGuest) == "1" }

// RequireGuest fails t (it does not skip) when called outside a vmtest
// guest: a guest-only test built with -tags vmguest and run on the host
// must not pass silently.
func RequireGuest(t testing.TB) {
	t.Helper()
	if !InGuest() {
		t.Fatalf("%s is a guest-only test (build tag %s): it runs inside the qemu guest through its host-side wrapper (vmtest.RunTestInGuest), not directly", t.Name(), GuestTag)
	}
}

// BuildTest compiles the test binary of the package in pkgDir (relative to
// the current directory, "." for the calling package) as a static
// executable with -tags vmguest, and returns its path. The binary is built
// once per test process and package (it is kept in $TMPDIR/vmtest-bin,
// keyed by the process id; binaries of processes that have exited are
// removed).
func BuildTest(t testing.TB, pkgDir string) string {
	t.Helper()
	abs, err := filepath.Abs(pkgDir)
	if err != nil {
		t.Fatalf("vmtest: %v", err)
	}
	dir := filepath.Join(os.TempDir(), "vmtest-bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("vmtest: %v", err)
	}
	sum := sha256.Sum256([]byte(abs))
	out := filepath.Join(dir, fmt.Sprintf("%d-%x.test", os.Getpid(), sum[:8]))
	if st, err := os.Stat(out); err == nil && st.Mode().IsRegular() {
		return out
	}
	sweepTestBinaries(dir)
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	tmp := fmt.Sprintf("%s.tmp%d", out, time.Now().UnixNano())
	cmd := exec.Command(goBin, "test", "-c", "-tags", GuestTag, "-o", tmp, ".")
	cmd.Dir = abs
	cmd.Env = append(buildEnv(os.Environ()), "CGO_ENABLED=0")
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		t.Fatalf("vmtest: building the guest test binary of %s (CGO_ENABLED=0 go test -c -tags %s): %v\n%s", pkgDir, GuestTag, err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		t.Fatalf("vmtest: %v", err)
	}
	t.Logf("vmtest: built guest test binary of %s in %v", pkgDir, time.Since(start).Round(time.Millisecond))
	return out
}

// sweepTestBinaries removes binaries that BuildTest left for processes that
// no longer exist.
func sweepTestBinaries(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		pidStr, _, ok := strings.Cut(e.Name(), "-")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// buildEnv drops -race from GOFLAGS (it needs cgo) and any CGO_ENABLED.
func buildEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		switch {
		case strings.HasPrefix(kv, "CGO_ENABLED="):
			continue
		case strings.HasPrefix(kv, "GOFLAGS="):
			var keep []string
			for _, f := range strings.Fields(strings.TrimPrefix(kv, "GOFLAGS=")) {
				if f != "-race" && f != "--race" && f != "-race=true" {
					keep = append(keep, f)
				}
			}
			kv = "GOFLAGS=" + strings.Join(keep, " ")
		}
		out = append(out, kv)
	}
	return out
}

// RunTestInGuest runs the guest-only tests of the package in pkgDir that
// match the regular expression run, in a guest with the iSCSI initiator
// modules (SetISCSI) loaded and env added to their environment. It fails t
// when the guest exits non-zero, when no test matched, or when the guest
// does not report an exit code; the guest console goes to t.Log on failure
// (always with -v).
func RunTestInGuest(t *testing.T, pkgDir, run string, env map[string]string) *Result {
	t.Helper()
	return RunTestInGuestWith(t, pkgDir, run, Config{Env: env, Sets: []ModuleSet{SetISCSI}})
}

// RunTestInGuestWith is RunTestInGuest with a full Config; cfg.Binary and
// cfg.Script are ignored, cfg.Args are appended to the test binary's flags
// (e.g. "-test.timeout=5m").
func RunTestInGuestWith(t *testing.T, pkgDir, run string, cfg Config) *Result {
	t.Helper()
	if InGuest() {
		t.Fatalf("vmtest: RunTestInGuest called inside the guest: -test.run %q selected a host-side wrapper", run)
	}
	if _, err := regexp.Compile(run); err != nil {
		t.Fatalf("vmtest: bad -test.run expression %q: %v", run, err)
	}
	cfg.Binary = BuildTest(t, pkgDir)
	cfg.Script = ""
	cfg.Args = append([]string{"-test.run", run, "-test.v", "-test.count=1"}, cfg.Args...)
	ctx := t.Context()
	if dl, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-5*time.Second))
		defer cancel()
	}
	res, err := Run(ctx, cfg)
	if res != nil {
		logGuestTests(t, res)
	}
	failed := false
	switch {
	case err != nil:
		failed = true
		t.Errorf("vmtest: guest run of %s -test.run %q: %v", pkgDir, run, err)
	case res.ExitCode != 0:
		failed = true
		t.Errorf("vmtest: guest tests %q of %s exited %d", run, pkgDir, res.ExitCode)
	case strings.Contains(res.Output, "testing: warning: no tests to run") || !strings.Contains(res.Output, "=== RUN"):
		failed = true
		t.Errorf("vmtest: no guest test of %s matched -test.run %q (guest tests need the build tag %q)", pkgDir, run, GuestTag)
	}
	if res != nil && (failed || testing.Verbose()) {
		t.Logf("vmtest: guest console:\n%s", res.Output)
	}
	return res
}

// logGuestTests logs the guest tests' result lines and the timings.
func logGuestTests(t *testing.T, res *Result) {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(res.Output, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "--- ") {
			lines = append(lines, l)
		}
	}
	t.Logf("vmtest: guest ready after %v, powered off after %v; guest results: %s",
		res.Boot.Round(time.Millisecond), res.Elapsed.Round(time.Millisecond), strings.Join(lines, "; "))
}

// StartForTest starts a background guest bound to t: it is killed when the
// test ends (its console logged if the test failed), and a start failure
// fails t.
func StartForTest(t testing.TB, cfg Config) *Guest {
	t.Helper()
	g, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("vmtest: start guest: %v", err)
	}
	t.Cleanup(func() {
		g.Stop()
		if t.Failed() {
			t.Logf("vmtest: guest console:\n%s", g.Output())
		}
	})
	return g
}

// String describes the result briefly.
func (r *Result) String() string {
	return fmt.Sprintf("exit %d after %v (ready after %v)", r.ExitCode, r.Elapsed.Round(time.Millisecond), r.Boot.Round(time.Millisecond))
}
