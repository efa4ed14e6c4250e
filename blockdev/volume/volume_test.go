package volume

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	testIQN    = "iqn.2024-01.org.gosan:disk1"
	testSecret = "s3cr3t-Pa55w0rd-XYZ"
)

func TestNormalize(t *testing.T) {
	base := Volume{TargetPortal: "10.0.0.1", IQN: testIQN, LUN: 3}
	tests := []struct {
		name    string
		mod     func(v *Volume)
		check   func(t *testing.T, n Volume)
		errKeys []string // fields expected in the error
	}{
		{name: "defaults", check: func(t *testing.T, n Volume) {
			assert.Equal(t, "10.0.0.1:3260", n.TargetPortal)
			assert.Equal(t, "ext4", n.FSType)
			assert.Equal(t, "default", n.ISCSIInterface)
			assert.Equal(t, ModeFilesystem, n.VolumeMode)
		}},
		{name: "ipv6 and dedup", mod: func(v *Volume) {
			v.TargetPortal = "[fd00::1]"
			v.Portals = []string{"[fd00::1]:3260", "fd00::2", "host-b:3261"}
		}, check: func(t *testing.T, n Volume) {
			assert.Equal(t, "[fd00::1]:3260", n.TargetPortal)
			assert.Equal(t, []string{"[fd00::2]:3260", "host-b:3261"}, n.Portals)
		}},
		{name: "block xfs", mod: func(v *Volume) { v.VolumeMode = ModeBlock; v.FSType = "xfs" }, check: func(t *testing.T, n Volume) {
			assert.Equal(t, ModeBlock, n.VolumeMode)
			assert.Equal(t, "xfs", n.FSType)
		}},
		{name: "session chap", mod: func(v *Volume) {
			v.SessionCHAPAuth = true
			v.Secrets = Secrets{SecretSessionUser: "u", SecretSessionPassword: testSecret}
		}},
		{name: "discovery chap kubelet spelling", mod: func(v *Volume) {
			v.DiscoveryCHAPAuth = true
			v.Secrets = Secrets{"discovery.sendtargets.auth.username": "u", "discovery.sendtargets.auth.password": testSecret}
		}},
		{name: "missing everything", mod: func(v *Volume) { *v = Volume{LUN: -1} }, errKeys: []string{"targetPortal", "iqn", "lun"}},
		{name: "bad portal port", mod: func(v *Volume) { v.Portals = []string{"10.0.0.2:99999"} }, errKeys: []string{"portals[0]"}},
		{name: "bad portal chars", mod: func(v *Volume) { v.TargetPortal = "a/b" }, errKeys: []string{"targetPortal"}},
		{name: "open-iscsi portal,tag spelling", mod: func(v *Volume) {
			v.TargetPortal = "10.0.0.1:3260,1"
			v.Portals = []string{"[fd00::3]:3261,2"}
		}, check: func(t *testing.T, n Volume) {
			assert.Equal(t, "10.0.0.1:3260", n.TargetPortal, "tag dropped")
			assert.Equal(t, []string{"[fd00::3]:3261"}, n.Portals)
		}},
		{name: "bad portal space", mod: func(v *Volume) { v.Portals = []string{"10.0.0.2 :3260"} }, errKeys: []string{"portals[0]"}},
		{name: "bad portal brackets", mod: func(v *Volume) { v.TargetPortal = "[10.0.0.1]" }, errKeys: []string{"targetPortal"}},
		{name: "bad portal host", mod: func(v *Volume) { v.TargetPortal = "a%b:3260" }, errKeys: []string{"targetPortal"}},
		{name: "bad iqn", mod: func(v *Volume) { v.IQN = "foo bar" }, errKeys: []string{"iqn"}},
		{name: "bad initiator", mod: func(v *Volume) { v.InitiatorName = "x" }, errKeys: []string{"initiatorName"}},
		{name: "bad iface", mod: func(v *Volume) { v.ISCSIInterface = "../x" }, errKeys: []string{"iscsiInterface"}},
		{name: "bad fs", mod: func(v *Volume) { v.FSType = "../ext4" }, errKeys: []string{"fsType"}},
		{name: "bad fs case", mod: func(v *Volume) { v.FSType = "XFS" }, errKeys: []string{"fsType"}},
		{name: "btrfs", mod: func(v *Volume) { v.FSType = "btrfs" }, check: func(t *testing.T, n Volume) {
			assert.Equal(t, "btrfs", n.FSType, "any fsType with a mkfs.<fsType>")
		}},
		{name: "bad mode", mod: func(v *Volume) { v.VolumeMode = "raw" }, errKeys: []string{"volumeMode"}},
		{name: "lun too big", mod: func(v *Volume) { v.LUN = 16384 }, errKeys: []string{"lun"}},
		{name: "chap without secret", mod: func(v *Volume) { v.SessionCHAPAuth = true }, errKeys: []string{"chapAuthSession"}},
		{name: "mutual chap half", mod: func(v *Volume) {
			v.SessionCHAPAuth = true
			v.Secrets = Secrets{SecretSessionUser: "u", SecretSessionPassword: testSecret, SecretSessionUserIn: "t"}
		}, errKeys: []string{"chapAuthSession"}},
		{name: "discovery chap missing", mod: func(v *Volume) {
			v.DiscoveryCHAPAuth = true
			v.Secrets = Secrets{SecretDiscoveryUser: "u"}
		}, errKeys: []string{"chapAuthDiscovery"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := base
			if tc.mod != nil {
				tc.mod(&v)
			}
			n, err := v.Normalize()
			if len(tc.errKeys) == 0 {
				require.NoError(t, err)
				require.NoError(t, v.Validate())
				if tc.check != nil {
					tc.check(t, n)
				}
				return
			}
			assert.Equal(t, tc.errKeys, problemFields(t, err))
			var fe *FieldError
			assert.ErrorAs(t, err, &fe)
			assert.NotContains(t, err.Error(), testSecret)
		})
	}
}

// problemFields returns the fields a *ValidationError names, in order.
func problemFields(t *testing.T, err error) []string {
	t.Helper()
	require.Error(t, err)
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	var fields []string
	for _, p := range ve.Problems {
		fields = append(fields, p.Field)
	}
	return fields
}

func TestSecretsNeverPrinted(t *testing.T) {
	v := Volume{
		TargetPortal: "10.0.0.1:3260", IQN: testIQN, SessionCHAPAuth: true, SecretRef: &SecretRef{Name: "chap"},
		Secrets: Secrets{SecretSessionUser: "alice", SecretSessionPassword: testSecret,
			SecretSessionUserIn: "tgt", SecretSessionPasswordIn: testSecret + "in"},
	}
	c, err := v.Secrets.sessionCHAP()
	require.NoError(t, err)
	require.Equal(t, testSecret, c.Secret)
	spec := AttachSpec{SessionKey: SessionKey{Portal: "p", TargetName: testIQN}, SessionCHAP: c}

	var logBuf bytes.Buffer
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("x", "volume", v, "secrets", v.Secrets, "chap", c, "spec", spec)
	js, err := json.Marshal(v)
	require.NoError(t, err)
	jc, err := json.Marshal(c)
	require.NoError(t, err)
	for _, s := range []string{
		fmt.Sprintf("%v", v), fmt.Sprintf("%+v", v), fmt.Sprintf("%#v", v), fmt.Sprint(v.Secrets),
		fmt.Sprintf("%v %+v %#v", c, c, c), spec.String(), fmt.Sprintf("%+v", spec),
		string(js), string(jc), logBuf.String(),
	} {
		assert.NotContains(t, s, testSecret)
	}
	// JSON uses the pod spec's names and round-trips the non-secret fields.
	assert.Contains(t, string(js), `"targetPortal":"10.0.0.1:3260"`)
	assert.Contains(t, string(js), `"chapAuthSession":true`)
	assert.Contains(t, string(js), `"secretRef":{"name":"chap"}`)
	var back Volume
	require.NoError(t, json.Unmarshal([]byte(`{"targetPortal":"a:1","portals":["b:2"],"iqn":"`+testIQN+
		`","lun":2,"fsType":"xfs","readOnly":true,"chapAuthDiscovery":true,"chapAuthSession":true,`+
		`"initiatorName":"iqn.2024-01.org.gosan:node","iscsiInterface":"eth1","volumeMode":"Block"}`), &back))
	assert.Equal(t, Volume{TargetPortal: "a:1", Portals: []string{"b:2"}, IQN: testIQN, LUN: 2, FSType: "xfs",
		ReadOnly: true, DiscoveryCHAPAuth: true, SessionCHAPAuth: true, InitiatorName: "iqn.2024-01.org.gosan:node",
		ISCSIInterface: "eth1", VolumeMode: ModeBlock}, back)
}
