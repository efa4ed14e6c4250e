//go:build linux

package tgtd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// ErrExists matches (errors.Is) an AdminError for an object that already
// exists (tgtadm exit 22 "... already exists").
var ErrExists = errors.New("tgtadm: already exists")

// ErrNotFound matches (errors.Is) an AdminError for a missing target,
// session, connection, account or LUN ("can't find ...").
var ErrNotFound = errors.New("tgtadm: not found")

// AdminError is a failed tgtadm command. Args has secrets replaced by "***".
type AdminError struct {
	Args     []string
	ExitCode int
	Output   string
	Err      error // the exec error (exit status, context deadline, ...)
}

func (e *AdminError) Error() string {
	out := strings.TrimSpace(e.Output)
	if out == "" {
		out = "(no output)"
	}
	return fmt.Sprintf("tgtadm %s: exit %d: %s", strings.Join(e.Args, " "), e.ExitCode, out)
}

func (e *AdminError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrExists) and errors.Is(err, ErrNotFound) work.
func (e *AdminError) Is(target error) bool {
	switch target {
	case ErrExists:
		return strings.Contains(e.Output, "already exist")
	case ErrNotFound:
		return strings.Contains(e.Output, "can't find") || strings.Contains(e.Output, "No such")
	}
	return false
}

// redact replaces the value after --password (and -w) by "***".
func redact(args []string) []string {
	out := append([]string(nil), args...)
	for i := 0; i+1 < len(out); i++ {
		if out[i] == "--password" || out[i] == "-w" {
			out[i+1] = "***"
		}
	}
	return out
}

// Admin runs `tgtadm -C N [--lld iscsi] ARGS...` and returns its standard
// output. --lld iscsi is added unless ARGS select --mode sys/system. The
// command is not recorded for Restart (use the typed helpers for that).
func (s *Server) Admin(ctx context.Context, args ...string) (string, error) {
	return s.admin(ctx, args...)
}

func (s *Server) admin(ctx context.Context, args ...string) (string, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, adminTimeout)
		defer cancel()
	}
	full := []string{"-C", strconv.Itoa(s.ctrl)}
	if !sysMode(args) {
		full = append(full, "--lld", "iscsi")
	}
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, s.tgtadm, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.DebugContext(ctx, "tgtadm", "args", redact(full), "err", err)
	}
	if err != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return stdout.String(), &AdminError{Args: redact(full), ExitCode: code,
			Output: strings.TrimSpace(stderr.String() + "\n" + stdout.String()), Err: err}
	}
	return stdout.String(), nil
}

func sysMode(args []string) bool {
	for i := 0; i+1 < len(args); i++ {
		if (args[i] == "--mode" || args[i] == "-m") && (args[i+1] == "sys" || args[i+1] == "system") {
			return true
		}
	}
	return false
}

// config runs a configuration command and records it for Restart.
func (s *Server) config(ctx context.Context, args ...string) error {
	if _, err := s.admin(ctx, args...); err != nil {
		return err
	}
	s.mu.Lock()
	s.replay = append(s.replay, args)
	s.mu.Unlock()
	return nil
}

func itoa(i int) string { return strconv.Itoa(i) }

// NewTarget creates target tid with name iqn.
func (s *Server) NewTarget(ctx context.Context, tid int, iqn string) error {
	if err := s.config(ctx, "--mode", "target", "--op", "new", "--tid", itoa(tid), "--targetname", iqn); err != nil {
		return err
	}
	s.mu.Lock()
	s.tids[tid] = true
	s.mu.Unlock()
	return nil
}

// DeleteTarget deletes target tid (with --force: also with sessions).
func (s *Server) DeleteTarget(ctx context.Context, tid int) error {
	if err := s.config(ctx, "--mode", "target", "--op", "delete", "--force", "--tid", itoa(tid)); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.tids, tid)
	s.mu.Unlock()
	return nil
}

// AddLUN adds LUN lun to target tid backed by the file backingFile
// (bstype rdwr). blockSize 0 keeps tgtd's default of 512.
func (s *Server) AddLUN(ctx context.Context, tid, lun int, backingFile string, blockSize int) error {
	args := []string{"--mode", "logicalunit", "--op", "new", "--tid", itoa(tid), "--lun", itoa(lun),
		"--backing-store", backingFile, "--bstype", "rdwr"}
	if blockSize != 0 {
		args = append(args, "--blocksize", itoa(blockSize))
	}
	return s.config(ctx, args...)
}

// AddNullLUN adds a LUN with no storage (bstype null): reads return zeros,
// writes are discarded. tgtd reports 1 TiB whatever size is; size only
// names the backing store ("null-<size>"), so pass 1<<40 to be explicit.
func (s *Server) AddNullLUN(ctx context.Context, tid, lun int, size int64) error {
	return s.config(ctx, "--mode", "logicalunit", "--op", "new", "--tid", itoa(tid), "--lun", itoa(lun),
		"--backing-store", "null-"+strconv.FormatInt(size, 10), "--bstype", "null")
}

// DeleteLUN removes LUN lun from target tid.
func (s *Server) DeleteLUN(ctx context.Context, tid, lun int) error {
	return s.config(ctx, "--mode", "logicalunit", "--op", "delete", "--tid", itoa(tid), "--lun", itoa(lun))
}

// BindAddress adds an address ACL to target tid ("ALL", an IP, or a CIDR).
// A target without any ACL rejects every login.
func (s *Server) BindAddress(ctx context.Context, tid int, addr string) error {
	return s.config(ctx, "--mode", "target", "--op", "bind", "--tid", itoa(tid), "--initiator-address", addr)
}

// BindInitiatorName adds an initiator-name ACL to target tid.
func (s *Server) BindInitiatorName(ctx context.Context, tid int, iqn string) error {
	return s.config(ctx, "--mode", "target", "--op", "bind", "--tid", itoa(tid), "--initiator-name", iqn)
}

// NewAccount creates a CHAP account. The password never appears in errors or logs.
func (s *Server) NewAccount(ctx context.Context, user, password string) error {
	return s.config(ctx, "--mode", "account", "--op", "new", "--user", user, "--password", password)
}

// BindAccount binds account user to target tid. outgoing=false: the target
// checks the initiator with it (one-way CHAP). outgoing=true: it is the
// target's own name/secret for mutual CHAP.
func (s *Server) BindAccount(ctx context.Context, tid int, user string, outgoing bool) error {
	args := []string{"--mode", "account", "--op", "bind", "--tid", itoa(tid), "--user", user}
	if outgoing {
		args = append(args, "--outgoing")
	}
	return s.config(ctx, args...)
}

// SetParam sets an iSCSI parameter of target tid (MaxRecvDataSegmentLength,
// HeaderDigest, DataDigest, MaxBurstLength, FirstBurstLength, InitialR2T,
// ImmediateData, ...). It applies to new sessions.
func (s *Server) SetParam(ctx context.Context, tid int, name, value string) error {
	return s.config(ctx, "--mode", "target", "--op", "update", "--tid", itoa(tid), "--name", name, "--value", value)
}

// Params returns the iSCSI parameters of target tid as tgtd reports them.
func (s *Server) Params(ctx context.Context, tid int) (map[string]string, error) {
	out, err := s.admin(ctx, "--mode", "target", "--op", "show", "--tid", itoa(tid))
	if err != nil {
		return nil, err
	}
	return ParseParams(out), nil
}

// AddPortal makes tgtd listen on one more portal ("ip:port") at run time.
func (s *Server) AddPortal(ctx context.Context, portal string) error {
	return s.config(ctx, "--mode", "portal", "--op", "new", "--param", "portal="+portal)
}

// DeleteConnection drops connection cid of session sid on target tid
// (fault injection). Unknown ids give an error matching ErrNotFound.
func (s *Server) DeleteConnection(ctx context.Context, tid int, sid uint64, cid int) error {
	_, err := s.admin(ctx, "--mode", "conn", "--op", "delete", "--tid", itoa(tid),
		"--sid", strconv.FormatUint(sid, 10), "--cid", itoa(cid))
	return err
}

// Show returns the raw text of `tgtadm --mode target --op show`.
func (s *Server) Show(ctx context.Context) (string, error) {
	return s.admin(ctx, "--mode", "target", "--op", "show")
}

// Targets parses Show.
func (s *Server) Targets(ctx context.Context) ([]Target, error) {
	out, err := s.Show(ctx)
	if err != nil {
		return nil, err
	}
	return ParseShow(out)
}

// Target returns the parsed state of target tid.
func (s *Server) Target(ctx context.Context, tid int) (*Target, error) {
	ts, err := s.Targets(ctx)
	if err != nil {
		return nil, err
	}
	for i := range ts {
		if ts[i].TID == tid {
			return &ts[i], nil
		}
	}
	return nil, fmt.Errorf("tgtd: target %d: %w", tid, ErrNotFound)
}

// Sessions lists the sessions (I_T nexus) of target tid with their
// connections, so a test can pick a sid/cid for DeleteConnection.
func (s *Server) Sessions(ctx context.Context, tid int) ([]Session, error) {
	t, err := s.Target(ctx, tid)
	if err != nil {
		return nil, err
	}
	return t.Sessions, nil
}

// CreateBackingFile creates a sparse file of size bytes in dir and returns
// its path. Names are backing-1.img, backing-2.img, ... (first free).
func CreateBackingFile(dir string, size int64) (string, error) {
	for i := 1; i < 1<<16; i++ {
		p := fmt.Sprintf("%s/backing-%d.img", dir, i)
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("tgtd: backing file: %w", err)
		}
		if err := f.Truncate(size); err != nil {
			f.Close()
			os.Remove(p)
			return "", fmt.Errorf("tgtd: backing file: %w", err)
		}
		if err := f.Close(); err != nil {
			return "", fmt.Errorf("tgtd: backing file: %w", err)
		}
		return p, nil
	}
	return "", errors.New("tgtd: backing file: no free name")
}
