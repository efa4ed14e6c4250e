package volume

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// mkfsTool is how to make one filesystem type.
type mkfsTool struct {
	bin  string
	args []string // before the device; safe only after our own probe said blank
	pkg  string   // Debian package that ships bin
}

// mkfsTools are the fsTypes with known arguments and packages; any other
// fsType is made with mkfs.<fsType> and no arguments, as kubelet does, when
// that program is installed. mke2fs needs -F because the target is a whole
// disk, not a partition (it would ask); that is safe only because the
// device was probed blank first. mkfs.xfs and mkfs.btrfs get no -f: they
// refuse on their own if they find a signature, a second safety net.
var mkfsTools = map[string]mkfsTool{
	"ext4":  {bin: "mkfs.ext4", args: []string{"-F", "-m0"}, pkg: "e2fsprogs"},
	"ext3":  {bin: "mkfs.ext3", args: []string{"-F", "-m0"}, pkg: "e2fsprogs"},
	"ext2":  {bin: "mkfs.ext2", args: []string{"-F", "-m0"}, pkg: "e2fsprogs"},
	"xfs":   {bin: "mkfs.xfs", pkg: "xfsprogs"},
	"btrfs": {bin: "mkfs.btrfs", pkg: "btrfs-progs"},
	"vfat":  {bin: "mkfs.vfat", pkg: "dosfstools"},
	"f2fs":  {bin: "mkfs.f2fs", pkg: "f2fs-tools"},
	"exfat": {bin: "mkfs.exfat", pkg: "exfatprogs"},
	"ntfs":  {bin: "mkfs.ntfs", pkg: "ntfs-3g"},
}

// maxFSTypeLen bounds Volume.FSType.
const maxFSTypeLen = 32

// toolFor returns how to make fsType: the known entry, or mkfs.<fsType>.
func toolFor(fsType string) mkfsTool {
	if t, ok := mkfsTools[fsType]; ok {
		return t
	}
	return mkfsTool{bin: "mkfs." + fsType, pkg: "the package that provides mkfs." + fsType}
}

// checkFSType checks that fsType can name a mkfs.<fsType> program: lower
// case letters and digits only, at most maxFSTypeLen.
func checkFSType(fsType string) error {
	if len(fsType) > maxFSTypeLen {
		return fmt.Errorf("%q longer than %d bytes", fsType, maxFSTypeLen)
	}
	for _, r := range fsType {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			return fmt.Errorf("%q: only lower-case letters and digits (the name of a mkfs.<fsType> program)", fsType)
		}
	}
	return nil
}

// ErrToolMissing is matched (errors.Is) by *ToolMissingError.
var ErrToolMissing = errors.New("required tool not installed")

// ToolMissingError says which program is needed and where it comes from.
type ToolMissingError struct {
	Tool, Package string
}

func (e *ToolMissingError) Error() string {
	return fmt.Sprintf("%s not found in PATH: install %s", e.Tool, e.Package)
}

// Is matches ErrToolMissing.
func (e *ToolMissingError) Is(target error) bool { return target == ErrToolMissing }

// ErrNotBlank is matched (errors.Is) by *NotBlankError.
var ErrNotBlank = errors.New("device is not blank")

// NotBlankError is returned when a device holds something other than the
// requested filesystem (another filesystem, a partition table, LVM, swap...).
// The device was left untouched.
type NotBlankError struct {
	Device     string
	Want       string // requested fsType
	Signatures []Signature
}

func (e *NotBlankError) Error() string {
	s := make([]string, len(e.Signatures))
	for i, sig := range e.Signatures {
		s[i] = sig.String()
	}
	return fmt.Sprintf("%s: refusing to format or mount as %s: found %s", e.Device, e.Want, strings.Join(s, ", "))
}

// Is matches ErrNotBlank.
func (e *NotBlankError) Is(target error) bool { return target == ErrNotBlank }

// ErrReadOnlyBlank is returned when a read-only volume has no filesystem:
// it is never formatted.
var ErrReadOnlyBlank = errors.New("read-only volume has no filesystem; not formatting")

// compatibleFS says whether an existing filesystem can be mounted as want.
func compatibleFS(have, want string) bool {
	if have == want {
		return true
	}
	// The ext4 driver mounts ext2 and ext3.
	return want == "ext4" && (have == "ext2" || have == "ext3")
}

// prepareFilesystem makes sure dev holds a filesystem of type fsType, and
// formats it only when every probe says it is blank and readOnly is false.
// It returns the filesystem type to mount and whether it formatted.
func prepareFilesystem(ctx context.Context, dev, fsType string, readOnly bool) (string, bool, error) {
	sigs, err := ProbeDevice(ctx, dev)
	if err != nil {
		return "", false, err
	}
	if len(sigs) > 0 {
		// Mount only if every signature is a filesystem the requested type
		// can mount; anything else (partition table, LVM, swap, a different
		// filesystem, a probe disagreement) is refused untouched.
		for _, s := range sigs {
			if s.Kind != "filesystem" || !compatibleFS(s.Type, fsType) {
				return "", false, &NotBlankError{Device: dev, Want: fsType, Signatures: sigs}
			}
		}
		return fsType, false, nil
	}
	if readOnly {
		return "", false, fmt.Errorf("%s: %w", dev, ErrReadOnlyBlank)
	}
	if err := mkfs(ctx, dev, fsType); err != nil {
		return "", false, err
	}
	return fsType, true, nil
}

// mkfs formats dev. Callers must have probed dev blank.
func mkfs(ctx context.Context, dev, fsType string) error {
	if err := checkFSType(fsType); err != nil {
		return fmt.Errorf("mkfs: fsType %w", err)
	}
	t := toolFor(fsType)
	bin, err := exec.LookPath(t.bin)
	if err != nil {
		return &ToolMissingError{Tool: t.bin, Package: t.pkg}
	}
	args := append(append([]string{}, t.args...), dev)
	cmd := exec.CommandContext(ctx, bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", t.bin, strings.Join(args, " "), err, strings.TrimSpace(lastLines(out.String(), 5)))
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
