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

commands:
  discover [--json] iscsi://host[:port]          list targets and portals
  luns [--json] iscsi://host[:port]/iqn          list every LUN of a target
  read URL [--offset N] [--length N] [-o FILE]   LUN bytes to stdout or FILE
  write URL [--offset N] [-i FILE]               stdin or FILE to the LUN, then SYNCHRONIZE CACHE
  copy SRC DST                                   LUN URL or local file on each side
  bench URL --rw MODE --bs SIZE --qd N --duration D [--json]
                                                 IOPS, MiB/s and latency percentiles

URL: iscsi://[user[%secret]@]host[:port]/target-iqn/lun[?target_user=U&target_password=P&header_digest=crc32c&data_digest=crc32c]
Secrets may come from LIBISCSI_CHAP_USERNAME, LIBISCSI_CHAP_PASSWORD,
LIBISCSI_CHAP_TARGET_USERNAME, LIBISCSI_CHAP_TARGET_PASSWORD.
`

// globals are the flags every command accepts.
type globals struct {
	initiatorName string
	verbose       bool
	logger        *slog.Logger
	stdout        io.Writer
	stderr        io.Writer
	stdin         io.Reader
	getenv        func(string) string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
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
	case "help", "-h", "--help":
		io.WriteString(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "iscsictl: unknown command %q\n", cmd)
		io.WriteString(stderr, usage)
		return 2
	}
	if err != nil {
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
	return fs
}

// parse parses flags and positional arguments in any order.
func (g *globals) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
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
