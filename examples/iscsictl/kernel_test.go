package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeSysfs writes the sysfs layout of iSCSI sessions that package blockdev
// reads (see blockdev/sysfs.go):
//
//	devices/platform/host<H>/session<S>/iscsi_session/session<S>/{targetname,...}
//	devices/platform/host<H>/session<S>/connection<S>:0/iscsi_connection/connection<S>:0/persistent_{address,port}
//	devices/platform/host<H>/session<S>/target<H>:0:0/<H>:0:0:<L>/block/<sd>
//	class/iscsi_session/session<S>, class/iscsi_connection/connection<S>:0 (symlinks)
func fakeSysfs(t *testing.T) string {
	root := filepath.Join(t.TempDir(), "sys")
	for _, p := range []string{"class/iscsi_session", "class/iscsi_connection", "class/scsi_host", "block", "devices/platform"} {
		require.NoError(t, os.MkdirAll(filepath.Join(root, p), 0o755))
	}
	return root
}

func writeFile(t *testing.T, p, v string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(v+"\n"), 0o644))
}

func addFakeSession(t *testing.T, root string, sid, host uint32, target, addr, port, state string, luns map[uint64]string) {
	t.Helper()
	sd := filepath.Join(root, "devices/platform", fmt.Sprintf("host%d", host), fmt.Sprintf("session%d", sid))
	is := filepath.Join(sd, "iscsi_session", fmt.Sprintf("session%d", sid))
	writeFile(t, filepath.Join(is, "targetname"), target)
	writeFile(t, filepath.Join(is, "ifacename"), "default")
	writeFile(t, filepath.Join(is, "initiatorname"), "iqn.2026-11.org.gosan.test:host")
	writeFile(t, filepath.Join(is, "isid"), "00023d000001")
	writeFile(t, filepath.Join(is, "state"), state)
	require.NoError(t, os.Symlink(fmt.Sprintf("../../../session%d", sid), filepath.Join(is, "device")))
	require.NoError(t, os.Symlink(is, filepath.Join(root, "class/iscsi_session", fmt.Sprintf("session%d", sid))))
	cn := fmt.Sprintf("connection%d:0", sid)
	ic := filepath.Join(sd, cn, "iscsi_connection", cn)
	writeFile(t, filepath.Join(ic, "persistent_address"), addr)
	writeFile(t, filepath.Join(ic, "persistent_port"), port)
	require.NoError(t, os.Symlink(ic, filepath.Join(root, "class/iscsi_connection", cn)))
	for lun, block := range luns {
		d := filepath.Join(sd, fmt.Sprintf("target%d:0:0", host), fmt.Sprintf("%d:0:0:%d", host, lun))
		require.NoError(t, os.MkdirAll(filepath.Join(d, "block", block), 0o755))
		writeFile(t, filepath.Join(root, "block", block, "size"), "131072")
	}
}

func TestSessionsFromSysfs(t *testing.T) {
	root := fakeSysfs(t)

	code, out, errs := ctl(t, nil, nil, "sessions", "--json", "--sysfs", root)
	require.Equal(t, 0, code, errs)
	assert.Equal(t, "[]\n", out, "no session is an empty JSON list, not null")

	addFakeSession(t, root, 4, 9, "iqn.2026-11.org.gosan.test:b", "10.0.0.2", "3261", "FAILED", nil)
	addFakeSession(t, root, 2, 5, "iqn.2026-11.org.gosan.test:a", "10.0.0.1", "3260", "LOGGED_IN",
		map[uint64]string{2: "sdc", 1: "sdb"})

	code, out, errs = ctl(t, nil, nil, "sessions", "--json", "--sysfs", root)
	require.Equal(t, 0, code, errs)
	var got []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	require.Len(t, got, 2)
	for _, k := range []string{"sid", "host", "target_name", "portal", "iface", "initiator_name", "isid", "state", "devices"} {
		assert.Contains(t, got[0], k, "JSON field %s", k)
	}
	var ss []sessionOutput
	require.NoError(t, json.Unmarshal([]byte(out), &ss))
	assert.Equal(t, sessionOutput{SID: 2, Host: 5, TargetName: "iqn.2026-11.org.gosan.test:a", Portal: "10.0.0.1:3260",
		Iface: "default", InitiatorName: "iqn.2026-11.org.gosan.test:host", ISID: "00023d000001", State: "LOGGED_IN",
		Devices: []deviceOutput{{LUN: 1, SCSIAddress: "5:0:0:1", Path: "/dev/sdb"}, {LUN: 2, SCSIAddress: "5:0:0:2", Path: "/dev/sdc"}}}, ss[0])
	assert.Equal(t, "FAILED", ss[1].State)
	assert.Equal(t, []deviceOutput{}, ss[1].Devices)

	code, out, errs = ctl(t, nil, nil, "sessions", "--sysfs", root)
	require.Equal(t, 0, code, errs)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3)
	assert.Equal(t, []string{"SID", "HOST", "TARGET", "PORTAL", "IFACE", "STATE", "DEVICES"}, strings.Fields(lines[0]))
	assert.Equal(t, []string{"2", "5", "iqn.2026-11.org.gosan.test:a", "10.0.0.1:3260", "default", "LOGGED_IN", "sdb(lun", "1),sdc(lun", "2)"}, strings.Fields(lines[1]))
	assert.Equal(t, []string{"4", "9", "iqn.2026-11.org.gosan.test:b", "10.0.0.2:3261", "default", "FAILED", "-"}, strings.Fields(lines[2]))
}

func TestDetachWhatIsGone(t *testing.T) {
	root := fakeSysfs(t)
	addFakeSession(t, root, 2, 5, "iqn.2026-11.org.gosan.test:a", "10.0.0.1", "3260", "LOGGED_IN", map[uint64]string{1: "sdb"})
	tests := []struct {
		name string
		args []string
	}{
		{"no session for the URL", []string{"iscsi://10.0.0.9/iqn.2026-11.org.gosan.test:a/1"}},
		{"other target", []string{"iscsi://10.0.0.1/iqn.2026-11.org.gosan.test:zz/1"}},
		{"other iface", []string{"iscsi://10.0.0.1/iqn.2026-11.org.gosan.test:a/1", "--iface", "eth9"}},
		{"LUN gone, other LUN on the session", []string{"iscsi://10.0.0.1/iqn.2026-11.org.gosan.test:a/7"}},
		{"device path that does not exist", []string{"/dev/gosan-no-such-device"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"detach", "--sysfs", root}, tc.args...)
			code, out, errs := ctl(t, nil, nil, args...)
			require.Equal(t, 0, code, errs)
			assert.Contains(t, out, "not attached")
			code, out, errs = ctl(t, nil, nil, append(args, "--json")...)
			require.Equal(t, 0, code, errs)
			var d detachOutput
			require.NoError(t, json.Unmarshal([]byte(out), &d))
			assert.Equal(t, detachOutput{Gone: true}, d)
		})
	}
}

func TestKernelCommandUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"attach"}, "want one LUN URL"},
		{[]string{"attach", "iscsi://h/iqn.2026-11.org.gosan.test:a/1", "iscsi://h/iqn.2026-11.org.gosan.test:a/2"}, "want one LUN URL"},
		{[]string{"attach", "iscsi://h/iqn.2026-11.org.gosan.test:a"}, "names no LUN"},
		{[]string{"attach", "iscsi://h"}, "names no LUN"},
		{[]string{"attach", "http://h/x/1"}, "iscsi"},
		{[]string{"attach", "iscsi://h/iqn.2026-11.org.gosan.test:a/1?header_digest=crc32c"}, "digests are not supported"},
		{[]string{"attach", "iscsi://h/iqn.2026-11.org.gosan.test:a/1", "--bogus"}, "not defined"},
		{[]string{"detach"}, "want one LUN URL or device"},
		{[]string{"detach", "sdb"}, "neither an iscsi:// URL nor a device path"},
		{[]string{"detach", "iscsi://h/iqn.2026-11.org.gosan.test:a"}, "names no LUN"},
		{[]string{"sessions", "extra"}, "takes no arguments"},
		{[]string{"supervise", "iscsi://h/iqn.2026-11.org.gosan.test:a"}, "names no LUN"},
		{[]string{"supervise", "--rescan", "-1s"}, "must not be negative"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errs := ctl(t, nil, nil, tc.args...)
			assert.Equal(t, 2, code)
			assert.Empty(t, out)
			assert.Equal(t, 1, strings.Count(errs, "\n"), "one line: %q", errs)
			assert.True(t, strings.HasPrefix(errs, "iscsictl "+tc.args[0]+": "), errs)
			assert.Contains(t, errs, tc.want)
		})
	}
}

// TestAttachFailureIsOneLineWithoutSecrets: attach fails at runtime on this
// host (no iscsi_tcp, or nothing listens on port 1): exit 1, one line, and
// neither the URL's nor the environment's secrets appear anywhere.
func TestAttachFailureIsOneLineWithoutSecrets(t *testing.T) {
	env := map[string]string{"LIBISCSI_CHAP_TARGET_USERNAME": "tuser", "LIBISCSI_CHAP_TARGET_PASSWORD": "env-target-secret-5150"}
	for _, args := range [][]string{
		{"attach", "iscsi://user%url-secret-4711@127.0.0.1:1/iqn.2026-11.org.gosan.test:a/1"},
		{"--verbose", "attach", "--json", "iscsi://user%url-secret-4711@127.0.0.1:1/iqn.2026-11.org.gosan.test:a/1"},
		{"supervise", "iscsi://user%url-secret-4711@127.0.0.1:1/iqn.2026-11.org.gosan.test:a/1"},
	} {
		code, out, errs := ctl(t, env, nil, args...)
		assert.Equal(t, 1, code, errs)
		assert.NotContains(t, out+errs, "url-secret-4711")
		assert.NotContains(t, out+errs, "env-target-secret-5150")
		if args[0] != "--verbose" {
			assert.Equal(t, 1, strings.Count(errs, "\n"), "one line: %q", errs)
			assert.True(t, strings.HasPrefix(errs, "iscsictl: "), errs)
		}
	}
}

func TestUsageListsKernelAndVolumeCommands(t *testing.T) {
	code, out, _ := ctl(t, nil, nil, "help")
	require.Equal(t, 0, code)
	for _, c := range []string{"attach URL", "detach URL|/dev/sdX", "sessions [--json]", "supervise [URL...]",
		"stage VOLUME", "publish VOLUME --target-path", "unpublish --target-path", "unstage VOLUME|--global-path",
		"--spec FILE", "--secret FILE", "/var/lib/gosan-iscsi", "no YAML"} {
		assert.Contains(t, out, c)
	}
}
