package volume

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ifaceFixture is a node with network device eth7 and three open-iscsi
// iface records.
func ifaceFixture(t *testing.T) (ifaceDir, sysfs string) {
	ifaceDir, sysfs = t.TempDir(), t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(sysfs, "class", "net", "eth7"), 0o755))
	for name, body := range map[string]string{
		"storage0":                 "# BEGIN RECORD 2.1.8\niface.iscsi_ifacename = storage0\niface.net_ifacename = eth7\niface.transport_name = tcp\n# END RECORD\n",
		"plain":                    "iface.iscsi_ifacename = plain\niface.net_ifacename = <empty>\niface.transport_name = tcp\n",
		"hba0":                     "iface.iscsi_ifacename = hba0\niface.transport_name = qla4xxx\niface.hwaddress = 00:0e:1e:04:93:92\n",
		"cxgb4i.00:07:43:28:b2:58": "iface.transport_name = cxgb4i\n",
	} {
		require.NoError(t, os.WriteFile(filepath.Join(ifaceDir, name), []byte(body), 0o600))
	}
	return ifaceDir, sysfs
}

func TestResolveIface(t *testing.T) {
	ifaceDir, sysfs := ifaceFixture(t)
	for _, tc := range []struct {
		name, netdev string
		err          error
	}{
		{"default", "", nil},
		{"storage0", "eth7", nil},                             // a tcp iface record bound to a NIC
		{"plain", "", nil},                                    // a tcp iface record bound to none
		{"eth7", "eth7", nil},                                 // a network device
		{"hba0", "", ErrIfaceUnsupported},                     // a record with an offload transport
		{"cxgb4i.00:07:43:28:b2:58", "", ErrIfaceUnsupported}, // offload default names
		{"bnx2i.00:10:18:aa:bb:cc", "", ErrIfaceUnsupported},
		{"be2iscsi", "", ErrIfaceUnsupported},
		{"qla4xxx.1", "", ErrIfaceUnsupported},
		{"iser", "", ErrIfaceUnsupported},
		{"eth9", "", ErrIfaceUnknown},
	} {
		netdev, err := resolveIface(ifaceDir, sysfs, tc.name)
		if tc.err != nil {
			require.ErrorIs(t, err, tc.err, tc.name)
			var ie *IfaceError
			require.ErrorAs(t, err, &ie, tc.name)
			assert.Equal(t, tc.name, ie.Iface)
			continue
		}
		require.NoError(t, err, tc.name)
		assert.Equal(t, tc.netdev, netdev, tc.name)
	}
}

// TestStageIface: Stage binds the sessions of a volume whose iface names
// a NIC (directly or through an iface record) and refuses offload and
// unknown ifaces before attaching anything.
func TestStageIface(t *testing.T) {
	e := newEnv(t, smallDisk)
	ifaceDir, sysfs := ifaceFixture(t)
	e.m.ifaces, e.m.sysfs = ifaceDir, sysfs
	for i, tc := range []struct{ iface, netdev string }{{"storage0", "eth7"}, {"eth7", "eth7"}, {"default", ""}} {
		v := testVolume(int32(i), "ext4")
		v.VolumeMode = ModeBlock
		v.ISCSIInterface = tc.iface
		res, err := e.m.Stage(e.ctx, v)
		require.NoError(t, err, tc.iface)
		spec := e.att.specs[len(e.att.specs)-1]
		assert.Equal(t, tc.netdev, spec.NetDev, tc.iface)
		assert.Equal(t, tc.iface, spec.Iface)
		assert.Contains(t, res.GlobalPath, "/iface-"+tc.iface+"/")
		require.NoError(t, e.m.Unstage(e.ctx, res.GlobalPath))
	}
	n := len(e.att.specs)
	for _, iface := range []string{"hba0", "bnx2i.00:10:18:aa:bb:cc", "nosuch"} {
		v := testVolume(0, "ext4")
		v.ISCSIInterface = iface
		_, err := e.m.Stage(e.ctx, v)
		var ie *IfaceError
		require.ErrorAs(t, err, &ie, iface)
	}
	assert.Len(t, e.att.specs, n, "attached through an iface it cannot honour")
}
