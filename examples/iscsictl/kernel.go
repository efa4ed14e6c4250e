package main

// The kernel commands: attach, detach, sessions, supervise. They hand the
// session to the Linux kernel's iscsi_tcp through package blockdev and print
// what the kernel made of it.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/blockdev"
)

// kernelFlags are the flags of every command that opens the kernel binding.
type kernelFlags struct {
	allowOtherDaemon bool
	sysfs            string
}

func (kf *kernelFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&kf.allowOtherDaemon, "allow-other-daemon", false,
		"run although another NETLINK_ISCSI listener (iscsid, iscsictl supervise) exists")
	fs.StringVar(&kf.sysfs, "sysfs", "", "sysfs root (default /sys)")
}

// openKernel opens the kernel binding with the global flags. Its log goes to
// stderr only with --verbose, or from level logLevel on (supervise shows
// recoveries: failures at warning level, "session recovered" at info).
func (g *globals) openKernel(kf kernelFlags, logLevel slog.Level) (*blockdev.Kernel, error) {
	opts := blockdev.Options{InitiatorName: g.initiatorName, AllowOtherDaemon: kf.allowOtherDaemon, SysfsRoot: kf.sysfs}
	opts.Logger = g.logger
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: logLevel}))
	}
	k, err := blockdev.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open the kernel iSCSI binding: %w", err)
	}
	return k, nil
}

// quiet is a log level above every record: commands whose errors are
// returned show no log unless --verbose.
const quiet = slog.Level(100)

// kernelSpec turns a LUN URL into an Attach request.
func (g *globals) kernelSpec(raw, iface, netdev string) (blockdev.Spec, *iscsi.URL, error) {
	u, err := g.parseURL(raw)
	if err != nil {
		return blockdev.Spec{}, nil, err
	}
	if u.TargetName == "" || !u.HasLUN {
		return blockdev.Spec{}, nil, usagef("URL %s names no LUN (iscsi://host/iqn/LUN)", u)
	}
	if u.HeaderDigest || u.DataDigest {
		return blockdev.Spec{}, nil, usagef("digests are not supported through the kernel binding (URL %s)", u)
	}
	s := blockdev.Spec{Portal: u.Portal(), TargetName: u.TargetName, LUN: u.LUN, Iface: iface, NetDev: netdev, InitiatorName: g.initiatorName}
	if chap, ok := urlCHAP(u); ok {
		s.CHAP = &chap
	}
	return s, u, nil
}

// attachOutput is `iscsictl attach --json`.
type attachOutput struct {
	Path        string `json:"path"`
	SCSIAddress string `json:"scsi_address"`
	Session     uint32 `json:"session"`
	Host        uint32 `json:"host"`
	LUN         uint64 `json:"lun"`
	Size        int64  `json:"size"`
	TargetName  string `json:"target_name"`
	Portal      string `json:"portal"`
	Iface       string `json:"iface"`
	NewSession  bool   `json:"new_session"`
}

func cmdAttach(ctx context.Context, g *globals, args []string) error {
	fs := g.flagSet("attach")
	var kf kernelFlags
	kf.register(fs)
	iface := fs.String("iface", "", "iface name the session is known by (default \"default\")")
	netdev := fs.String("netdev", "", "network interface to bind the TCP connection to")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := g.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one LUN URL: iscsictl attach iscsi://host[:port]/iqn/LUN")
	}
	spec, _, err := g.kernelSpec(pos[0], *iface, *netdev)
	if err != nil {
		return err
	}
	k, err := g.openKernel(kf, quiet)
	if err != nil {
		return err
	}
	defer k.Close()
	d, err := k.Attach(ctx, spec)
	if err != nil {
		return err // an *AttachError: "blockdev: attach T at P: STEP: ..."
	}
	if *asJSON {
		return writeJSON(g.stdout, attachOutput{Path: d.Path, SCSIAddress: d.SCSIAddress, Session: d.SessionID,
			Host: d.HostNo, LUN: d.LUN, Size: d.Size, TargetName: d.TargetName, Portal: d.Portal, Iface: d.Iface, NewSession: d.NewSession})
	}
	fmt.Fprintln(g.stdout, d.Path)
	return nil
}

// detachOutput is `iscsictl detach --json`.
type detachOutput struct {
	Path      string `json:"path"`              // "" when the device was already gone
	Session   uint32 `json:"session,omitempty"` // 0 when there was no session
	LoggedOut bool   `json:"logged_out"`        // the session was logged out
	Gone      bool   `json:"already_gone"`      // nothing was attached
}

func cmdDetach(ctx context.Context, g *globals, args []string) error {
	fs := g.flagSet("detach")
	var kf kernelFlags
	kf.register(fs)
	iface := fs.String("iface", "", "iface name of the session (URL form only)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := g.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one LUN URL or device: iscsictl detach iscsi://host[:port]/iqn/LUN|/dev/sdX")
	}
	sys := blockdev.Sysfs{Root: kf.sysfs}
	var disk *blockdev.Disk
	var emptySession *blockdev.SessionInfo // the URL's session exists but has no device at all
	if strings.HasPrefix(pos[0], "iscsi://") {
		spec, _, err := g.kernelSpec(pos[0], *iface, "")
		if err != nil {
			return err
		}
		disk, emptySession, err = findByURL(ctx, sys, spec)
		if err != nil {
			return err
		}
	} else {
		if !strings.HasPrefix(pos[0], "/") {
			return usagef("%q is neither an iscsi:// URL nor a device path", pos[0])
		}
		disk, err = findByDevice(sys, pos[0])
		if err != nil {
			return err
		}
	}
	out := detachOutput{Gone: disk == nil && emptySession == nil}
	if !out.Gone {
		k, err := g.openKernel(kf, quiet)
		if err != nil {
			return err
		}
		defer k.Close()
		if disk != nil {
			out.Path, out.Session = disk.Path, disk.SessionID
			if err := k.Detach(ctx, disk); err != nil {
				return fmt.Errorf("detach %s: %w", disk.Path, err)
			}
		} else {
			// A session left without devices (a crash between delete and
			// logout): finish the job.
			out.Session = emptySession.SID
			if err := k.LogoutSession(ctx, emptySession.SID); err != nil {
				return fmt.Errorf("logout of session %d: %w", emptySession.SID, err)
			}
		}
		_, err = sys.Session(out.Session)
		out.LoggedOut = errors.Is(err, blockdev.ErrNoSession)
	}
	if *asJSON {
		return writeJSON(g.stdout, out)
	}
	switch {
	case out.Gone:
		fmt.Fprintf(g.stdout, "%s: not attached\n", pos[0])
	case out.Path == "":
		fmt.Fprintf(g.stdout, "session %d logged out\n", out.Session)
	case out.LoggedOut:
		fmt.Fprintf(g.stdout, "%s detached, session %d logged out\n", out.Path, out.Session)
	default:
		fmt.Fprintf(g.stdout, "%s detached, session %d kept (other devices)\n", out.Path, out.Session)
	}
	return nil
}

// resolvePortal gives host:port as the kernel stores it: a literal IP
// (IPv4 without the v4-in-v6 form), IPv6 in brackets.
func resolvePortal(ctx context.Context, portal string) (string, error) {
	host, port, err := net.SplitHostPort(portal)
	if err != nil {
		return "", usagef("portal %q: %v", portal, err)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		ips, err := net.DefaultResolver.LookupIP(ctx, "ip", host)
		if err != nil || len(ips) == 0 {
			return "", fmt.Errorf("resolve portal %s: %w", portal, err)
		}
		ip = ips[0]
	}
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return net.JoinHostPort(ip.String(), port), nil
}

// findByURL finds the device of the URL's LUN. No session gives (nil, nil);
// a session without any device gives (nil, session).
func findByURL(ctx context.Context, sys blockdev.Sysfs, spec blockdev.Spec) (*blockdev.Disk, *blockdev.SessionInfo, error) {
	portal, err := resolvePortal(ctx, spec.Portal)
	if err != nil {
		return nil, nil, err
	}
	info, err := sys.FindSession(portal, spec.TargetName, spec.Iface, spec.InitiatorName)
	if err != nil {
		return nil, nil, fmt.Errorf("read sysfs: %w", err)
	}
	if info == nil {
		return nil, nil, nil
	}
	dev, err := sys.DeviceForLUN(info.SID, spec.LUN)
	if err != nil && !errors.Is(err, blockdev.ErrNoSession) {
		return nil, nil, fmt.Errorf("read sysfs: %w", err)
	}
	if dev == nil {
		devs, err := sys.SessionDevices(info.SID)
		if err == nil && len(devs) == 0 {
			return nil, info, nil
		}
		return nil, nil, nil
	}
	return diskOf(sys, info, *dev), nil, nil
}

// findByDevice finds the iSCSI session of a block device. A device that does
// not exist gives nil; one that is not an iSCSI LUN is an error.
func findByDevice(sys blockdev.Sysfs, path string) (*blockdev.Disk, error) {
	name := filepath.Base(path)
	if real, err := filepath.EvalSymlinks(path); err == nil {
		name = filepath.Base(real)
	}
	sessions, err := sys.Sessions()
	if err != nil {
		return nil, fmt.Errorf("read sysfs: %w", err)
	}
	for i := range sessions {
		devs, err := sys.SessionDevices(sessions[i].SID)
		if err != nil {
			continue // vanished meanwhile
		}
		for _, d := range devs {
			if d.Block == name {
				return diskOf(sys, &sessions[i], d), nil
			}
		}
	}
	if sys.BlockExists(name) {
		return nil, fmt.Errorf("%s is not a LUN of an iSCSI session", path)
	}
	return nil, nil
}

func diskOf(sys blockdev.Sysfs, info *blockdev.SessionInfo, d blockdev.SCSIDevice) *blockdev.Disk {
	dev := sys.Dev
	if dev == "" {
		dev = "/dev"
	}
	disk := &blockdev.Disk{Name: d.Block, SCSIAddress: d.Address(), LUN: d.LUN, SessionID: info.SID,
		HostNo: info.HostNo, Portal: info.Portal, TargetName: info.TargetName, Iface: info.Iface}
	if d.Block != "" {
		disk.Path = filepath.Join(dev, d.Block)
		disk.Size, _ = sys.BlockSize(d.Block)
	}
	return disk
}

// sessionOutput is one element of `iscsictl sessions --json`.
type sessionOutput struct {
	SID           uint32         `json:"sid"`
	Host          uint32         `json:"host"`
	TargetName    string         `json:"target_name"`
	Portal        string         `json:"portal"`
	Iface         string         `json:"iface"`
	InitiatorName string         `json:"initiator_name"`
	ISID          string         `json:"isid"`
	State         string         `json:"state"`
	Devices       []deviceOutput `json:"devices"`
}

type deviceOutput struct {
	LUN         uint64 `json:"lun"`
	SCSIAddress string `json:"scsi_address"`
	Path        string `json:"path"` // "" while the block device is not there
}

// listSessions reads every iSCSI session and its devices from sysfs.
func listSessions(sys blockdev.Sysfs) ([]sessionOutput, error) {
	sessions, err := sys.Sessions()
	if err != nil {
		return nil, fmt.Errorf("read sysfs: %w", err)
	}
	dev := sys.Dev
	if dev == "" {
		dev = "/dev"
	}
	out := make([]sessionOutput, 0, len(sessions))
	for _, s := range sessions {
		so := sessionOutput{SID: s.SID, Host: s.HostNo, TargetName: s.TargetName, Portal: s.Portal, Iface: s.Iface,
			InitiatorName: s.InitiatorName, ISID: s.ISID, State: s.State, Devices: []deviceOutput{}}
		devs, err := sys.SessionDevices(s.SID)
		if errors.Is(err, blockdev.ErrNoSession) {
			continue // logged out while we read
		}
		if err != nil {
			return nil, fmt.Errorf("read sysfs: %w", err)
		}
		sort.Slice(devs, func(i, j int) bool { return devs[i].LUN < devs[j].LUN })
		for _, d := range devs {
			do := deviceOutput{LUN: d.LUN, SCSIAddress: d.Address()}
			if d.Block != "" {
				do.Path = filepath.Join(dev, d.Block)
			}
			so.Devices = append(so.Devices, do)
		}
		out = append(out, so)
	}
	return out, nil
}

func cmdSessions(_ context.Context, g *globals, args []string) error {
	fs := g.flagSet("sessions")
	sysfs := fs.String("sysfs", "", "sysfs root (default /sys)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := g.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("sessions takes no arguments")
	}
	out, err := listSessions(blockdev.Sysfs{Root: *sysfs})
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(g.stdout, out)
	}
	w := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "SID\tHOST\tTARGET\tPORTAL\tIFACE\tSTATE\tDEVICES")
	for _, s := range out {
		devs := make([]string, 0, len(s.Devices))
		for _, d := range s.Devices {
			name := "-"
			if d.Path != "" {
				name = filepath.Base(d.Path)
			}
			devs = append(devs, name+"(lun "+strconv.FormatUint(d.LUN, 10)+")")
		}
		dl := strings.Join(devs, ",")
		if dl == "" {
			dl = "-"
		}
		fmt.Fprintf(w, "%d\t%d\t%s\t%s\t%s\t%s\t%s\n", s.SID, s.Host, s.TargetName, s.Portal, s.Iface, s.State, dl)
	}
	return w.Flush()
}

// cmdSupervise adopts sessions and keeps them alive until SIGINT/SIGTERM.
//
// With URLs it adopts exactly the sessions of those LUNs, with the CHAP
// credentials of the URL or of LIBISCSI_CHAP_*. Without URLs it adopts every
// session with a device in sysfs, without credentials (the kernel does not
// keep CHAP secrets): a session that needs CHAP is re-logged-in only when its
// URL is given. Without URLs it also looks for new sessions every --rescan.
func cmdSupervise(ctx context.Context, g *globals, args []string) error {
	fs := g.flagSet("supervise")
	var kf kernelFlags
	kf.register(fs)
	iface := fs.String("iface", "", "iface name of the URLs' sessions")
	netdev := fs.String("netdev", "", "network interface for the URLs' reconnects")
	rescan := fs.Duration("rescan", 30*time.Second, "without URLs: how often to adopt new sessions (0: never)")
	pos, err := g.parse(fs, args)
	if err != nil {
		return err
	}
	specs := make([]blockdev.Spec, 0, len(pos))
	for _, raw := range pos {
		s, _, err := g.kernelSpec(raw, *iface, *netdev)
		if err != nil {
			return err
		}
		specs = append(specs, s)
	}
	if *rescan < 0 {
		return usagef("--rescan must not be negative")
	}
	k, err := g.openKernel(kf, slog.LevelInfo)
	if err != nil {
		return err
	}
	defer k.Close()
	done := make(chan error, 1)
	go func() { done <- k.Supervise(ctx) }()

	adopted := map[uint32]bool{}
	adopt := func(s blockdev.Spec) {
		d, err := k.Attach(ctx, s)
		if err != nil {
			if ctx.Err() == nil {
				fmt.Fprintf(g.stderr, "iscsictl supervise: %s\n", oneLine(fmt.Sprintf("adopt %s: %v", s, err)))
			}
			return
		}
		if !adopted[d.SessionID] {
			adopted[d.SessionID] = true
			fmt.Fprintf(g.stdout, "supervising session %d %s %s\n", d.SessionID, d.Portal, d.TargetName)
		}
	}
	scan := func() {
		sessions, err := listSessions(k.Sysfs())
		if err != nil {
			fmt.Fprintf(g.stderr, "iscsictl supervise: %s\n", oneLine(err.Error()))
			return
		}
		for _, s := range sessions {
			if adopted[s.SID] || len(s.Devices) == 0 {
				continue
			}
			// Attach on a LUN that has a device adopts the session and
			// returns the device as is (it reconnects a FAILED session).
			adopt(blockdev.Spec{Portal: s.Portal, TargetName: s.TargetName, LUN: s.Devices[0].LUN, Iface: s.Iface,
				InitiatorName: s.InitiatorName})
		}
	}
	for _, s := range specs {
		// A URL given explicitly must be adoptable now: fail rather than
		// supervise less than asked.
		d, err := k.Attach(ctx, s)
		if err != nil {
			return fmt.Errorf("supervise %s: %w", s, err)
		}
		if !adopted[d.SessionID] {
			adopted[d.SessionID] = true
			fmt.Fprintf(g.stdout, "supervising session %d %s %s\n", d.SessionID, d.Portal, d.TargetName)
		}
	}
	var tick <-chan time.Time
	if len(specs) == 0 {
		scan()
		if *rescan > 0 {
			t := time.NewTicker(*rescan)
			defer t.Stop()
			tick = t.C
		}
	}
	fmt.Fprintf(g.stdout, "supervising %d session(s); stop with SIGINT or SIGTERM\n", len(adopted))
	for {
		select {
		case <-tick:
			scan()
		case err := <-done:
			if ctx.Err() != nil {
				return nil // asked to stop: a normal end
			}
			return fmt.Errorf("supervise: %w", err)
		}
	}
}
