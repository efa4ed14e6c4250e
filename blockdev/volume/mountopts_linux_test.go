package volume

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestMountOptionsValidate(t *testing.T) {
	base := Volume{TargetPortal: "10.0.0.1", IQN: testIQN}
	many := make([]string, MaxMountOptions+1)
	for i := range many {
		many[i] = "noatime"
	}
	long := make([]string, 20) // 20 valid options of 255 bytes: 5119 bytes joined, over a page
	for i := range long {
		long[i] = "a=" + strings.Repeat("x", MaxMountOptionLen-3)
	}
	tests := []struct {
		name     string
		opts     []string
		readOnly bool
		mode     Mode
		want     []string // normalized options
		wantRO   bool
		errs     []string // fields expected in the error
		errText  string   // expected in the error message
	}{
		{name: "none", opts: nil, want: nil},
		{name: "empty list", opts: []string{}, want: nil},
		{name: "generic and fs options", opts: []string{"noatime", "discard", "commit=30", "data=ordered"},
			want: []string{"noatime", "discard", "commit=30", "data=ordered"}},
		{name: "xfs nouuid", opts: []string{"nouuid"}, want: []string{"nouuid"}},
		{name: "defaults ignored", opts: []string{"defaults"}, want: nil},
		{name: "mount(8)-only options dropped", opts: []string{"defaults", "_netdev", "noatime", "nofail", "x-systemd.device-timeout=5", "auto", "noauto"},
			want: []string{"noatime"}},
		{name: "ro makes the volume read-only", opts: []string{"ro", "noatime"}, want: []string{"ro", "noatime"}, wantRO: true},
		{name: "ro with readOnly", opts: []string{"ro"}, readOnly: true, want: []string{"ro"}, wantRO: true},
		{name: "rw alone", opts: []string{"rw"}, want: []string{"rw"}},
		{name: "selinux context with colons and quotes", opts: []string{`context="system_u:object_r:container_file_t:s0"`},
			want: []string{`context="system_u:object_r:container_file_t:s0"`}},
		{name: "max options", opts: many[:MaxMountOptions], want: many[:MaxMountOptions]},
		{name: "max length", opts: []string{"a=" + strings.Repeat("x", MaxMountOptionLen-2)},
			want: []string{"a=" + strings.Repeat("x", MaxMountOptionLen-2)}},

		{name: "rw contradicts readOnly", opts: []string{"rw"}, readOnly: true, errs: []string{"mountOptions"}, errText: "contradicts readOnly"},
		{name: "ro and rw", opts: []string{"ro", "rw"}, errs: []string{"mountOptions"}, errText: `both "ro" and "rw"`},
		{name: "empty option", opts: []string{"noatime", ""}, errs: []string{"mountOptions[1]"}, errText: "empty"},
		{name: "comma", opts: []string{"noatime,nodev"}, errs: []string{"mountOptions[0]"}, errText: "comma"},
		{name: "space", opts: []string{"commit= 5"}, errs: []string{"mountOptions[0]"}, errText: "whitespace"},
		{name: "tab", opts: []string{"a\tb"}, errs: []string{"mountOptions[0]"}},
		{name: "newline", opts: []string{"a\nb"}, errs: []string{"mountOptions[0]"}},
		{name: "NUL", opts: []string{"a\x00b"}, errs: []string{"mountOptions[0]"}},
		{name: "DEL", opts: []string{"a\x7fb"}, errs: []string{"mountOptions[0]"}},
		{name: "too long", opts: []string{strings.Repeat("x", MaxMountOptionLen+1)}, errs: []string{"mountOptions[0]"}, errText: "longer than"},
		{name: "too many", opts: many, errs: []string{"mountOptions"}, errText: "at most 64"},
		{name: "data over a page", opts: long, errs: []string{"mountOptions"}, errText: "bytes joined"},
		{name: "bind", opts: []string{"bind"}, errs: []string{"mountOptions[0]"}, errText: "not allowed"},
		{name: "rbind", opts: []string{"noatime", "rbind"}, errs: []string{"mountOptions[1]"}, errText: "not allowed"},
		{name: "remount", opts: []string{"remount"}, errs: []string{"mountOptions[0]"}, errText: "not allowed"},
		{name: "move", opts: []string{"move"}, errs: []string{"mountOptions[0]"}, errText: "not allowed"},
		{name: "propagation", opts: []string{"shared", "rshared", "private", "rprivate", "slave", "rslave", "unbindable", "runbindable"},
			errs: []string{"mountOptions[0]", "mountOptions[1]", "mountOptions[2]", "mountOptions[3]",
				"mountOptions[4]", "mountOptions[5]", "mountOptions[6]", "mountOptions[7]"}},
		{name: "bind with a value", opts: []string{"bind=1"}, errs: []string{"mountOptions[0]"}},
		{name: "block mode", opts: []string{"noatime"}, mode: ModeBlock, errs: []string{"mountOptions"}, errText: "volumeMode Block"},
		{name: "block mode, only defaults", opts: []string{"defaults"}, mode: ModeBlock, errs: []string{"mountOptions"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := base
			v.MountOptions, v.ReadOnly, v.VolumeMode = tc.opts, tc.readOnly, tc.mode
			n, err := v.Normalize()
			if len(tc.errs) == 0 {
				require.NoError(t, err)
				require.NoError(t, v.Validate())
				assert.Equal(t, tc.want, n.MountOptions)
				assert.Equal(t, tc.wantRO, n.ReadOnly)
				n2, err := n.Normalize()
				require.NoError(t, err, "normalized volume must normalize again")
				assert.Equal(t, n, n2)
				return
			}
			assert.Equal(t, tc.errs, problemFields(t, err))
			assert.Contains(t, err.Error(), tc.errText)
		})
	}
}

func TestMountOptionsJSON(t *testing.T) {
	var v Volume
	require.NoError(t, json.Unmarshal([]byte(`{"targetPortal":"a","iqn":"`+testIQN+`","mountOptions":["noatime","commit=5"]}`), &v))
	assert.Equal(t, []string{"noatime", "commit=5"}, v.MountOptions)
	b, err := json.Marshal(Volume{TargetPortal: "a", IQN: testIQN})
	require.NoError(t, err)
	assert.NotContains(t, string(b), "mountOptions", "omitted when empty")
}

func TestMountFlagsData(t *testing.T) {
	tests := []struct {
		opts  []string
		flags uintptr
		data  string
	}{
		{nil, 0, ""},
		{[]string{"ro"}, unix.MS_RDONLY, ""},
		{[]string{"rw"}, 0, ""},
		{[]string{"noatime", "commit=17"}, unix.MS_NOATIME, "commit=17"},
		{[]string{"nosuid", "nodev", "noexec", "sync", "dirsync", "nodiratime", "relatime", "strictatime", "lazytime", "mand", "nosymfollow"},
			unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_SYNCHRONOUS | unix.MS_DIRSYNC | unix.MS_NODIRATIME |
				unix.MS_RELATIME | unix.MS_STRICTATIME | unix.MS_LAZYTIME | unix.MS_MANDLOCK | unix.MS_NOSYMFOLLOW, ""},
		// The last of two opposites wins, as in mount(8).
		{[]string{"noatime", "atime"}, 0, ""},
		{[]string{"atime", "noatime"}, unix.MS_NOATIME, ""},
		{[]string{"nosuid", "suid", "nodev", "dev", "noexec", "exec", "sync", "async", "nodiratime", "diratime",
			"relatime", "norelatime", "strictatime", "nostrictatime", "lazytime", "nolazytime", "mand", "nomand",
			"nosymfollow", "symfollow"}, 0, ""},
		// Filesystem options keep their order; generic ones are taken out.
		{[]string{"discard", "noatime", "data=ordered", "ro", "commit=30", "nouuid"},
			unix.MS_NOATIME | unix.MS_RDONLY, "discard,data=ordered,commit=30,nouuid"},
		{[]string{"defaults", "errors=remount-ro"}, 0, "errors=remount-ro"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.opts, ","), func(t *testing.T) {
			flags, data := mountFlagsData(tc.opts)
			assert.Equal(t, tc.flags, flags, "flags %#x, want %#x", flags, tc.flags)
			assert.Equal(t, tc.data, data)
		})
	}
}

// globalMount returns the mountinfo entry of the top mount at p.
func globalMount(t *testing.T, p string) MountInfo {
	t.Helper()
	mi, err := readMountInfo()
	require.NoError(t, err)
	at := mountsAt(mi, p)
	require.NotEmpty(t, at, "%s is not mounted", p)
	return at[len(at)-1]
}

func optionList(s string) []string { return strings.Split(s, ",") }

// TestStageMountOptions stages ext4 and xfs with mount options and reads
// them back from /proc/self/mountinfo.
func TestStageMountOptions(t *testing.T) {
	requirePrereqs(t, "mkfs.ext4", "mkfs.xfs", "blkid")
	tests := []struct {
		fs         string
		size       int64
		opts       []string
		mountOpts  []string // expected in the per-mount options
		superOpts  []string // expected in the superblock options
		notMntOpts []string
	}{
		{"ext4", smallDisk, []string{"noatime", "commit=17"}, []string{"rw", "noatime"}, []string{"commit=17"}, []string{"relatime"}},
		{"ext4", smallDisk, []string{"nodev", "nosuid", "noexec", "data=journal"}, []string{"nodev", "nosuid", "noexec"}, []string{"data=journal"}, nil},
		{"xfs", xfsDisk, []string{"nouuid", "noatime", "logbsize=64k"}, []string{"noatime"}, []string{"nouuid", "logbsize=64k"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.fs+":"+strings.Join(tc.opts, ","), func(t *testing.T) {
			e := newEnv(t, tc.size)
			v := testVolume(0, tc.fs)
			v.MountOptions = tc.opts
			res, err := e.m.Stage(e.ctx, v)
			require.NoError(t, err)
			assert.True(t, res.Formatted)
			m := globalMount(t, res.GlobalPath)
			assert.Equal(t, tc.fs, m.FSType)
			for _, o := range tc.mountOpts {
				assert.Contains(t, optionList(m.Options), o, "mount options %s", m.Options)
			}
			for _, o := range tc.notMntOpts {
				assert.NotContains(t, optionList(m.Options), o, "mount options %s", m.Options)
			}
			for _, o := range tc.superOpts {
				assert.Contains(t, optionList(m.SuperOptions), o, "super options %s", m.SuperOptions)
			}

			// Staging again neither remounts nor stacks a mount.
			_, err = e.m.Stage(e.ctx, v)
			require.NoError(t, err)
			assert.Equal(t, 1, mountCount(t, res.GlobalPath))
			assert.Equal(t, m.ID, globalMount(t, res.GlobalPath).ID, "remounted")

			// A bind keeps the device mount's options.
			target := filepath.Join(t.TempDir(), "pod", "vol")
			require.NoError(t, e.m.Publish(e.ctx, v, target, PublishOptions{}))
			require.NoError(t, os.WriteFile(filepath.Join(target, "f"), []byte("x"), 0o644))
			assert.Contains(t, optionList(globalMount(t, target).SuperOptions), tc.superOpts[0])
			require.NoError(t, e.m.Unpublish(e.ctx, target))
			require.NoError(t, e.m.Unstage(e.ctx, res.GlobalPath))
			e.assertClean(t, res.GlobalPath)
		})
	}
}

// TestStageMountOptionsRecorded: the attach record (under the mount point)
// carries the normalized options.
func TestStageMountOptionsRecorded(t *testing.T) {
	e := newEnv(t, smallDisk)
	v := testVolume(0, "ext4")
	v.MountOptions = []string{"defaults", "noatime", "commit=17"}
	res, err := e.m.Stage(e.ctx, v)
	require.NoError(t, err)
	// The record is hidden under the mount: unmount to read it (Unstage copes).
	require.NoError(t, unix.Unmount(res.GlobalPath, 0))
	rec, err := readRecord(res.GlobalPath, ModeFilesystem)
	require.NoError(t, err)
	assert.Equal(t, []string{"noatime", "commit=17"}, rec.MountOptions)
	require.NoError(t, e.m.Unstage(e.ctx, res.GlobalPath))
	e.assertClean(t, res.GlobalPath)
}

// TestStageRefusedMountOption: the kernel refuses an option; Stage fails
// naming device, directory and options, leaves nothing mounted, and a later
// Stage without the option succeeds (without formatting again).
func TestStageRefusedMountOption(t *testing.T) {
	e := newEnv(t, smallDisk)
	v := testVolume(0, "ext4")
	v.MountOptions = []string{"noatime", "notanoption=1"}
	global, err := e.m.GlobalPath(v)
	require.NoError(t, err)
	for i := 0; i < 2; i++ { // and again: still refused, still nothing mounted
		_, err = e.m.Stage(e.ctx, v)
		require.Error(t, err)
		var me *MountError
		require.ErrorAs(t, err, &me)
		t.Logf("refused: %v", err)
		assert.True(t, errors.Is(err, unix.EINVAL), "%v", err)
		assert.Contains(t, err.Error(), "notanoption=1")
		assert.Contains(t, err.Error(), global)
		assert.Contains(t, err.Error(), me.Device)
		assert.True(t, strings.HasPrefix(me.Device, "/dev/loop"), me.Device)
		assert.Equal(t, 0, mountCount(t, global), "left a mount after a refused option")
	}

	v.MountOptions = []string{"noatime"}
	res, err := e.m.Stage(e.ctx, v)
	require.NoError(t, err)
	assert.False(t, res.Formatted, "formatted again")
	assert.Contains(t, optionList(globalMount(t, global).Options), "noatime")
	require.NoError(t, e.m.Unstage(e.ctx, global))
	e.assertClean(t, global)

	// Unstage straight after a refused Stage cleans up too.
	v.MountOptions = []string{"notanoption=1"}
	_, err = e.m.Stage(e.ctx, v)
	require.ErrorAs(t, err, new(*MountError))
	require.NoError(t, e.m.Unstage(e.ctx, global))
	e.assertClean(t, global)
}

func FuzzMountOptions(f *testing.F) {
	f.Add("noatime,commit=30", false)
	f.Add("ro,rw", false)
	f.Add("defaults,bind,x-foo", true)
	f.Add("a\x00b,,nouuid", false)
	f.Fuzz(func(t *testing.T, s string, ro bool) {
		v := Volume{TargetPortal: "10.0.0.1", IQN: testIQN, ReadOnly: ro, MountOptions: strings.Split(s, ",")}
		n, err := v.Normalize()
		if err != nil {
			return
		}
		n2, err := n.Normalize()
		if err != nil {
			t.Fatalf("normalized volume refused: %v", err)
		}
		if strings.Join(n2.MountOptions, ",") != strings.Join(n.MountOptions, ",") || n2.ReadOnly != n.ReadOnly {
			t.Fatalf("not idempotent: %q -> %q", n.MountOptions, n2.MountOptions)
		}
		flags, data := mountFlagsData(n.MountOptions)
		if n.ReadOnly && flags&unix.MS_RDONLY == 0 && !ro {
			t.Fatalf("read-only volume without MS_RDONLY: %q", n.MountOptions)
		}
		if len(data) > maxMountData || strings.ContainsAny(data, " \t\n\x00") {
			t.Fatalf("bad data string %q", data)
		}
		for _, o := range strings.Split(data, ",") {
			name, _, _ := strings.Cut(o, "=")
			if refusedMountOptions[name] || o == "defaults" {
				t.Fatalf("data string carries %q", o)
			}
		}
	})
}
