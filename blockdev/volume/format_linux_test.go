package volume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	smallDisk = 64 << 20  // ext4, vfat, partition tables
	xfsDisk   = 320 << 20 // mkfs.xfs wants at least 300 MiB
	btrfsDisk = 256 << 20 // mkfs.btrfs wants at least 114 MiB
)

// diskSize is the smallest test disk mkfs accepts for fs.
func diskSize(fs string) int64 {
	switch fs {
	case "xfs":
		return xfsDisk
	case "btrfs":
		return btrfsDisk
	}
	return smallDisk
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	require.NoError(t, err, "%s %v: %s", name, args, out)
}

func writeAt(t *testing.T, dev string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(b, 0)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.NoError(t, f.Close())
}

// TestPrepareFilesystemRefuses writes a signature on a loop device and
// checks that preparing it for every fsType leaves it byte-for-byte intact.
func TestPrepareFilesystemRefuses(t *testing.T) {
	requirePrereqs(t, "mkfs.ext4", "mkfs.xfs", "mkfs.vfat", "sfdisk", "sgdisk", "blkid", "mkswap")
	tests := []struct {
		name  string
		size  int64
		setup func(t *testing.T, dev string)
		// mountable is the fsType that may use it as is ("" => none)
		mountable string
	}{
		{"ext4", smallDisk, func(t *testing.T, d string) { run(t, "mkfs.ext4", "-q", "-F", d) }, "ext4"},
		{"ext3", smallDisk, func(t *testing.T, d string) { run(t, "mkfs.ext3", "-q", "-F", d) }, "ext4"},
		{"xfs", xfsDisk, func(t *testing.T, d string) { run(t, "mkfs.xfs", "-q", d) }, "xfs"},
		{"vfat", smallDisk, func(t *testing.T, d string) { run(t, "mkfs.vfat", d) }, ""},
		{"swap", smallDisk, func(t *testing.T, d string) { run(t, "mkswap", d) }, ""},
		{"mbr handwritten", smallDisk, func(t *testing.T, d string) { writeAt(t, d, mbrImage()[:4096]) }, ""},
		{"gpt handwritten 512", smallDisk, func(t *testing.T, d string) { writeAt(t, d, gptImage(512, true)[:8192]) }, ""},
		{"gpt handwritten 4096", smallDisk, func(t *testing.T, d string) { writeAt(t, d, gptImage(4096, false)[:8192]) }, ""},
		{"lvm2 label", smallDisk, func(t *testing.T, d string) {
			writeAt(t, d, img(map[int]string{512: "LABELONE", 512 + 0x18: "LVM2 001"})[:4096])
		}, ""},
		{"sfdisk dos", smallDisk, func(t *testing.T, d string) {
			cmd := exec.Command("sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", d)
			cmd.Stdin = stringsReader("label: dos\n,16M,L\n")
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
		}, ""},
		{"sgdisk gpt", smallDisk, func(t *testing.T, d string) { run(t, "sgdisk", "-n", "1:2048:+8M", d) }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dev := newLoopDev(t, tc.size)
			tc.setup(t, dev)
			before := hashHead(t, dev, 1<<20)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			sigs, err := ProbeDevice(ctx, dev)
			require.NoError(t, err)
			require.NotEmpty(t, sigs, "no signature found")
			for _, fs := range []string{"ext4", "xfs"} {
				for _, ro := range []bool{false, true} {
					got, formatted, err := prepareFilesystem(ctx, dev, fs, ro)
					assert.False(t, formatted, "%s formatted as %s", tc.name, fs)
					if compatibleFS(tc.mountable, fs) && tc.mountable != "" {
						require.NoError(t, err)
						assert.Equal(t, fs, got)
					} else {
						require.ErrorIs(t, err, ErrNotBlank, "fs %s ro %v", fs, ro)
						var nb *NotBlankError
						require.ErrorAs(t, err, &nb)
						assert.Equal(t, dev, nb.Device)
					}
				}
			}
			assert.Equal(t, before, hashHead(t, dev, 1<<20), "device changed")
		})
	}
}

func TestPrepareFilesystemFormatsBlank(t *testing.T) {
	requirePrereqs(t, "mkfs.ext4", "mkfs.xfs", "mkfs.btrfs", "blkid")
	for _, fs := range []string{"ext4", "xfs", "ext3", "btrfs"} {
		t.Run(fs, func(t *testing.T) {
			dev := newLoopDev(t, diskSize(fs))
			ctx := context.Background()

			// Read-only and blank: never formatted.
			_, formatted, err := prepareFilesystem(ctx, dev, fs, true)
			require.ErrorIs(t, err, ErrReadOnlyBlank)
			assert.False(t, formatted)
			sigs, err := ProbeDevice(ctx, dev)
			require.NoError(t, err)
			require.Empty(t, sigs)

			got, formatted, err := prepareFilesystem(ctx, dev, fs, false)
			require.NoError(t, err)
			assert.True(t, formatted)
			assert.Equal(t, fs, got)
			sigs, err = ProbeDevice(ctx, dev)
			require.NoError(t, err)
			require.NotEmpty(t, sigs)
			for _, s := range sigs {
				assert.Equal(t, fs, s.Type, "%v", s)
			}

			// Second time: found, not formatted again.
			before := hashHead(t, dev, 1<<20)
			_, formatted, err = prepareFilesystem(ctx, dev, fs, false)
			require.NoError(t, err)
			assert.False(t, formatted)
			assert.Equal(t, before, hashHead(t, dev, 1<<20))
		})
	}
}

func TestMkfsToolMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	err := mkfs(context.Background(), "/dev/null", "xfs")
	require.ErrorIs(t, err, ErrToolMissing)
	var tm *ToolMissingError
	require.True(t, errors.As(err, &tm))
	assert.Equal(t, "xfsprogs", tm.Package)
	assert.Contains(t, err.Error(), "install xfsprogs")

	// Any other fsType needs mkfs.<fsType>.
	err = mkfs(context.Background(), "/dev/null", "zzfs")
	require.True(t, errors.As(err, &tm))
	assert.Equal(t, "mkfs.zzfs", tm.Tool)
	require.Error(t, mkfs(context.Background(), "/dev/null", "../../bin/true"))
}

// TestBtrfsNeverOverSignature: a device with ext4 on it is not formatted
// as btrfs, by our probe and by mkfs.btrfs itself (no -f).
func TestBtrfsNeverOverSignature(t *testing.T) {
	requirePrereqs(t, "mkfs.ext4", "mkfs.btrfs", "blkid")
	dev := newLoopDev(t, btrfsDisk)
	run(t, "mkfs.ext4", "-q", "-F", dev)
	before := hashHead(t, dev, 1<<20)
	_, _, err := prepareFilesystem(context.Background(), dev, "btrfs", false)
	require.ErrorIs(t, err, ErrNotBlank)
	require.Error(t, mkfs(context.Background(), dev, "btrfs"), "mkfs.btrfs without -f formatted over ext4")
	assert.Equal(t, before, hashHead(t, dev, 1<<20))
}

// corruptExt4 makes an ext4 image at path with one file, then damages it:
// repairable gives the file a wrong link count (fsck -a fixes it, exit 1),
// otherwise the root inode is cleared (fsck -a gives up, exit 4).
func corruptExt4(t *testing.T, path string, repairable bool) {
	t.Helper()
	newSparse(t, path, smallDisk)
	run(t, "mkfs.ext4", "-q", "-F", path)
	run(t, "debugfs", "-w", "-R", "write /etc/hostname f", path)
	if repairable {
		run(t, "debugfs", "-w", "-R", "sif f links_count 5", path)
	} else {
		run(t, "debugfs", "-w", "-R", "clri <2>", path)
	}
	run(t, "debugfs", "-w", "-R", "ssv state 0", path) // not clean: fsck -a checks it
}

// TestStageFsck: Stage runs fsck -a before a read-write mount of an
// existing filesystem: it mounts after a repair and refuses a filesystem
// fsck -a cannot repair, leaving it unmounted.
func TestStageFsck(t *testing.T) {
	requirePrereqs(t, "mkfs.ext4", "blkid", "fsck", "debugfs")
	e := newEnv(t, smallDisk)
	var logBuf strings.Builder
	e.m.log = slog.New(slog.NewTextHandler(&logBuf, nil))
	backing := func(lun int) string {
		return filepath.Join(e.att.dir, fmt.Sprintf("%s-lun%d.img", strings.ReplaceAll(testIQN, ":", "_"), lun))
	}
	corruptExt4(t, backing(0), true)
	corruptExt4(t, backing(1), false)

	v := testVolume(0, "ext4")
	res, err := e.m.Stage(e.ctx, v)
	require.NoError(t, err, "a repairable filesystem mounts")
	assert.False(t, res.Formatted)
	assert.Contains(t, logBuf.String(), "fsck corrected errors")
	_, err = os.Stat(filepath.Join(res.GlobalPath, "f"))
	require.NoError(t, err)
	require.NoError(t, e.m.Unstage(e.ctx, res.GlobalPath))
	out, err := exec.Command("e2fsck", "-n", backing(0)).CombinedOutput()
	require.NoError(t, err, "still damaged after the repair: %s", out)

	v1 := testVolume(1, "ext4")
	g1, _ := e.m.GlobalPath(v1)
	_, err = e.m.Stage(e.ctx, v1)
	require.ErrorIs(t, err, ErrFilesystemErrors)
	var fe *FsckError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, 4, fe.ExitCode)
	assert.Zero(t, mountCount(t, g1), "mounted a filesystem fsck could not repair")
	sigs, err := ProbeDevice(e.ctx, fe.Device)
	require.NoError(t, err)
	require.NotEmpty(t, sigs, "the damaged filesystem is left in place, not formatted")

	require.NoError(t, e.m.Unstage(e.ctx, g1))

	// Read-only: no fsck (it would write), the filesystem is mounted as is.
	corruptExt4(t, backing(2), true)
	v2 := testVolume(2, "ext4")
	v2.ReadOnly = true
	res, err = e.m.Stage(e.ctx, v2)
	require.NoError(t, err)
	require.NoError(t, e.m.Unstage(e.ctx, res.GlobalPath))
	out, err = exec.Command("e2fsck", "-n", backing(2)).CombinedOutput()
	require.Error(t, err, "a read-only volume was repaired: %s", out)
	e.assertClean(t, res.GlobalPath)
}
