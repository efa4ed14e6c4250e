//go:build linux

package vmtest

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// HostTools returns Config.Files entries that copy host programs (found on
// PATH, placed in the guest's /usr/sbin) and every shared library ldd lists
// for them into the guest, whose userland is busybox only. Tests use it for
// mkfs.ext4, mkfs.xfs, dmsetup or iscsistart. It fails tb when a tool is
// missing, naming it.
func HostTools(tb testing.TB, tools ...string) map[string]string {
	tb.Helper()
	files := map[string]string{}
	for _, tool := range tools {
		p, err := exec.LookPath(tool)
		if err != nil {
			tb.Fatalf("vmtest: %s is not installed on the host (make deps installs it): %v", tool, err)
		}
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			tb.Fatalf("vmtest: %s: %v", p, err)
		}
		files["/usr/sbin/"+tool] = real
		out, err := exec.Command("ldd", p).Output()
		if err != nil {
			tb.Fatalf("vmtest: ldd %s: %v", p, err)
		}
		for _, lib := range lddPaths(string(out)) {
			r, err := filepath.EvalSymlinks(lib)
			if err != nil {
				tb.Fatalf("vmtest: %s: %v", lib, err)
			}
			files[lib] = r
		}
	}
	return files
}

// lddPaths returns the absolute library paths in ldd's output
// ("libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and
// "/lib64/ld-linux-x86-64.so.2 (0x...)").
func lddPaths(out string) []string {
	var libs []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			libs = append(libs, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			libs = append(libs, f[0])
		}
	}
	return libs
}
