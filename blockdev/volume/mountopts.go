package volume

import (
	"errors"
	"fmt"
	"strings"
)

// Bounds on Volume.MountOptions.
const (
	MaxMountOptions   = 64  // options per volume
	MaxMountOptionLen = 256 // bytes per option
	// maxMountData bounds the comma-joined filesystem data string: mount(2)
	// copies at most one page of it.
	maxMountData = 4095
)

// vfsFlags are the generic mount options that mount(2) takes as MS_* flags
// rather than in the filesystem's data string (mount(8)'s spelling). set
// adds the flag, !set clears it; the last of two opposites wins, as in
// mount(8).
var vfsFlags = map[string]struct {
	flag uintptr
	set  bool
}{
	"ro":            {msRdonly, true},
	"rw":            {msRdonly, false},
	"nosuid":        {msNosuid, true},
	"suid":          {msNosuid, false},
	"nodev":         {msNodev, true},
	"dev":           {msNodev, false},
	"noexec":        {msNoexec, true},
	"exec":          {msNoexec, false},
	"sync":          {msSynchronous, true},
	"async":         {msSynchronous, false},
	"dirsync":       {msDirsync, true},
	"noatime":       {msNoatime, true},
	"atime":         {msNoatime, false},
	"nodiratime":    {msNodiratime, true},
	"diratime":      {msNodiratime, false},
	"relatime":      {msRelatime, true},
	"norelatime":    {msRelatime, false},
	"strictatime":   {msStrictatime, true},
	"nostrictatime": {msStrictatime, false},
	"lazytime":      {msLazytime, true},
	"nolazytime":    {msLazytime, false},
	"mand":          {msMandlock, true},
	"nomand":        {msMandlock, false},
	"nosymfollow":   {msNosymfollow, true},
	"symfollow":     {msNosymfollow, false},
}

// refusedMountOptions change what the mount is (a bind, a move, a remount,
// a propagation change) rather than how the filesystem is mounted.
var refusedMountOptions = map[string]bool{
	"bind": true, "rbind": true, "remount": true, "move": true,
	"shared": true, "rshared": true, "private": true, "rprivate": true,
	"slave": true, "rslave": true, "unbindable": true, "runbindable": true,
}

// ignoredMountOption reports options that mount(8) consumes itself and never
// passes to the kernel: "defaults", fstab's "_netdev", "nofail", "auto",
// "noauto" and the "x-*" userspace options. Normalize drops them.
func ignoredMountOption(o string) bool {
	switch o {
	case "defaults", "_netdev", "nofail", "auto", "noauto":
		return true
	}
	return strings.HasPrefix(o, "x-")
}

// normalizeMountOptions checks opts (see Volume.MountOptions) and returns
// them without the ignored ones (nil when none is left). readOnly is
// Volume.ReadOnly; the second result says whether opts ask for a read-only
// mount.
func normalizeMountOptions(opts []string, readOnly bool) (out []string, ro bool, probs []*FieldError) {
	const field = "mountOptions"
	bad := func(field, format string, args ...any) {
		probs = append(probs, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	if len(opts) > MaxMountOptions {
		bad(field, "%d options, at most %d", len(opts), MaxMountOptions)
		return nil, false, probs
	}
	hasRW := false
	dataLen := 0
	for i, o := range opts {
		if err := checkMountOption(o); err != nil {
			bad(fmt.Sprintf("%s[%d]", field, i), "%v", err)
			continue
		}
		if ignoredMountOption(o) {
			continue
		}
		switch o {
		case "ro":
			ro = true
		case "rw":
			hasRW = true
		}
		if _, ok := vfsFlags[o]; !ok {
			if dataLen > 0 {
				dataLen++
			}
			dataLen += len(o)
		}
		out = append(out, o)
	}
	switch {
	case hasRW && readOnly:
		bad(field, `"rw" contradicts readOnly: true`)
	case hasRW && ro:
		bad(field, `both "ro" and "rw"`)
	}
	if dataLen > maxMountData {
		bad(field, "filesystem options are %d bytes joined, at most %d", dataLen, maxMountData)
	}
	return out, ro, probs
}

// checkMountOption checks one option's spelling.
func checkMountOption(o string) error {
	switch {
	case o == "":
		return errors.New("empty option")
	case len(o) > MaxMountOptionLen:
		return fmt.Errorf("option longer than %d bytes (%d)", MaxMountOptionLen, len(o))
	}
	for _, r := range o {
		if r <= ' ' || r == 0x7f || r == ',' {
			return fmt.Errorf("%q contains whitespace, a comma or a control character (give one option per entry)", o)
		}
	}
	name, _, _ := strings.Cut(o, "=")
	if refusedMountOptions[name] {
		return fmt.Errorf("%q is not allowed: it would change what is mounted, not how (Stage mounts the device; Publish makes the binds)", o)
	}
	return nil
}

// mountFlagsData translates normalized mount options into mount(2)'s flags
// and the filesystem's data string: the generic VFS options in vfsFlags
// become MS_* flags (in order, so the last of two opposites wins), every
// other option goes, in order and comma-joined, into data.
func mountFlagsData(opts []string) (flags uintptr, data string) {
	var fsOpts []string
	for _, o := range opts {
		if f, ok := vfsFlags[o]; ok {
			if f.set {
				flags |= f.flag
			} else {
				flags &^= f.flag
			}
			continue
		}
		if ignoredMountOption(o) {
			continue
		}
		fsOpts = append(fsOpts, o)
	}
	return flags, strings.Join(fsOpts, ",")
}
