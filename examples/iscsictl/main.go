// Command iscsictl is the command-line face of github.com/gosan/iscsi: it
// discovers targets, lists LUNs, reads, writes and copies LUN data, and
// benchmarks a LUN, all from userspace with no iscsiadm or iscsid.
//
// Addresses use libiscsi's URL form:
//
//	iscsi://[user[%secret]@]host[:port]/target-iqn/lun[?target_user=U&target_password=P&header_digest=crc32c&data_digest=crc32c]
//
// Secrets can come from LIBISCSI_CHAP_USERNAME, LIBISCSI_CHAP_PASSWORD,
// LIBISCSI_CHAP_TARGET_USERNAME and LIBISCSI_CHAP_TARGET_PASSWORD instead, so
// they stay off the command line.
//
// Usage:
//
//	iscsictl discover [--json] iscsi://host[:port]
//	iscsictl luns [--json] iscsi://host[:port]/iqn
//	iscsictl read URL [--offset BYTES] [--length BYTES] [-o FILE]
//	iscsictl write URL [--offset BYTES] [-i FILE]
//	iscsictl copy SRC DST
//	iscsictl bench URL --rw read|write|randread|randwrite --bs 4k|64k|1M --qd N --duration 10s [--json]
//
// Kernel commands hand the session to Linux's iscsi_tcp (package blockdev):
// they need root, `modprobe iscsi_tcp` and no running iscsid.
//
//	iscsictl attach URL [--iface NAME] [--netdev DEV] [--json]
//	iscsictl detach URL|/dev/sdX [--iface NAME] [--json]
//	iscsictl sessions [--json]
//	iscsictl supervise [URL...] [--rescan 30s]
//
// attach prints the device path, or with --json an object with path,
// scsi_address, session, host, lun, size, target_name, portal, iface and
// new_session. detach flushes and deletes the device and logs the session out
// when it has no other device; detaching what is gone succeeds (JSON: path,
// session, logged_out, already_gone). sessions lists the kernel's sessions from
// sysfs (JSON: sid, host, target_name, portal, iface, initiator_name, isid, state,
// devices[lun, scsi_address, path]). The process exits after attach, so
// nothing re-logs-in a failed connection: I/O fails after the kernel's
// recovery timeout (120 s) unless `iscsictl supervise` runs. supervise adopts
// every session without CHAP it finds in sysfs at start, the sessions of the
// URLs given (with their CHAP credentials from the URL or LIBISCSI_CHAP_*),
// and without URLs every session that has a device (found again every
// --rescan), and re-logs-in failed connections until SIGINT or SIGTERM. The
// kernel does not keep CHAP secrets: a CHAP session is recovered only when
// its URL is given. While supervise runs, other kernel commands
// need --allow-other-daemon (it is a NETLINK_ISCSI listener, like iscsid).
//
// Volume commands run the Kubernetes iscsi volume plugin's lifecycle
// (package blockdev/volume) with global mounts under --root (default
// /var/lib/gosan-iscsi):
//
//	iscsictl stage VOLUME [--mount-options O,O...] [--json]
//	iscsictl publish VOLUME --target-path PATH [--read-only] [--fs-group GID] [--json]
//	iscsictl unpublish --target-path PATH [--json]
//	iscsictl unstage VOLUME|--global-path PATH [--json]
//
// VOLUME is --spec FILE, a JSON volume spec with the pod spec's iscsi: names
// (targetPortal, portals, iqn, lun, fsType, readOnly, chapAuthDiscovery,
// chapAuthSession, initiatorName, iscsiInterface, plus volumeMode and the
// PersistentVolume's mountOptions; the iscsi: block itself or an object
// holding it under "iscsi"; JSON only), and/or the
// flags --target-portal, --portal (repeatable), --iqn, --lun, --fs-type
// (default ext4), --read-only, --iface, --volume-mode filesystem|block,
// --chap-session, --chap-discovery, which override the file. CHAP secrets come
// from --secret FILE (a JSON map with the Kubernetes keys
// node.session.auth.username, ...password, ...username_in, ...password_in and
// node.sendtargets.auth.*, or a Kubernetes Secret object) or else from
// LIBISCSI_CHAP_*; only stage logs in and reads them. stage also takes
// --mount-options a,b,c (the PV's mountOptions for the global mount, e.g.
// noatime,commit=30; they override the file's; filesystem mode only).
// stage prints the global path, the device, the volume mode,
// the filesystem and whether this stage formatted it (JSON: global_path,
// device, devices, failed_portals, volume_mode, fs_type, formatted).
//
// discover --json prints target_name and portals for each target.
//
// `iscsictl CMD --help` (or -h, or `iscsictl help CMD`) prints that
// command's usage and flags and exits 0.
//
// Global flags (before or after the command): --initiator-name IQN, --verbose.
// Every error is one line on stderr and a non-zero exit status. Flags and
// output are a contract: scripts may rely on them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

const usage = `usage: iscsictl [--initiator-name IQN] [--verbose] COMMAND [ARGS]
       iscsictl COMMAND --help                   that command's usage and flags

commands:
  discover [--json] iscsi://host[:port]          list targets and portals
  luns [--json] iscsi://host[:port]/iqn          list every LUN of a target
  read URL [--offset N] [--length N] [-o FILE]   LUN bytes to stdout or FILE
  write URL [--offset N] [-i FILE]               stdin or FILE to the LUN, then SYNCHRONIZE CACHE
  copy SRC DST                                   LUN URL or local file on each side
  bench URL --rw MODE --bs SIZE --qd N --duration D [--json]
                                                 IOPS, MiB/s and latency percentiles
  session flags (the commands above): --timeout 30s (SCSI command timeout; then
  ABORT TASK, LUN RESET, reconnect, one retry), --tmf-timeout 10s, --login-timeout 15s,
  --replacement-timeout 2m0s, --nop-interval 10s, --nop-timeout 10s, --send-timeout 30s

kernel commands (root, modprobe iscsi_tcp, no iscsid; the kernel's iscsi_tcp does the I/O):
  attach URL [--iface NAME] [--netdev DEV] [--json]
                                                 log in through the kernel, print /dev/sdX
                                                 (JSON: path, scsi_address, session, host, lun,
                                                 size, target_name, portal, iface, new_session)
  detach URL|/dev/sdX [--iface NAME] [--json]    flush and delete the device, log out when the
                                                 session has no other device; gone is success
  sessions [--json]                              kernel sessions: sid, host, target, portal,
                                                 iface, state, devices with their LUNs
  supervise [URL...] [--rescan 30s]              re-login failed connections until SIGINT/SIGTERM;
                                                 logs failures and recoveries on stderr
                                                 (without a supervisor a dead connection fails
                                                 I/O after the kernel's 120 s recovery timeout);
                                                 no URL: every session with a device, without
                                                 CHAP; a CHAP session needs its URL (or env)
  kernel flags: --allow-other-daemon (another NETLINK_ISCSI listener, e.g. a running
  supervise), --sysfs DIR

volume commands (the Kubernetes iscsi volume plugin's lifecycle; --root DIR, default
/var/lib/gosan-iscsi, holds global mounts and attach records):
  stage VOLUME [--mount-options O,O...] [--json]
                                                 attach, format if blank, mount at the global path
                                                 with the PV's mountOptions (e.g. noatime,commit=30)
  publish VOLUME --target-path PATH [--read-only] [--fs-group GID] [--json]
                                                 bind-mount into PATH (block mode: onto a file)
  unpublish --target-path PATH [--json]          unmount and remove PATH
  unstage VOLUME|--global-path PATH [--json]     unmount, delete devices, log out unused sessions
  VOLUME is --spec FILE (JSON: the pod spec's iscsi: block: targetPortal, portals, iqn, lun,
  fsType, readOnly, chapAuthDiscovery, chapAuthSession, initiatorName, iscsiInterface;
  volumeMode, mountOptions; JSON only, no YAML) and/or flags that override it: --target-portal H[:P],
  --portal H[:P] (repeatable), --iqn IQN, --lun N, --fs-type T (default ext4), --read-only,
  --iface NAME, --volume-mode filesystem|block, --chap-session, --chap-discovery.
  CHAP secrets: --secret FILE (JSON map with node.session.auth.username/password/
  username_in/password_in, node.sendtargets.auth.*, or a Kubernetes Secret with data or
  stringData), else LIBISCSI_CHAP_* below; only stage logs in and reads them. Secrets
  are never printed.

URL: iscsi://[user[%secret]@]host[:port]/target-iqn/lun[?target_user=U&target_password=P&header_digest=crc32c&data_digest=crc32c]
Secrets may come from LIBISCSI_CHAP_USERNAME, LIBISCSI_CHAP_PASSWORD,
LIBISCSI_CHAP_TARGET_USERNAME, LIBISCSI_CHAP_TARGET_PASSWORD.
`

// globals are the flags every command accepts.
type globals struct {
	initiatorName string
	session       sessionFlags
	verbose       bool
	logger        *slog.Logger
	stdout        io.Writer
	stderr        io.Writer
	stdin         io.Reader
	getenv        func(string) string
}

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go onSignals(sigs, cancel, os.Stderr, os.Exit)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	os.Exit(code)
}

// onSignals cancels the command's context at the first SIGINT or SIGTERM,
// so it ends cleanly (a session logs out, a copy stops at a block
// boundary), and exits at once at the second, with 128+signal, so a user
// is never left with a process that ignores them, whatever the command is
// waiting for.
func onSignals(sigs <-chan os.Signal, cancel context.CancelFunc, stderr io.Writer, exit func(int)) {
	<-sigs
	cancel()
	sig := <-sigs
	fmt.Fprintf(stderr, "iscsictl: %v again: exiting without cleaning up\n", sig)
	code := 1
	if n, ok := sig.(syscall.Signal); ok {
		code = 128 + int(n)
	}
	exit(code)
}

// run executes one command line and returns the exit status. It is main
// without the process, so tests can drive it.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	g := &globals{stdout: stdout, stderr: stderr, stdin: stdin, getenv: getenv}
	if len(args) == 0 {
		io.WriteString(stderr, usage)
		return 2
	}
	// Global flags may stand before the command.
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		n, err := g.parseGlobal(args)
		if err != nil {
			fmt.Fprintf(stderr, "iscsictl: %v\n", err)
			return 2
		}
		if n == 0 {
			break
		}
		args = args[n:]
	}
	if len(args) == 0 {
		io.WriteString(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "discover":
		err = cmdDiscover(ctx, g, rest)
	case "luns":
		err = cmdLUNs(ctx, g, rest)
	case "read":
		err = cmdRead(ctx, g, rest)
	case "write":
		err = cmdWrite(ctx, g, rest)
	case "copy":
		err = cmdCopy(ctx, g, rest)
	case "bench":
		err = cmdBench(ctx, g, rest)
	case "attach":
		err = cmdAttach(ctx, g, rest)
	case "detach":
		err = cmdDetach(ctx, g, rest)
	case "sessions":
		err = cmdSessions(ctx, g, rest)
	case "supervise":
		err = cmdSupervise(ctx, g, rest)
	case "stage":
		err = cmdStage(ctx, g, rest)
	case "publish":
		err = cmdPublish(ctx, g, rest)
	case "unpublish":
		err = cmdUnpublish(ctx, g, rest)
	case "unstage":
		err = cmdUnstage(ctx, g, rest)
	case "help", "-h", "--help":
		if len(rest) > 0 && commandUsage(rest[0]) != "" {
			// "iscsictl help stage" is "iscsictl stage --help".
			return run(ctx, []string{rest[0], "--help"}, stdin, stdout, stderr, getenv)
		}
		io.WriteString(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "iscsictl: unknown command %q\n", cmd)
		io.WriteString(stderr, usage)
		return 2
	}
	if err != nil {
		var he *helpRequest
		if errors.As(err, &he) {
			printCommandHelp(stdout, cmd, he.fs)
			return 0
		}
		var ue *usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "iscsictl %s: %v\n", cmd, err)
			return 2
		}
		fmt.Fprintf(stderr, "iscsictl: %s\n", oneLine(err.Error()))
		return 1
	}
	return 0
}

// parseGlobal consumes one global flag at args[0]; it returns how many
// arguments it used (0 when args[0] is not a global flag).
func (g *globals) parseGlobal(args []string) (int, error) {
	name, val, hasVal := strings.Cut(strings.TrimLeft(args[0], "-"), "=")
	switch name {
	case "verbose", "v":
		g.verbose = true
		return 1, nil
	case "initiator-name":
		if hasVal {
			g.initiatorName = val
			return 1, nil
		}
		if len(args) < 2 {
			return 0, errors.New("--initiator-name needs a value")
		}
		g.initiatorName = args[1]
		return 2, nil
	}
	return 0, nil
}

type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// flagSet makes a FlagSet for a command with the global flags registered, so
// they may also follow the command.
func (g *globals) flagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&g.initiatorName, "initiator-name", g.initiatorName, "initiator IQN")
	fs.BoolVar(&g.verbose, "verbose", g.verbose, "show the protocol log on stderr")
	if userspaceCommands[name] {
		g.session.register(fs)
	}
	return fs
}

// helpRequest is what parse returns for -h, -help or --help: run prints
// the command's usage and flags on stdout and exits 0.
type helpRequest struct{ fs *flag.FlagSet }

func (h *helpRequest) Error() string { return "help requested" }

// commandUsage is cmd's entry of the usage text (its synopsis and
// description lines), or "" for an unknown command.
func commandUsage(cmd string) string {
	var b strings.Builder
	in := false
	for _, line := range strings.Split(usage, "\n") {
		switch {
		case strings.HasPrefix(line, "  "+cmd+" ") || line == "  "+cmd:
			in = true
		case in && strings.HasPrefix(line, "   "):
			// a continuation line of the entry
		default:
			in = false
		}
		if in {
			b.WriteString(strings.TrimPrefix(line, "  "))
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// printCommandHelp prints cmd's usage and every flag it takes.
func printCommandHelp(w io.Writer, cmd string, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: iscsictl %s", commandUsage(cmd))
	if urlCommands[cmd] {
		io.WriteString(w, "\nURL: iscsi://[user[%secret]@]host[:port]/target-iqn/lun[?target_user=U&target_password=P&header_digest=crc32c&data_digest=crc32c]\n"+
			"Secrets may come from LIBISCSI_CHAP_USERNAME, LIBISCSI_CHAP_PASSWORD,\nLIBISCSI_CHAP_TARGET_USERNAME, LIBISCSI_CHAP_TARGET_PASSWORD.\n")
	}
	io.WriteString(w, "\nflags:\n")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// urlCommands take iscsi:// URLs.
var urlCommands = map[string]bool{
	"discover": true, "luns": true, "read": true, "write": true, "copy": true, "bench": true,
	"attach": true, "detach": true, "supervise": true,
}

// parse parses flags and positional arguments in any order.
func (g *globals) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, &helpRequest{fs: fs}
			}
			return nil, usagef("%v", err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if g.verbose {
		g.logger = slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return pos, nil
}

// oneLine folds an error message onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
