package main

// The volume commands: stage, publish, unpublish, unstage. They run
// blockdev/volume's lifecycle (the Kubernetes iscsi volume plugin's model)
// on kernel-attached LUNs.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/gosan/iscsi/blockdev"
	"github.com/gosan/iscsi/blockdev/volume"
)

// DefaultRoot is where the volume commands keep global mounts and records.
const DefaultRoot = "/var/lib/gosan-iscsi"

// maxSpecFile bounds --spec and --secret files.
const maxSpecFile = 1 << 20

// volumeFlags are the flags that describe a volume, matching its JSON fields.
type volumeFlags struct {
	kernelFlags
	spec, secret  string
	root          string
	targetPortal  string
	portals       stringList
	iqn           string
	lun           string
	fsType        string
	readOnly      bool
	iface         string
	mode          string
	chapSession   bool
	chapDiscovery bool
	mountOptions  string          // stage only: comma-separated
	set           map[string]bool // flags given on the command line
	// readOnlyIsBind: --read-only is the bind's (publish), not the volume's.
	readOnlyIsBind bool
	// noLogin: the command never logs in (publish, unstage): CHAP secrets
	// are not needed and not read.
	noLogin             bool
	initiatorNameGlobal *string
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func (vf *volumeFlags) register(fs *flag.FlagSet, g *globals) {
	vf.kernelFlags.register(fs)
	fs.StringVar(&vf.spec, "spec", "", "volume spec in JSON (the pod spec's iscsi: block)")
	fs.StringVar(&vf.secret, "secret", "", "CHAP secret in JSON (map of node.session.auth.* keys, or a Kubernetes Secret)")
	fs.StringVar(&vf.root, "root", DefaultRoot, "directory of global mounts and attach records")
	fs.StringVar(&vf.targetPortal, "target-portal", "", "portal host[:port]")
	fs.Var(&vf.portals, "portal", "portal host[:port] (repeatable; the first is the target portal when --target-portal is absent)")
	fs.StringVar(&vf.iqn, "iqn", "", "target IQN")
	fs.StringVar(&vf.lun, "lun", "", "LUN number")
	fs.StringVar(&vf.fsType, "fs-type", "", "filesystem type (default ext4)")
	fs.BoolVar(&vf.readOnly, "read-only", false, "read-only volume (never formatted)")
	fs.StringVar(&vf.iface, "iface", "", "iSCSI interface name (default \"default\")")
	fs.StringVar(&vf.mode, "volume-mode", "", "filesystem (default) or block")
	fs.BoolVar(&vf.chapSession, "chap-session", false, "session CHAP (secrets from --secret or LIBISCSI_CHAP_*)")
	fs.BoolVar(&vf.chapDiscovery, "chap-discovery", false, "discovery CHAP (secrets from --secret or LIBISCSI_CHAP_*)")
	vf.initiatorNameGlobal = &g.initiatorName
}

// registerStage adds the flags only stage takes.
func (vf *volumeFlags) registerStage(fs *flag.FlagSet) {
	fs.StringVar(&vf.mountOptions, "mount-options", "", "mount options of the global mount, comma-separated (the PV's mountOptions, e.g. noatime,commit=30)")
}

// volume builds the Volume from --spec and the flags (flags override the
// spec), with its secrets, and validates it. Every problem is a usage error.
func (vf *volumeFlags) volume(fs *flag.FlagSet, g *globals) (volume.Volume, error) {
	vf.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { vf.set[f.Name] = true })
	var v volume.Volume
	if vf.spec != "" {
		b, err := readSmallFile(vf.spec)
		if err != nil {
			return v, usagef("--spec: %v", err)
		}
		if err := decodeSpec(b, &v); err != nil {
			return v, usagef("--spec %s: %v", vf.spec, err)
		}
	}
	if vf.set["target-portal"] {
		v.TargetPortal = vf.targetPortal
	}
	if vf.set["portal"] {
		ps := []string(vf.portals)
		if !vf.set["target-portal"] {
			v.TargetPortal, ps = ps[0], ps[1:]
		}
		v.Portals = ps
	}
	if vf.set["iqn"] {
		v.IQN = vf.iqn
	}
	if vf.set["lun"] {
		n, err := strconv.ParseInt(vf.lun, 10, 32)
		if err != nil {
			return v, usagef("--lun %q: want a number 0..16383", vf.lun)
		}
		v.LUN = int32(n)
	}
	if vf.set["fs-type"] {
		v.FSType = vf.fsType
	}
	if vf.set["read-only"] && !vf.readOnlyIsBind {
		v.ReadOnly = vf.readOnly
	}
	if vf.set["iface"] {
		v.ISCSIInterface = vf.iface
	}
	if vf.set["initiator-name"] || (v.InitiatorName == "" && *vf.initiatorNameGlobal != "") {
		v.InitiatorName = *vf.initiatorNameGlobal
	}
	if vf.set["volume-mode"] {
		switch strings.ToLower(vf.mode) {
		case "filesystem":
			v.VolumeMode = volume.ModeFilesystem
		case "block":
			v.VolumeMode = volume.ModeBlock
		default:
			return v, usagef("--volume-mode %q: want filesystem or block", vf.mode)
		}
	}
	if vf.set["mount-options"] {
		v.MountOptions = nil
		if vf.mountOptions != "" {
			v.MountOptions = strings.Split(vf.mountOptions, ",")
		}
	}
	if vf.set["chap-session"] {
		v.SessionCHAPAuth = vf.chapSession
	}
	if vf.set["chap-discovery"] {
		v.DiscoveryCHAPAuth = vf.chapDiscovery
	}
	if vf.noLogin {
		v.SessionCHAPAuth, v.DiscoveryCHAPAuth = false, false
	}
	if v.SessionCHAPAuth || v.DiscoveryCHAPAuth {
		secrets, err := vf.secrets(g)
		if err != nil {
			return v, err
		}
		v.Secrets = secrets
	}
	if err := v.Validate(); err != nil {
		return v, usagef("%s", oneLine(err.Error()))
	}
	return v, nil
}

// decodeSpec reads a volume spec: the iscsi: block itself, or an object
// holding it under "iscsi" (a pod spec volume entry). Unknown fields are
// errors, so a misspelt field is not silently ignored.
func decodeSpec(b []byte, v *volume.Volume) error {
	var wrapper struct {
		ISCSI      json.RawMessage `json:"iscsi"`
		VolumeMode string          `json:"volumeMode"`
	}
	if json.Unmarshal(b, &wrapper) == nil && len(wrapper.ISCSI) > 0 {
		if err := strictJSON(wrapper.ISCSI, v); err != nil {
			return err
		}
		if wrapper.VolumeMode != "" && v.VolumeMode == "" {
			v.VolumeMode = volume.Mode(wrapper.VolumeMode)
		}
		return nil
	}
	return strictJSON(b, v)
}

func strictJSON(b []byte, v any) error {
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("JSON: %w", err)
	}
	if d.More() {
		return errors.New("JSON: more than one value")
	}
	return nil
}

// envSecretKeys maps libiscsi's environment variables to the Kubernetes
// CHAP secret keys (session and discovery take the same credentials).
var envSecretKeys = [...]struct{ env, session, discovery string }{
	{"LIBISCSI_CHAP_USERNAME", volume.SecretSessionUser, volume.SecretDiscoveryUser},
	{"LIBISCSI_CHAP_PASSWORD", volume.SecretSessionPassword, volume.SecretDiscoveryPassword},
	{"LIBISCSI_CHAP_TARGET_USERNAME", volume.SecretSessionUserIn, volume.SecretDiscoveryUserIn},
	{"LIBISCSI_CHAP_TARGET_PASSWORD", volume.SecretSessionPasswordIn, volume.SecretDiscoveryPasswordIn},
}

// secrets reads --secret, else LIBISCSI_CHAP_* from the environment.
func (vf *volumeFlags) secrets(g *globals) (volume.Secrets, error) {
	if vf.secret != "" {
		b, err := readSmallFile(vf.secret)
		if err != nil {
			return nil, usagef("--secret: %v", err)
		}
		s, err := parseSecret(b)
		if err != nil {
			return nil, usagef("--secret %s: %v", vf.secret, err)
		}
		return s, nil
	}
	s := volume.Secrets{}
	for _, k := range envSecretKeys {
		if v := g.getenv(k.env); v != "" {
			s[k.session], s[k.discovery] = v, v
		}
	}
	return s, nil
}

// parseSecret accepts a flat JSON map of strings, or a Kubernetes Secret
// object (base64 "data" and/or plain "stringData"). Errors never quote the
// file's content.
func parseSecret(b []byte) (volume.Secrets, error) {
	var obj struct {
		Kind       string            `json:"kind"`
		Data       map[string]string `json:"data"`
		StringData map[string]string `json:"stringData"`
	}
	if err := json.Unmarshal(b, &obj); err == nil && (obj.Kind == "Secret" || obj.Data != nil || obj.StringData != nil) {
		s := volume.Secrets{}
		for k, v := range obj.Data {
			d, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return nil, fmt.Errorf("data[%q] is not base64", k)
			}
			s[k] = string(d)
		}
		for k, v := range obj.StringData {
			s[k] = v
		}
		return s, nil
	}
	var flat map[string]string
	if err := json.Unmarshal(b, &flat); err != nil {
		// json's messages may quote the input: say only where it failed.
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("not JSON (syntax error at byte %d)", se.Offset)
		}
		return nil, errors.New("want a JSON object of string values or a Kubernetes Secret")
	}
	return volume.Secrets(flat), nil
}

func readSmallFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSpecFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSpecFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxSpecFile)
	}
	return b, nil
}

// lazyAttacher opens the kernel binding on first use, so commands that never
// attach (unpublish) work without NETLINK_ISCSI.
type lazyAttacher struct {
	open func() (*blockdev.Kernel, error)
	once sync.Once
	k    *blockdev.Kernel
	err  error
}

func (a *lazyAttacher) get() (volume.Attacher, error) {
	a.once.Do(func() { a.k, a.err = a.open() })
	if a.err != nil {
		return nil, a.err
	}
	return volume.KernelAttacher(a.k), nil
}

func (a *lazyAttacher) close() {
	if a.k != nil {
		a.k.Close()
	}
}

func (a *lazyAttacher) Attach(ctx context.Context, spec volume.AttachSpec) (volume.Device, error) {
	k, err := a.get()
	if err != nil {
		return volume.Device{}, err
	}
	return k.Attach(ctx, spec)
}

// Discover makes the Manager discover before it logs in, as it does with
// KernelAttacher itself.
func (a *lazyAttacher) Discover(ctx context.Context, spec volume.DiscoverySpec) ([]string, error) {
	k, err := a.get()
	if err != nil {
		return nil, err
	}
	return k.(volume.Discoverer).Discover(ctx, spec)
}

func (a *lazyAttacher) DeleteDevice(ctx context.Context, dev volume.Device) error {
	k, err := a.get()
	if err != nil {
		return err
	}
	return k.DeleteDevice(ctx, dev)
}

func (a *lazyAttacher) SessionDevices(ctx context.Context, key volume.SessionKey) ([]volume.Device, error) {
	k, err := a.get()
	if err != nil {
		return nil, err
	}
	return k.SessionDevices(ctx, key)
}

func (a *lazyAttacher) Logout(ctx context.Context, key volume.SessionKey) error {
	k, err := a.get()
	if err != nil {
		return err
	}
	return k.Logout(ctx, key)
}

// manager makes the volume Manager for root.
func (g *globals) manager(vf *volumeFlags) (*volume.Manager, *lazyAttacher, error) {
	if !strings.HasPrefix(vf.root, "/") {
		return nil, nil, usagef("--root %q: want an absolute path", vf.root)
	}
	kf := vf.kernelFlags
	att := &lazyAttacher{open: func() (*blockdev.Kernel, error) { return g.openKernel(kf, quiet) }}
	opts := []volume.Option{}
	if g.logger != nil {
		opts = append(opts, volume.WithLogger(g.logger))
	} else {
		opts = append(opts, volume.WithLogger(slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: quiet}))))
	}
	if kf.sysfs != "" {
		opts = append(opts, volume.WithSysfs(kf.sysfs))
	}
	m, err := volume.NewManager(vf.root, att, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("volume manager at %s: %w", vf.root, err)
	}
	return m, att, nil
}

// stageOutput is `iscsictl stage --json`.
type stageOutput struct {
	GlobalPath string         `json:"global_path"`
	Device     string         `json:"device"`
	Devices    []stageDevice  `json:"devices"`
	Failed     []failedPortal `json:"failed_portals"`
	VolumeMode string         `json:"volume_mode"`
	FSType     string         `json:"fs_type,omitempty"`
	Formatted  bool           `json:"formatted"`
}

// stageDevice is one attached path of a staged volume.
type stageDevice struct {
	Path        string `json:"path"`
	Portal      string `json:"portal"`
	LUN         uint64 `json:"lun"`
	Host        int    `json:"host"`
	Session     int    `json:"session"`
	SCSIAddress string `json:"scsi_address"`
}

type failedPortal struct {
	Portal string `json:"portal"`
	Error  string `json:"error"`
}

func cmdStage(ctx context.Context, g *globals, args []string) error {
	fs := g.flagSet("stage")
	var vf volumeFlags
	vf.register(fs, g)
	vf.registerStage(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := g.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("stage takes flags only (--spec FILE or --portal/--iqn/--lun)")
	}
	v, err := vf.volume(fs, g)
	if err != nil {
		return err
	}
	m, att, err := g.manager(&vf)
	if err != nil {
		return err
	}
	defer att.close()
	res, err := m.Stage(ctx, v)
	if err != nil {
		return prefixed("stage", err)
	}
	mode := v.VolumeMode
	if mode == "" {
		mode = volume.ModeFilesystem
	}
	out := stageOutput{GlobalPath: res.GlobalPath, Device: res.DevicePath, Devices: []stageDevice{},
		Failed: []failedPortal{}, VolumeMode: strings.ToLower(string(mode)), FSType: res.FSType, Formatted: res.Formatted}
	for _, d := range res.Devices {
		out.Devices = append(out.Devices, stageDevice{Path: d.Path, Portal: d.Portal, LUN: d.LUN, Host: d.HostNo,
			Session: d.SessionID, SCSIAddress: d.SCSIAddress})
	}
	for _, f := range res.Failed {
		out.Failed = append(out.Failed, failedPortal{Portal: f.Portal, Error: oneLine(f.Err.Error())})
	}
	if *asJSON {
		return writeJSON(g.stdout, out)
	}
	fmt.Fprintf(g.stdout, "global path: %s\n", out.GlobalPath)
	fmt.Fprintf(g.stdout, "device: %s\n", out.Device)
	fmt.Fprintf(g.stdout, "volume mode: %s\n", out.VolumeMode)
	if out.FSType != "" {
		fmt.Fprintf(g.stdout, "filesystem: %s\n", out.FSType)
		fmt.Fprintf(g.stdout, "formatted: %s\n", yesNo(out.Formatted))
	}
	for _, f := range out.Failed {
		fmt.Fprintf(g.stdout, "failed portal: %s: %s\n", f.Portal, f.Error)
	}
	return nil
}

// prefixed puts the command's name before err unless blockdev/volume already
// did.
func prefixed(cmd string, err error) error {
	if strings.HasPrefix(err.Error(), cmd+":") || strings.HasPrefix(err.Error(), cmd+" ") {
		return err
	}
	return fmt.Errorf("%s: %w", cmd, err)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// publishOutput is `iscsictl publish --json`.
type publishOutput struct {
	TargetPath string `json:"target_path"`
	GlobalPath string `json:"global_path"`
	ReadOnly   bool   `json:"read_only"`
}

func cmdPublish(ctx context.Context, g *globals, args []string) error {
	fs := g.flagSet("publish")
	var vf volumeFlags
	vf.register(fs, g)
	target := fs.String("target-path", "", "where to bind-mount the volume")
	fsGroup := fs.String("fs-group", "", "group id given access to the filesystem (kubelet's fsGroup)")
	// On publish --read-only makes this bind read-only
	// (PublishOptions.ReadOnly); the volume's readOnly comes from --spec.
	vf.readOnlyIsBind = true
	vf.noLogin = true
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := g.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("publish takes flags only (--target-path PATH and the volume)")
	}
	if *target == "" || !strings.HasPrefix(*target, "/") {
		return usagef("--target-path: want an absolute path")
	}
	var opts volume.PublishOptions
	if *fsGroup != "" {
		gid, err := strconv.ParseInt(*fsGroup, 10, 64)
		if err != nil || gid < 0 || gid > 1<<32-1 {
			return usagef("--fs-group %q: want a group id", *fsGroup)
		}
		opts.FSGroup = &gid
	}
	v, err := vf.volume(fs, g)
	if err != nil {
		return err
	}
	opts.ReadOnly = vf.readOnly
	m, att, err := g.manager(&vf)
	if err != nil {
		return err
	}
	defer att.close()
	gp, err := m.GlobalPath(v)
	if err != nil {
		return usagef("%s", oneLine(err.Error()))
	}
	if err := m.Publish(ctx, v, *target, opts); err != nil {
		return prefixed("publish", err)
	}
	volRO := v.ReadOnly
	if n, err := v.Normalize(); err == nil {
		volRO = n.ReadOnly // also set by mountOptions "ro"
	}
	if *asJSON {
		return writeJSON(g.stdout, publishOutput{TargetPath: *target, GlobalPath: gp, ReadOnly: opts.ReadOnly || volRO})
	}
	ro := ""
	if opts.ReadOnly || volRO {
		ro = " (read-only)"
	}
	fmt.Fprintf(g.stdout, "published %s at %s%s\n", gp, *target, ro)
	return nil
}

func cmdUnpublish(ctx context.Context, g *globals, args []string) error {
	fs := g.flagSet("unpublish")
	var vf volumeFlags
	vf.register(fs, g)
	target := fs.String("target-path", "", "the path publish bind-mounted")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := g.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("unpublish takes flags only (--target-path PATH)")
	}
	if *target == "" || !strings.HasPrefix(*target, "/") {
		return usagef("--target-path: want an absolute path")
	}
	m, att, err := g.manager(&vf)
	if err != nil {
		return err
	}
	defer att.close()
	if err := m.Unpublish(ctx, *target); err != nil {
		return prefixed("unpublish", err)
	}
	if *asJSON {
		return writeJSON(g.stdout, map[string]string{"target_path": *target})
	}
	fmt.Fprintf(g.stdout, "unpublished %s\n", *target)
	return nil
}

func cmdUnstage(ctx context.Context, g *globals, args []string) error {
	fs := g.flagSet("unstage")
	var vf volumeFlags
	vf.register(fs, g)
	globalPath := fs.String("global-path", "", "the global path stage printed (instead of the volume)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := g.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("unstage takes flags only (--spec FILE, --portal/--iqn/--lun, or --global-path PATH)")
	}
	m, att, err := g.manager(&vf)
	if err != nil {
		return err
	}
	defer att.close()
	gp := *globalPath
	vf.noLogin = true
	if gp == "" {
		v, err := vf.volume(fs, g)
		if err != nil {
			return err
		}
		if gp, err = m.GlobalPath(v); err != nil {
			return usagef("%s", oneLine(err.Error()))
		}
	} else if !strings.HasPrefix(gp, "/") {
		return usagef("--global-path: want an absolute path")
	}
	if err := m.Unstage(ctx, gp); err != nil {
		return prefixed("unstage", err)
	}
	if *asJSON {
		return writeJSON(g.stdout, map[string]string{"global_path": gp})
	}
	fmt.Fprintf(g.stdout, "unstaged %s\n", gp)
	return nil
}
