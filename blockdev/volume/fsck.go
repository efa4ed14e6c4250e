package volume

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
)

// fsckUncorrected is fsck(8)'s exit bit for errors left uncorrected; the
// bits below it (1, 2) say errors were corrected, those above it that fsck
// itself failed.
const fsckUncorrected = 4

// ErrFilesystemErrors is matched (errors.Is) by *FsckError.
var ErrFilesystemErrors = errors.New("filesystem has errors fsck -a could not correct")

// FsckError is a Stage refused because `fsck -a` exited with 4 or more:
// errors it could not correct (4), an operational error (8), a usage
// error (16), ... The device was not mounted; repair it by hand.
type FsckError struct {
	Device   string
	FSType   string
	ExitCode int
	Output   string // fsck's last lines
}

func (e *FsckError) Error() string {
	return fmt.Sprintf("%s (%s): fsck -a exited %d, not mounting: %s", e.Device, e.FSType, e.ExitCode, e.Output)
}

// Is matches ErrFilesystemErrors.
func (e *FsckError) Is(target error) bool { return target == ErrFilesystemErrors }

// checkFilesystem runs `fsck -a dev` before a read-write mount of an
// existing filesystem, as mount-utils' checkAndRepairFilesystem does: exit
// 0 is clean, 1 and 2 are errors it corrected (logged), 4 and above refuse
// the mount (*FsckError). Without fsck, or without fsck.<fsType> (fsck
// would exit 8 for a type it has no checker for), the check is skipped
// with a warning, as mount-utils skips it without fsck.
func checkFilesystem(ctx context.Context, log *slog.Logger, dev, fsType string) error {
	bin, err := exec.LookPath("fsck")
	if err != nil {
		log.WarnContext(ctx, "fsck not found; mounting without a check", "device", dev)
		return nil
	}
	if _, err := exec.LookPath("fsck." + fsType); err != nil {
		log.WarnContext(ctx, "no fsck."+fsType+"; mounting without a check", "device", dev)
		return nil
	}
	cmd := exec.CommandContext(ctx, bin, "-a", dev)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &ee) || ee.ExitCode() < 0:
		return fmt.Errorf("fsck -a %s: %w", dev, err)
	case ee.ExitCode() < fsckUncorrected: // 1, 2 or both: corrected
		log.InfoContext(ctx, "fsck corrected errors", "device", dev, "fsType", fsType, "exit", ee.ExitCode(),
			"output", strings.TrimSpace(lastLines(out.String(), 5)))
		return nil
	default:
		return &FsckError{Device: dev, FSType: fsType, ExitCode: ee.ExitCode(), Output: strings.TrimSpace(lastLines(out.String(), 5))}
	}
}
