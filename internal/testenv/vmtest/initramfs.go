//go:build linux

package vmtest

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Guest network addresses (qemu user-mode networking).
const (
	// GuestIP is the guest's address on eth0.
	GuestIP = "10.0.2.15"
	// HostIP is the address at which the guest reaches the host's loopback:
	// a listener on the host's 127.0.0.1:PORT is HostIP:PORT in the guest.
	HostIP = "10.0.2.2"
)

// markerPrefix starts the line /init prints after the payload exits:
// "VMTEST-EXIT <nonce> <code>".
const markerPrefix = "VMTEST-EXIT "

// readyLine is printed by /init once modules and the network are up.
const readyLine = "vmtest: guest ready"

// initScript is the guest's /init (busybox sh). The per-run archive supplies
// /vmtest/nonce and /vmtest/run.sh.
const initScript = `#!/bin/sh
export PATH=/sbin:/bin:/usr/sbin:/usr/bin HOME=/root TMPDIR=/tmp
/bin/busybox --install -s 2>/dev/null
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs tmpfs /run
nonce=$(cat /vmtest/nonce)
rm -f /vmtest/nonce
finish() {
	sync
	printf '\nVMTEST-EXIT %s %s\n' "$nonce" "$1"
	printf '\nVMTEST-EXIT %s %s\n' "$nonce" "$1"
	poweroff -f
	sleep 10
}
while read -r m; do
	[ -n "$m" ] || continue
	if ! insmod "/lib/modules/vmtest/$m.ko"; then
		echo "vmtest: insmod $m failed"
		dmesg | tail -n 20
		finish 125
	fi
done < /etc/vmtest/modules
if [ -d /sys/kernel/config ]; then mount -t configfs configfs /sys/kernel/config; fi
ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
	if ! { ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up && ip route add default via 10.0.2.2; }; then
		echo "vmtest: network setup failed"
		finish 124
	fi
fi
echo "vmtest: guest ready"
cd /tmp
/bin/sh /vmtest/run.sh </dev/null
rc=$?
if [ "$rc" != 0 ]; then
	echo "---- vmtest: payload exit $rc; dmesg tail ----"
	dmesg | tail -n 40
fi
finish "$rc"
`

// baseFormat changes whenever the layout of the base archive changes, so
// that stale cached archives are not reused.
const baseFormat = "vmtest-base-1"

// baseArchive returns the path of the cached gzip'd base initramfs (busybox,
// /init, the resolved modules) for this kernel and module list, building it
// on first use. Its size is a multiple of 512 so that a second archive can be
// appended.
func baseArchive(ctx context.Context, k *Kernel, names []string) (string, []module, error) {
	ix, err := loadModuleIndex(k.ModulesDir())
	if err != nil {
		return "", nil, err
	}
	mods, err := ix.resolve(ctx, names)
	if err != nil {
		return "", nil, err
	}
	bb, err := os.Stat(busyboxPath)
	if err != nil {
		return "", nil, missing("%s: %v", busyboxPath, err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n%d %d\n", baseFormat, initScript, k.Version, bb.Size(), bb.ModTime().UnixNano())
	for _, m := range mods {
		fmt.Fprintf(h, "%s %s\n", m.Name, m.Path)
	}
	p := filepath.Join(k.Dir, "initramfs", "base-"+hex.EncodeToString(h.Sum(nil))[:20]+".cpio.gz")
	if st, err := os.Stat(p); err == nil && st.Size() > 0 && st.Size()%512 == 0 {
		return p, mods, nil
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	if err != nil {
		return "", nil, err
	}
	cw := newCPIOWriter(zw)
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "run",
		"root", "mnt", "etc/vmtest", "vmtest", "lib/modules/vmtest"} {
		if err := cw.Dir(d); err != nil {
			return "", nil, err
		}
	}
	if err := cw.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return "", nil, err
	}
	if err := cw.CharDev("dev/null", 0o666, 1, 3); err != nil {
		return "", nil, err
	}
	if err := addHostFile(cw, "bin/busybox", busyboxPath, 0o755); err != nil {
		return "", nil, err
	}
	if err := cw.Symlink("bin/sh", "busybox"); err != nil {
		return "", nil, err
	}
	if err := cw.File("init", 0o755, []byte(initScript)); err != nil {
		return "", nil, err
	}
	for name, content := range map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":  "root:x:0:\n",
		"etc/hosts":  "127.0.0.1 localhost\n::1 localhost\n",
	} {
		if err := cw.File(name, 0o644, []byte(content)); err != nil {
			return "", nil, err
		}
	}
	var order strings.Builder
	for _, m := range mods {
		data, err := readModule(ctx, m.Path)
		if err != nil {
			return "", nil, err
		}
		if err := cw.File("lib/modules/vmtest/"+m.Name+".ko", 0o644, data); err != nil {
			return "", nil, err
		}
		order.WriteString(m.Name + "\n")
	}
	if err := cw.File("etc/vmtest/modules", 0o644, []byte(order.String())); err != nil {
		return "", nil, err
	}
	if err := cw.Close(); err != nil {
		return "", nil, err
	}
	if err := zw.Close(); err != nil {
		return "", nil, err
	}
	if r := buf.Len() % 512; r != 0 {
		buf.Write(make([]byte, 512-r))
	}
	if err := writeFileAtomic(p, buf.Bytes(), 0o644); err != nil {
		return "", nil, err
	}
	return p, mods, nil
}

func addHostFile(cw *cpioWriter, guest, host string, perm uint32) error {
	f, err := os.Open(host)
	if err != nil {
		return fmt.Errorf("vmtest: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("vmtest: %w", err)
	}
	if perm == 0 {
		perm = uint32(st.Mode().Perm())
	}
	return cw.FileFrom(guest, perm, st.Size(), f)
}

// shQuote quotes s for a POSIX shell.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// validEnvName reports whether s can be exported by sh.
func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// runScript is /vmtest/run.sh: the environment and the payload's command line.
func runScript(cfg *Config) (string, error) {
	var b strings.Builder
	b.WriteString("export " + EnvInGuest + "=1\n")
	keys := make([]string, 0, len(cfg.Env))
	for k := range cfg.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !validEnvName(k) {
			return "", fmt.Errorf("vmtest: bad environment variable name %q", k)
		}
		b.WriteString("export " + k + "=" + shQuote(cfg.Env[k]) + "\n")
	}
	if cfg.Binary != "" {
		b.WriteString("exec /vmtest/payload")
	} else {
		b.WriteString("exec /bin/sh /vmtest/script.sh")
	}
	for _, a := range cfg.Args {
		b.WriteString(" " + shQuote(a))
	}
	b.WriteString("\n")
	return b.String(), nil
}

// writeRunArchive writes the uncompressed per-run archive: nonce, run.sh,
// the payload and cfg.Files.
func writeRunArchive(w io.Writer, cfg *Config, nonce string) error {
	cw := newCPIOWriter(w)
	cw.dirs["vmtest"] = true // in the base archive
	if err := cw.File("vmtest/nonce", 0o600, []byte(nonce)); err != nil {
		return err
	}
	rs, err := runScript(cfg)
	if err != nil {
		return err
	}
	if err := cw.File("vmtest/run.sh", 0o755, []byte(rs)); err != nil {
		return err
	}
	if cfg.Binary != "" {
		if err := addHostFile(cw, "vmtest/payload", cfg.Binary, 0o755); err != nil {
			return err
		}
	} else if err := cw.File("vmtest/script.sh", 0o755, []byte(cfg.Script)); err != nil {
		return err
	}
	guests := make([]string, 0, len(cfg.Files))
	for g := range cfg.Files {
		guests = append(guests, g)
	}
	sort.Strings(guests)
	for _, g := range guests {
		if err := addHostTree(cw, g, cfg.Files[g]); err != nil {
			return err
		}
	}
	return cw.Close()
}

// addHostTree copies a host file, or a directory recursively, to guest path g.
func addHostTree(cw *cpioWriter, g, host string) error {
	st, err := os.Stat(host)
	if err != nil {
		return fmt.Errorf("vmtest: Files[%q]: %w", g, err)
	}
	if !st.IsDir() {
		return addHostFile(cw, g, host, 0)
	}
	return filepath.WalkDir(host, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(host, p)
		if err != nil {
			return err
		}
		dst := path.Join(g, filepath.ToSlash(rel))
		if d.IsDir() {
			return cw.Dir(dst)
		}
		return addHostFile(cw, dst, p, 0)
	})
}
