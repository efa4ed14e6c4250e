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

// mkfsTools are the supported fsTypes. mke2fs needs -F because the target is
// a whole disk, not a partition (it would ask); that is safe only because
// the device was probed blank first. mkfs.xfs gets no -f: it refuses on its
// own if it finds a signature, a second safety net.
var mkfsTools = map[string]mkfsTool{
	"ext4": {bin: "mkfs.ext4", args: []string{"-F", "-m0"}, pkg: "e2fsprogs"},
	"ext3": {bin: "mkfs.ext3", args: []string{"-F", "-m0"}, pkg: "e2fsprogs"},
	"ext2": {bin: "mkfs.ext2", args: []string{"-F", "-m0"}, pkg: "e2fsprogs"},
	"xfs":  {bin: "mkfs.xfs", pkg: "xfsprogs"},
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
	t, ok := mkfsTools[fsType]
	if !ok {
		return fmt.Errorf("mkfs: fsType %q not supported", fsType)
	}
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
