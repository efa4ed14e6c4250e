//go:build linux

package tgtd

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const showSample = `Target 1: iqn.2026-11.org.gosan.test:plain
    System information:
        Driver: iscsi
        State: ready
    I_T nexus information:
        I_T nexus: 3
            Initiator: iqn.2026-11.org.gosan.test:init alias: none
            Connection: 0
                IP Address: 127.0.0.1
    LUN information:
        LUN: 0
            Type: controller
            SCSI ID: IET     00010000
            SCSI SN: beaf10
            Size: 0 MB, Block size: 1
            Online: Yes
            Removable media: No
            Prevent removal: No
            Readonly: No
            SWP: No
            Thin-provisioning: No
            Backing store type: null
            Backing store path: None
            Backing store flags: 
        LUN: 1
            Type: disk
            SCSI ID: IET     00010001
            SCSI SN: beaf11
            Size: 67 MB, Block size: 512
            Online: Yes
            Removable media: No
            Prevent removal: No
            Readonly: No
            SWP: No
            Thin-provisioning: No
            Backing store type: rdwr
            Backing store path: /tmp/x/backing-1.img
            Backing store flags: 
    Account information:
        u1
        u2 (outgoing)
    ACL information:
        ALL
Target 6: iqn.2026-11.org.gosan.test:null
    System information:
        Driver: iscsi
        State: ready
    I_T nexus information:
    LUN information:
        LUN: 1
            Type: disk
            Size: 1099512 MB, Block size: 4096
            Backing store type: null
            Backing store path: null-1099511627776
    Account information:
    ACL information:
        iqn.2026-11.org.gosan.test:allowed-initiator
`

func TestParseShow(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Target
		wantErr bool
	}{
		{"empty", "", nil, false},
		{"sample", showSample, []Target{
			{TID: 1, Name: "iqn.2026-11.org.gosan.test:plain", Driver: "iscsi", State: "ready",
				Sessions: []Session{{SID: 3, Initiator: "iqn.2026-11.org.gosan.test:init", Alias: "none",
					Connections: []Connection{{CID: 0, IP: "127.0.0.1"}}}},
				LUNs: []LUN{
					{LUN: 0, Type: "controller", SizeMB: 0, BlockSize: 1, Online: true, BackingType: "null", BackingPath: "None"},
					{LUN: 1, Type: "disk", SizeMB: 67, BlockSize: 512, Online: true, BackingType: "rdwr", BackingPath: "/tmp/x/backing-1.img"},
				},
				Accounts: []Account{{User: "u1"}, {User: "u2", Outgoing: true}},
				ACLs:     []string{"ALL"}},
			{TID: 6, Name: "iqn.2026-11.org.gosan.test:null", Driver: "iscsi", State: "ready",
				LUNs: []LUN{{LUN: 1, Type: "disk", SizeMB: 1099512, BlockSize: 4096, BackingType: "null",
					BackingPath: "null-1099511627776"}},
				ACLs: []string{"iqn.2026-11.org.gosan.test:allowed-initiator"}},
		}, false},
		{"bad tid", "Target x: iqn\n", nil, true},
		{"bad size", "Target 1: iqn\n    LUN information:\n        LUN: 1\n            Size: lots MB, Block size: 512\n", nil, true},
		{"bad sid", "Target 1: iqn\n    I_T nexus information:\n        I_T nexus: -1\n", nil, true},
		{"lines before a target are ignored", "garbage\n    more: 1\n", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseShow(tc.in)
			if tc.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseParams(t *testing.T) {
	m := ParseParams("nop_interval=0\nMaxRecvDataSegmentLength=262144\nHeaderDigest=None\nnoise\n")
	assert.Equal(t, map[string]string{"nop_interval": "0", "MaxRecvDataSegmentLength": "262144", "HeaderDigest": "None"}, m)
}

func TestSizeMB(t *testing.T) {
	for _, tc := range []struct{ in, want int64 }{{0, 0}, {64 << 20, 67}, {1 << 30, 1074}, {1 << 40, 1099512}, {16 << 20, 17}} {
		assert.Equal(t, tc.want, SizeMB(tc.in), "%d", tc.in)
	}
}

func TestRedact(t *testing.T) {
	got := redact([]string{"--mode", "account", "--user", "u", "--password", "s3cr3t-value"})
	assert.Equal(t, []string{"--mode", "account", "--user", "u", "--password", "***"}, got)
}

func FuzzParseShow(f *testing.F) {
	f.Add(showSample)
	f.Add("Target 1: a\n    LUN information:\n        LUN: 1\n            Size: 1 MB\n")
	f.Add("Target 1: a\n    I_T nexus information:\n            Connection: 1\n                IP Address: x\n")
	f.Fuzz(func(t *testing.T, in string) {
		ts, err := ParseShow(in)
		if err != nil {
			return
		}
		for _, tg := range ts {
			_ = tg.LUN(0)
		}
	})
}
