package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gosan/iscsi/blockdev/volume"
)

const testIQN = "iqn.2026-11.org.gosan.test:vol"

// parseVolume runs the stage command's flag parsing and returns the volume.
func parseVolume(t *testing.T, env map[string]string, args ...string) (volume.Volume, error) {
	t.Helper()
	g := &globals{stdout: io.Discard, stderr: io.Discard, getenv: func(k string) string { return env[k] }}
	fs := g.flagSet("stage")
	var vf volumeFlags
	vf.register(fs, g)
	vf.registerStage(fs)
	fs.Bool("json", false, "")
	if _, err := g.parse(fs, args); err != nil {
		return volume.Volume{}, err
	}
	return vf.volume(fs, g)
}

func tempFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

func TestVolumeFromFlagsAndSpec(t *testing.T) {
	spec := tempFile(t, "spec.json", fmt.Sprintf(`{"targetPortal":"10.0.0.1","portals":["10.0.0.2:3261"],"iqn":%q,"lun":3,
		"fsType":"xfs","readOnly":true,"chapAuthSession":true,"initiatorName":"iqn.2026-11.org.gosan.test:node",
		"iscsiInterface":"eth1","secretRef":{"name":"chap"}}`, testIQN))
	podSpec := tempFile(t, "pod.json", fmt.Sprintf(`{"volumeMode":"Block","iscsi":{"targetPortal":"10.0.0.1:3260","iqn":%q,"lun":0}}`, testIQN))
	flatSecret := tempFile(t, "secret.json", `{"node.session.auth.username":"u1","node.session.auth.password":"p1"}`)
	k8sSecret := tempFile(t, "k8s.json", fmt.Sprintf(`{"apiVersion":"v1","kind":"Secret","type":"kubernetes.io/iscsi-chap",
		"data":{"node.session.auth.username":%q},"stringData":{"node.session.auth.password":"p2"}}`, base64.StdEncoding.EncodeToString([]byte("u2"))))
	mountSpec := tempFile(t, "mount.json", fmt.Sprintf(`{"targetPortal":"10.0.0.1","iqn":%q,"lun":1,"fsType":"xfs","mountOptions":["nouuid","noatime"]}`, testIQN))
	env := map[string]string{"LIBISCSI_CHAP_USERNAME": "envuser", "LIBISCSI_CHAP_PASSWORD": "envpass",
		"LIBISCSI_CHAP_TARGET_USERNAME": "tgt", "LIBISCSI_CHAP_TARGET_PASSWORD": "tgtpass"}

	tests := []struct {
		name string
		env  map[string]string
		args []string
		want volume.Volume
	}{
		{"flags, first --portal is the target portal", nil,
			[]string{"--portal", "10.0.0.1", "--portal", "10.0.0.2:3261", "--iqn", testIQN, "--lun", "2"},
			volume.Volume{TargetPortal: "10.0.0.1", Portals: []string{"10.0.0.2:3261"}, IQN: testIQN, LUN: 2}},
		{"--target-portal and --portal", nil,
			[]string{"--target-portal", "10.0.0.9", "--portal", "10.0.0.1", "--iqn", testIQN, "--lun", "0", "--fs-type", "xfs",
				"--read-only", "--iface", "eth0", "--volume-mode", "block"},
			volume.Volume{TargetPortal: "10.0.0.9", Portals: []string{"10.0.0.1"}, IQN: testIQN, FSType: "xfs", ReadOnly: true,
				ISCSIInterface: "eth0", VolumeMode: volume.ModeBlock}},
		{"spec file with secrets from the environment", env,
			[]string{"--spec", spec},
			volume.Volume{TargetPortal: "10.0.0.1", Portals: []string{"10.0.0.2:3261"}, IQN: testIQN, LUN: 3, FSType: "xfs",
				ReadOnly: true, SessionCHAPAuth: true, InitiatorName: "iqn.2026-11.org.gosan.test:node", ISCSIInterface: "eth1",
				SecretRef: &volume.SecretRef{Name: "chap"},
				Secrets: volume.Secrets{volume.SecretSessionUser: "envuser", volume.SecretSessionPassword: "envpass",
					volume.SecretSessionUserIn: "tgt", volume.SecretSessionPasswordIn: "tgtpass",
					volume.SecretDiscoveryUser: "envuser", volume.SecretDiscoveryPassword: "envpass",
					volume.SecretDiscoveryUserIn: "tgt", volume.SecretDiscoveryPasswordIn: "tgtpass"}}},
		{"flags override the spec; --secret beats the environment", env,
			[]string{"--spec", spec, "--lun", "5", "--read-only=false", "--secret", flatSecret, "--initiator-name", "iqn.2026-11.org.gosan.test:other"},
			volume.Volume{TargetPortal: "10.0.0.1", Portals: []string{"10.0.0.2:3261"}, IQN: testIQN, LUN: 5, FSType: "xfs",
				SessionCHAPAuth: true, InitiatorName: "iqn.2026-11.org.gosan.test:other", ISCSIInterface: "eth1",
				SecretRef: &volume.SecretRef{Name: "chap"},
				Secrets:   volume.Secrets{volume.SecretSessionUser: "u1", volume.SecretSessionPassword: "p1"}}},
		{"Kubernetes Secret object", nil,
			[]string{"--spec", spec, "--secret", k8sSecret},
			volume.Volume{TargetPortal: "10.0.0.1", Portals: []string{"10.0.0.2:3261"}, IQN: testIQN, LUN: 3, FSType: "xfs",
				ReadOnly: true, SessionCHAPAuth: true, InitiatorName: "iqn.2026-11.org.gosan.test:node", ISCSIInterface: "eth1",
				SecretRef: &volume.SecretRef{Name: "chap"},
				Secrets:   volume.Secrets{volume.SecretSessionUser: "u2", volume.SecretSessionPassword: "p2"}}},
		{"pod spec volume entry", nil,
			[]string{"--spec", podSpec},
			volume.Volume{TargetPortal: "10.0.0.1:3260", IQN: testIQN, VolumeMode: volume.ModeBlock}},
		{"--mount-options", nil,
			[]string{"--portal", "10.0.0.1", "--iqn", testIQN, "--lun", "1", "--mount-options", "noatime,commit=30,data=ordered"},
			volume.Volume{TargetPortal: "10.0.0.1", IQN: testIQN, LUN: 1, MountOptions: []string{"noatime", "commit=30", "data=ordered"}}},
		{"mountOptions in the spec", nil,
			[]string{"--spec", mountSpec},
			volume.Volume{TargetPortal: "10.0.0.1", IQN: testIQN, LUN: 1, FSType: "xfs", MountOptions: []string{"nouuid", "noatime"}}},
		{"--mount-options overrides the spec's", nil,
			[]string{"--spec", mountSpec, "--mount-options", "discard"},
			volume.Volume{TargetPortal: "10.0.0.1", IQN: testIQN, LUN: 1, FSType: "xfs", MountOptions: []string{"discard"}}},
		{"empty --mount-options clears the spec's", nil,
			[]string{"--spec", mountSpec, "--mount-options", ""},
			volume.Volume{TargetPortal: "10.0.0.1", IQN: testIQN, LUN: 1, FSType: "xfs"}},
		{"no CHAP: environment secrets are not attached", env,
			[]string{"--portal", "10.0.0.1", "--iqn", testIQN, "--lun", "1"},
			volume.Volume{TargetPortal: "10.0.0.1", Portals: []string{}, IQN: testIQN, LUN: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := parseVolume(t, tc.env, tc.args...)
			require.NoError(t, err)
			if len(tc.want.Portals) == 0 && len(v.Portals) == 0 {
				tc.want.Portals, v.Portals = nil, nil
			}
			assert.Equal(t, tc.want, v)
		})
	}
}

func TestVolumeUsageErrors(t *testing.T) {
	dir := t.TempDir()
	unknown := tempFile(t, "unknown.json", fmt.Sprintf(`{"targetPortal":"127.0.0.1:1","iqn":%q,"lun":1,"fsTyp":"ext4"}`, testIQN))
	badSecret := tempFile(t, "bad.json", `{"node.session.auth.password": "leaky-secret-1234"`)
	okSpec := tempFile(t, "ok.json", fmt.Sprintf(`{"targetPortal":"10.0.0.1","iqn":%q,"lun":1}`, testIQN))
	vol := []string{"--portal", "10.0.0.1", "--iqn", testIQN, "--lun", "1", "--root", dir}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"stage", "--root", dir}, "targetPortal"},
		{[]string{"stage", "--portal", "10.0.0.1", "--root", dir}, "iqn"},
		{[]string{"stage", "--portal", "10.0.0.1", "--iqn", "nope", "--root", dir}, "iqn"},
		{[]string{"stage", "--portal", "10.0.0.1", "--iqn", testIQN, "--lun", "x", "--root", dir}, "--lun"},
		{[]string{"stage", "--portal", "10.0.0.1", "--iqn", testIQN, "--lun", "-1", "--root", dir}, "lun"},
		{append([]string{"stage", "--volume-mode", "raw"}, vol...), "--volume-mode"},
		{append([]string{"stage", "--chap-session"}, vol...), "node.session.auth"},
		{append([]string{"stage", "extra"}, vol...), "flags only"},
		{[]string{"stage", "--spec", filepath.Join(dir, "missing.json"), "--root", dir}, "--spec"},
		{[]string{"stage", "--spec", unknown, "--root", dir}, "unknown field"},
		{[]string{"stage", "--spec", okSpec, "--secret", badSecret, "--chap-session", "--root", dir}, "--secret"},
		{[]string{"stage", "--spec", okSpec, "--root", "relative"}, "--root"},
		{append([]string{"stage", "--mount-options", "noatime,bind"}, vol...), `mountOptions[1]: "bind" is not allowed`},
		{append([]string{"stage", "--mount-options", "noatime,,nodev"}, vol...), "mountOptions[1]: empty option"},
		{append([]string{"stage", "--mount-options", "rw", "--read-only"}, vol...), "contradicts readOnly"},
		{append([]string{"stage", "--mount-options", "noatime", "--volume-mode", "block"}, vol...), "not allowed with volumeMode Block"},
		{append([]string{"publish", "--target-path", "/mnt/x", "--mount-options", "noatime"}, vol...), "mount-options"},
		{append([]string{"publish"}, vol...), "--target-path"},
		{append([]string{"publish", "--target-path", "rel"}, vol...), "--target-path"},
		{append([]string{"publish", "--target-path", "/mnt/x", "--fs-group", "staff"}, vol...), "--fs-group"},
		{[]string{"publish", "--target-path", "/mnt/x", "--root", dir}, "targetPortal"},
		{[]string{"unpublish", "--root", dir}, "--target-path"},
		{[]string{"unstage", "--root", dir}, "targetPortal"},
		{[]string{"unstage", "--global-path", "rel", "--root", dir}, "--global-path"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errs := ctl(t, nil, nil, tc.args...)
			assert.Equal(t, 2, code, errs)
			assert.Empty(t, out)
			assert.Equal(t, 1, strings.Count(errs, "\n"), "one line: %q", errs)
			assert.True(t, strings.HasPrefix(errs, "iscsictl "+tc.args[0]+": "), errs)
			assert.Contains(t, errs, tc.want)
			assert.NotContains(t, errs, "leaky-secret-1234")
		})
	}
}

// TestVolumeSecretsNeverPrinted runs the volume commands with secrets in the
// environment and in a --secret file, with --verbose and --json; on this
// host they fail when attaching (no iscsi_tcp, nothing listens on port 1),
// and the secrets appear neither on stdout nor on stderr.
func TestVolumeSecretsNeverPrinted(t *testing.T) {
	const fileSecret, envSecret, envTargetSecret = "file-secret-8a7b6c5d", "env-secret-1f2e3d4c", "env-target-secret-99"
	env := map[string]string{"LIBISCSI_CHAP_USERNAME": "user", "LIBISCSI_CHAP_PASSWORD": envSecret,
		"LIBISCSI_CHAP_TARGET_USERNAME": "tuser", "LIBISCSI_CHAP_TARGET_PASSWORD": envTargetSecret}
	secret := tempFile(t, "secret.json", fmt.Sprintf(`{"node.session.auth.username":"user","node.session.auth.password":%q}`, fileSecret))
	spec := tempFile(t, "spec.json", fmt.Sprintf(`{"targetPortal":"127.0.0.1:1","iqn":%q,"lun":1,"chapAuthSession":true,"chapAuthDiscovery":true}`, testIQN))
	root := t.TempDir()
	for _, args := range [][]string{
		{"--verbose", "stage", "--spec", spec, "--secret", secret, "--root", root, "--json"},
		{"--verbose", "stage", "--spec", spec, "--root", root},
		{"stage", "--portal", "127.0.0.1:1", "--iqn", testIQN, "--lun", "1", "--chap-session", "--root", root},
		{"--verbose", "unstage", "--spec", spec, "--root", root, "--json"},
		{"--verbose", "publish", "--spec", spec, "--root", root, "--target-path", filepath.Join(root, "p")},
	} {
		code, out, errs := ctl(t, env, nil, args...)
		assert.NotEqual(t, 0, code, "%v must fail on this host: %s", args, errs)
		for _, s := range []string{fileSecret, envSecret, envTargetSecret} {
			assert.NotContains(t, out, s, "%v printed a secret", args)
			assert.NotContains(t, errs, s, "%v printed a secret", args)
		}
	}
}

func TestVolumeCommandsOnNothing(t *testing.T) {
	root := t.TempDir()
	code, out, errs := ctl(t, nil, nil, "unpublish", "--root", root, "--target-path", filepath.Join(root, "never-published"), "--json")
	require.Equal(t, 0, code, errs)
	var got map[string]string
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	assert.Equal(t, map[string]string{"target_path": filepath.Join(root, "never-published")}, got)
	code, out, errs = ctl(t, nil, nil, "unpublish", "--root", root, "--target-path", filepath.Join(root, "never-published"))
	require.Equal(t, 0, code, errs)
	assert.Equal(t, "unpublished "+filepath.Join(root, "never-published")+"\n", out)
}

// TestPublishAndUnstageNeedNoSecrets: neither logs in, so a CHAP volume's
// spec is enough without --secret; on this host nothing is staged (exit 1).
func TestPublishAndUnstageNeedNoSecrets(t *testing.T) {
	root := t.TempDir()
	spec := tempFile(t, "spec.json", fmt.Sprintf(`{"targetPortal":"127.0.0.1:1","iqn":%q,"lun":1,"chapAuthSession":true}`, testIQN))
	code, _, errs := ctl(t, nil, nil, "publish", "--spec", spec, "--root", root, "--target-path", filepath.Join(root, "p"))
	assert.Equal(t, 1, code, errs)
	assert.Contains(t, errs, "not staged")
	code, out, errs := ctl(t, nil, nil, "unstage", "--spec", spec, "--root", root)
	assert.Equal(t, 0, code, "unstaging what is not staged succeeds: %s", errs)
	assert.Contains(t, out, "unstaged "+root+"/iscsi/iface-default/127.0.0.1:1-"+testIQN+"-lun-1")
	code, _, errs = ctl(t, nil, nil, "stage", "--spec", spec, "--root", root)
	assert.Equal(t, 2, code, "stage logs in: it needs the secrets")
	assert.Contains(t, errs, "node.session.auth")
}

func TestParseSecretDoesNotQuoteContent(t *testing.T) {
	for _, in := range []string{`{"a": "s3cr3t-value"`, `["s3cr3t-value"]`, `{"a": 1, "b": "s3cr3t-value"}`, `s3cr3t-value`} {
		_, err := parseSecret([]byte(in))
		require.Error(t, err, in)
		assert.NotContains(t, err.Error(), "s3cr3t-value")
	}
}

func FuzzParseSecret(f *testing.F) {
	f.Add([]byte(`{"node.session.auth.username":"u","node.session.auth.password":"p"}`))
	f.Add([]byte(`{"kind":"Secret","data":{"a":"YWJj"},"stringData":{"b":"c"}}`))
	f.Add([]byte(`{"data":{"a":"!!"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseSecret(b)
		if err != nil {
			return
		}
		_ = s.String()
	})
}

func FuzzDecodeSpec(f *testing.F) {
	f.Add([]byte(`{"targetPortal":"10.0.0.1","iqn":"iqn.2026-11.x:y","lun":1}`))
	f.Add([]byte(`{"iscsi":{"targetPortal":"10.0.0.1","iqn":"iqn.2026-11.x:y"},"volumeMode":"Block"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var v volume.Volume
		if decodeSpec(b, &v) == nil {
			_ = v.Validate()
		}
	})
}
