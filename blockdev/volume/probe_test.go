package volume

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// img returns a zeroed probe buffer with patches applied.
func img(patches map[int]string) []byte {
	b := make([]byte, probeLen)
	for off, s := range patches {
		copy(b[off:], s)
	}
	return b
}

// mbrImage writes a DOS partition table with one Linux partition.
func mbrImage() []byte {
	b := img(nil)
	e := b[446:]
	e[0] = 0x00
	e[4] = 0x83 // Linux
	binary.LittleEndian.PutUint32(e[8:], 2048)
	binary.LittleEndian.PutUint32(e[12:], 20480)
	b[510], b[511] = 0x55, 0xaa
	return b
}

// gptImage writes a protective MBR (optional) and a GPT header at LBA 1.
func gptImage(sector int, protective bool) []byte {
	b := img(nil)
	if protective {
		e := b[446:]
		e[4] = 0xee
		binary.LittleEndian.PutUint32(e[8:], 1)
		binary.LittleEndian.PutUint32(e[12:], 0xffffffff)
		b[510], b[511] = 0x55, 0xaa
	}
	copy(b[sector:], "EFI PART\x00\x00\x01\x00\x5c\x00\x00\x00")
	return b
}

func TestProbeBytes(t *testing.T) {
	ext4 := img(map[int]string{0x438: "\x53\xef"})
	binary.LittleEndian.PutUint32(ext4[0x460:], 0x2c2) // extents|64bit|flex_bg|filetype
	ext3 := img(map[int]string{0x438: "\x53\xef"})
	binary.LittleEndian.PutUint32(ext3[0x45c:], 0x4)
	tests := []struct {
		name string
		b    []byte
		want []string // kind/type
	}{
		{"zero", img(nil), nil},
		{"short", []byte{1, 2, 3}, nil},
		{"empty", nil, nil},
		{"ext4", ext4, []string{"filesystem/ext4"}},
		{"ext3", ext3, []string{"filesystem/ext3"}},
		{"ext2", img(map[int]string{0x438: "\x53\xef"}), []string{"filesystem/ext2"}},
		{"xfs", img(map[int]string{0: "XFSB"}), []string{"filesystem/xfs"}},
		{"btrfs", img(map[int]string{0x10040: "_BHRfS_M"}), []string{"filesystem/btrfs"}},
		{"iso", img(map[int]string{0x8001: "CD001"}), []string{"filesystem/iso9660"}},
		{"vfat", img(map[int]string{3: "mkfs.fat", 0x52: "FAT32   ", 510: "\x55\xaa"}), []string{"filesystem/vfat", "partition-table/boot-sector"}},
		{"swap", img(map[int]string{4086: "SWAPSPACE2"}), []string{"other/swap"}},
		{"swap 64k page", img(map[int]string{65526: "SWAPSPACE2"}), []string{"other/swap"}},
		{"lvm2", img(map[int]string{512: "LABELONE", 512 + 0x18: "LVM2 001"}), []string{"raid/lvm/LVM2_member"}},
		{"luks", img(map[int]string{0: "LUKS\xba\xbe"}), []string{"other/crypto_LUKS"}},
		{"mdraid", img(map[int]string{4096: "\xfc\x4e\x2b\xa9"}), []string{"raid/lvm/linux_raid_member"}},
		{"mbr", mbrImage(), []string{"partition-table/dos"}},
		{"gpt 512", gptImage(512, true), []string{"partition-table/gpt", "partition-table/dos"}},
		{"gpt 4096 no pmbr", gptImage(4096, false), []string{"partition-table/gpt"}},
		{"bare boot signature", img(map[int]string{510: "\x55\xaa"}), []string{"partition-table/boot-sector"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, s := range ProbeBytes(tc.b) {
				got = append(got, s.Kind+"/"+s.Type)
				assert.NotEmpty(t, s.String())
			}
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseBlkidExport(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"DEVNAME=/dev/loop0\nUUID=x\nBLOCK_SIZE=4096\nTYPE=ext4\nUSAGE=filesystem\n", []string{"filesystem/ext4"}},
		{"DEVNAME=/dev/loop0\nPTUUID=y\nPTTYPE=gpt\n", []string{"partition-table/gpt"}},
		{"DEVNAME=/dev/loop0\nTYPE=LVM2_member\nUSAGE=raid\n", []string{"raid/lvm/LVM2_member"}},
		{"DEVNAME=/dev/loop0\nTYPE=swap\nUSAGE=other\n", []string{"other/swap"}},
		{"DEVNAME=/dev/loop0\nSBMAGIC=x\n", []string{"other/unknown"}},
		{"", nil},
	}
	for _, tc := range tests {
		var got []string
		for _, s := range parseBlkidExport(tc.in) {
			got = append(got, s.Kind+"/"+s.Type)
		}
		assert.Equal(t, tc.want, got, tc.in)
	}
}

func TestParseMountInfo(t *testing.T) {
	in := `22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
36 22 7:3 / /tmp/a\040b rw,relatime shared:7 - xfs /dev/loop3 rw,attr2
37 22 0:5 /loop3 /tmp/blk rw - devtmpfs udev rw,size=1k
`
	mi, err := ParseMountInfo(strings.NewReader(in))
	require.NoError(t, err)
	require.Len(t, mi, 3)
	assert.Equal(t, MountInfo{ID: 36, Parent: 22, Major: 7, Minor: 3, Root: "/", MountPoint: "/tmp/a b",
		Options: "rw,relatime", FSType: "xfs", Source: "/dev/loop3", SuperOptions: "rw,attr2"}, mi[1])
	assert.Equal(t, "/loop3", mi[2].Root)
	assert.Equal(t, "rw,size=1k", mi[2].SuperOptions)
	for _, bad := range []string{"x", "1 2 3:4 / /", "a 1 1:1 / / rw - ext4 x rw", "1 1 11 / / rw - ext4 x rw", "1 1 1:1 / / rw -"} {
		_, err := ParseMountInfo(strings.NewReader(bad + "\n"))
		assert.Error(t, err, bad)
	}
	// This process's own table parses.
	_, err = readMountInfo()
	require.NoError(t, err)
}

func TestFindMultipath(t *testing.T) {
	sys := t.TempDir()
	mk := func(p, content string) {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(sys, p)), 0o755))
		if content != "" {
			require.NoError(t, os.WriteFile(filepath.Join(sys, p), []byte(content), 0o644))
		}
	}
	mk("block/sdb/holders/dm-3/x", "")
	mk("block/dm-3/dm/uuid", "mpath-36001405abcdef\n")
	mk("block/sdc/holders/dm-4/x", "")
	mk("block/dm-4/dm/uuid", "LVM-abc\n") // an LVM volume above sdc, not multipath
	mk("block/sdd/holders/.keep", "")
	assert.Equal(t, "/dev/dm-3", findMultipath(sys, []string{"/dev/sdd", "/dev/sdb"}))
	assert.Equal(t, "", findMultipath(sys, []string{"/dev/sdc", "/dev/sdd", "/dev/sde"}))
}

func FuzzProbeBytes(f *testing.F) {
	f.Add(mbrImage()[:1024])
	f.Add(gptImage(512, true)[:4200])
	f.Add([]byte("XFSB"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, s := range ProbeBytes(b) {
			if s.Type == "" || s.Kind == "" {
				t.Fatalf("empty signature %+v", s)
			}
		}
	})
}

func FuzzParseMountInfo(f *testing.F) {
	f.Add("36 22 7:3 / /tmp/a\\040b rw,relatime shared:7 - xfs /dev/loop3 rw\n")
	f.Add("1 1 1:1 / / rw -\n")
	f.Fuzz(func(t *testing.T, s string) {
		mi, err := ParseMountInfo(strings.NewReader(s))
		if err == nil {
			for _, m := range mi {
				_ = m.MountPoint
			}
		}
	})
}

func FuzzNormalize(f *testing.F) {
	f.Add("10.0.0.1", "iqn.2024-01.x:y", int32(0))
	f.Add("[fd00::1]:3260", "eui.0123", int32(5))
	f.Fuzz(func(t *testing.T, portal, iqn string, lun int32) {
		v := Volume{TargetPortal: portal, IQN: iqn, LUN: lun}
		n, err := v.Normalize()
		if err == nil {
			// A normalized volume is stable and its path stays one element.
			n2, err := n.Normalize()
			if err != nil || n2.TargetPortal != n.TargetPortal {
				t.Fatalf("not idempotent: %q -> %q (%v)", n.TargetPortal, n2.TargetPortal, err)
			}
			if strings.Contains(n.TargetPortal+n.IQN, "/") {
				t.Fatalf("slash in path element")
			}
		}
	})
}
