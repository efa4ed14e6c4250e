//go:build linux

package vmtest

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Environment variables and defaults of the kernel cache.
const (
	// EnvCache overrides DefaultCacheDir.
	EnvCache = "GOSAN_VM_CACHE"
	// DefaultCacheDir is where scripts/vm-deps.sh unpacks Debian's kernel.
	DefaultCacheDir = "/var/cache/gosan-iscsi/kernel"
	// DepsCommand is what installs every prerequisite of this package
	// (run from the repository root, as root).
	DepsCommand = "bash scripts/vm-deps.sh"
)

// ErrNotInstalled is wrapped by every error about a missing prerequisite
// (qemu, busybox-static, xz, the cached kernel). Its message says to run
// DepsCommand.
var ErrNotInstalled = errors.New("vmtest prerequisite missing: run `" + DepsCommand + "` from the repository root as root")

func missing(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrNotInstalled)
}

// Kernel is one cached Debian kernel: Dir holds boot/ and lib/modules/ as
// unpacked from the linux-image package.
type Kernel struct {
	Version string // e.g. 6.1.0-56-amd64
	Dir     string // <cache>/<Version>
}

// CacheDir returns the kernel cache folder ($GOSAN_VM_CACHE or DefaultCacheDir).
func CacheDir() string {
	if d := os.Getenv(EnvCache); d != "" {
		return d
	}
	return DefaultCacheDir
}

// FindKernel returns the kernel named by <cache>/current, checking that its
// bzImage and modules are there.
func FindKernel() (*Kernel, error) {
	cache := CacheDir()
	b, err := os.ReadFile(filepath.Join(cache, "current"))
	if err != nil {
		return nil, missing("no cached guest kernel in %s (%v)", cache, err)
	}
	ver := strings.TrimSpace(string(b))
	if ver == "" || strings.ContainsAny(ver, "/\x00") {
		return nil, missing("%s/current is malformed (%q)", cache, ver)
	}
	k := &Kernel{Version: ver, Dir: filepath.Join(cache, ver)}
	if _, err := os.Stat(k.BzImage()); err != nil {
		return nil, missing("guest kernel image: %v", err)
	}
	if _, err := os.Stat(filepath.Join(k.ModulesDir(), "kernel")); err != nil {
		return nil, missing("guest kernel modules: %v", err)
	}
	return k, nil
}

// BzImage is the compressed kernel as shipped (boot/vmlinuz-<ver>).
func (k *Kernel) BzImage() string { return filepath.Join(k.Dir, "boot", "vmlinuz-"+k.Version) }

// ModulesDir is lib/modules/<ver>.
func (k *Kernel) ModulesDir() string { return filepath.Join(k.Dir, "lib", "modules", k.Version) }

// VmlinuxPath is where the uncompressed ELF kernel is cached.
func (k *Kernel) VmlinuxPath() string { return filepath.Join(k.Dir, "vmlinux") }

// Vmlinux returns the uncompressed ELF kernel (booted directly through PVH,
// which skips the firmware and the decompressor), extracting it from the
// bzImage on first use.
func (k *Kernel) Vmlinux(ctx context.Context) (string, error) {
	p := k.VmlinuxPath()
	if isELF(p) {
		return p, nil
	}
	bz, err := os.ReadFile(k.BzImage())
	if err != nil {
		return "", fmt.Errorf("vmtest: %w", err)
	}
	elfData, err := extractVmlinux(ctx, bz)
	if err != nil {
		return "", err
	}
	if err := writeFileAtomic(p, elfData, 0o644); err != nil {
		return "", err
	}
	return p, nil
}

func isELF(p string) bool {
	f, err := elf.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	return f.Machine == elf.EM_X86_64
}

// Compression magics of a bzImage payload.
const (
	magicGzip = "\x1f\x8b\x08"
	magicXZ   = "\xfd7zXZ\x00"
	magicZstd = "\x28\xb5\x2f\xfd"
	magicLZMA = "\x5d\x00\x00"
)

// bzPayload returns the compressed kernel inside a bzImage, located through
// the x86 boot protocol header (setup_sects, payload_offset, payload_length).
func bzPayload(bz []byte) ([]byte, error) {
	if len(bz) < 0x250 || string(bz[0x202:0x206]) != "HdrS" {
		return nil, errors.New("vmtest: not a bzImage (no HdrS header)")
	}
	if binary.LittleEndian.Uint16(bz[0x206:]) < 0x208 {
		return nil, errors.New("vmtest: bzImage boot protocol older than 2.08 has no payload fields")
	}
	setup := int(bz[0x1f1])
	if setup == 0 {
		setup = 4
	}
	off := uint64(setup+1)*512 + uint64(binary.LittleEndian.Uint32(bz[0x248:]))
	n := uint64(binary.LittleEndian.Uint32(bz[0x24c:]))
	if off+n > uint64(len(bz)) || n == 0 {
		return nil, fmt.Errorf("vmtest: bzImage payload [%d,+%d) outside the %d-byte file", off, n, len(bz))
	}
	return bz[off : off+n], nil
}

// extractVmlinux decompresses a bzImage's payload: gzip in-process, xz, lzma
// and zstd through the xz/zstd tools (Debian's kernels are xz).
func extractVmlinux(ctx context.Context, bz []byte) ([]byte, error) {
	p, err := bzPayload(bz)
	if err != nil {
		return nil, err
	}
	var out []byte
	switch {
	case bytes.HasPrefix(p, []byte(magicGzip)):
		zr, err := gzip.NewReader(bytes.NewReader(p))
		if err != nil {
			return nil, fmt.Errorf("vmtest: vmlinux gzip: %w", err)
		}
		zr.Multistream(false)
		out, err = io.ReadAll(io.LimitReader(zr, 1<<30))
		if err != nil {
			return nil, fmt.Errorf("vmtest: vmlinux gzip: %w", err)
		}
	case bytes.HasPrefix(p, []byte(magicXZ)):
		out, err = pipeTool(ctx, p, "xz", "-dc", "--single-stream")
	case bytes.HasPrefix(p, []byte(magicLZMA)):
		out, err = pipeTool(ctx, p, "xz", "-dc", "--format=lzma")
	case bytes.HasPrefix(p, []byte(magicZstd)):
		out, err = pipeTool(ctx, p, "zstd", "-dc")
	default:
		n := min(len(p), 8)
		return nil, fmt.Errorf("vmtest: unknown bzImage compression (payload starts %x)", p[:n])
	}
	if err != nil {
		return nil, err
	}
	if len(out) < 4 || string(out[:4]) != "\x7fELF" {
		return nil, errors.New("vmtest: decompressed bzImage payload is not an ELF file")
	}
	return out, nil
}

func pipeTool(ctx context.Context, in []byte, tool string, args ...string) ([]byte, error) {
	bin, err := exec.LookPath(tool)
	if err != nil {
		return nil, missing("%s not found", tool)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil && len(out) == 0 {
		return nil, fmt.Errorf("vmtest: %s %s: %w: %s", tool, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	// Trailing bytes after the stream (the appended size) make some tools
	// complain after writing everything: the ELF check decides.
	return out, nil
}

// writeFileAtomic writes data next to p and renames it into place, so that
// concurrent test processes never see a partial file.
func writeFileAtomic(p string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("vmtest: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-"+filepath.Base(p)+"-*")
	if err != nil {
		return fmt.Errorf("vmtest: cache not writable: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("vmtest: %w", err)
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("vmtest: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("vmtest: %w", err)
	}
	if err := os.Rename(f.Name(), p); err != nil {
		return fmt.Errorf("vmtest: %w", err)
	}
	return nil
}

// checkTools reports missing host tools: qemu and a static busybox.
func checkTools() (qemu string, err error) {
	qemu, err = exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return "", missing("qemu-system-x86_64 not found (Debian package qemu-system-x86)")
	}
	f, err := elf.Open(busyboxPath)
	if err != nil {
		return "", missing("%s: %v (Debian package busybox-static)", busyboxPath, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", missing("%s is dynamically linked (install busybox-static)", busyboxPath)
		}
	}
	return qemu, nil
}

const busyboxPath = "/bin/busybox"
