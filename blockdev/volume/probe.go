package volume

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// probeLen is how much of a device is read to look for signatures: enough
// for btrfs (64 KiB + 0x40), iso9660 (32 KiB + 1) and swap with 64 KiB pages.
const probeLen = 128 << 10

// Signature is one thing found on a device that makes it not blank.
type Signature struct {
	Kind   string // "filesystem", "partition-table", "raid/lvm", "other"
	Type   string // ext4, xfs, vfat, gpt, dos, LVM2_member, swap, ...
	Offset int64  // byte offset of the magic, -1 when reported by blkid
	Source string // "probe" (this package), "u-root", "blkid"
}

func (s Signature) String() string {
	if s.Offset >= 0 {
		return fmt.Sprintf("%s %s at %#x (%s)", s.Kind, s.Type, s.Offset, s.Source)
	}
	return fmt.Sprintf("%s %s (%s)", s.Kind, s.Type, s.Source)
}

// ProbeBytes looks for signatures in the first bytes of a device (b may be
// shorter than probeLen). It never panics on any input.
func ProbeBytes(b []byte) []Signature {
	var sigs []Signature
	at := func(off int, magic string) bool {
		return off >= 0 && off+len(magic) <= len(b) && string(b[off:off+len(magic)]) == magic
	}
	add := func(kind, typ string, off int) {
		sigs = append(sigs, Signature{Kind: kind, Type: typ, Offset: int64(off), Source: "probe"})
	}

	// ext2/3/4: s_magic 0xEF53 (LE) at 1024+0x38.
	if at(0x438, "\x53\xef") {
		typ := "ext2"
		if len(b) >= 0x468 {
			compat := binary.LittleEndian.Uint32(b[0x45c:])
			incompat := binary.LittleEndian.Uint32(b[0x460:])
			switch {
			case incompat&^0x3 != 0: // anything beyond COMPRESSION|FILETYPE (e.g. extents, 64bit, flex_bg)
				typ = "ext4"
			case compat&0x4 != 0: // HAS_JOURNAL
				typ = "ext3"
			}
		}
		add("filesystem", typ, 0x438)
	}
	if at(0, "XFSB") {
		add("filesystem", "xfs", 0)
	}
	if at(0x10040, "_BHRfS_M") {
		add("filesystem", "btrfs", 0x10040)
	}
	if at(0x8001, "CD001") {
		add("filesystem", "iso9660", 0x8001)
	}
	if at(0, "hsqs") {
		add("filesystem", "squashfs", 0)
	}
	if at(0, "LUKS\xba\xbe") || at(0, "SKUL\xba\xbe") {
		add("other", "crypto_LUKS", 0)
	}
	if at(3, "NTFS    ") {
		add("filesystem", "ntfs", 3)
	}
	if at(0x36, "FAT12   ") || at(0x36, "FAT16   ") || at(0x36, "FAT     ") || at(0x52, "FAT32   ") || at(3, "MSDOS") || at(3, "mkfs.fat") || at(3, "mkdosfs") {
		add("filesystem", "vfat", 0x36)
	}
	// swap: "SWAPSPACE2"/"SWAP-SPACE" in the last 10 bytes of the first page.
	for _, page := range []int{4096, 8192, 16384, 65536} {
		if at(page-10, "SWAPSPACE2") || at(page-10, "SWAP-SPACE") {
			add("other", "swap", page-10)
		}
	}
	// LVM2 physical volume: "LABELONE" in one of the first four sectors, "LVM2 001" at +0x18.
	for sec := 0; sec < 4; sec++ {
		if at(sec*512, "LABELONE") {
			typ := "label"
			if at(sec*512+0x18, "LVM2 001") {
				typ = "LVM2_member"
			}
			add("raid/lvm", typ, sec*512)
		}
	}
	// Linux md RAID 1.1/1.2 superblocks (0xa92b4efc LE at 0 or 4096).
	if at(0, "\xfc\x4e\x2b\xa9") || at(4096, "\xfc\x4e\x2b\xa9") {
		add("raid/lvm", "linux_raid_member", 0)
	}
	// GPT header at LBA 1 for 512 and 4096 byte sectors.
	for _, ss := range []int{512, 4096} {
		if at(ss, "EFI PART") {
			add("partition-table", "gpt", ss)
		}
	}
	// MBR / boot sector: 0x55AA at 510. Any boot signature counts (a FAT boot
	// sector has one too); name it "dos" when a partition entry is present.
	if at(510, "\x55\xaa") {
		typ := "boot-sector"
		for i := 0; i < 4; i++ {
			e := b[446+16*i : 446+16*i+16]
			if e[4] != 0 && (e[0] == 0 || e[0] == 0x80) {
				typ = "dos"
				break
			}
		}
		add("partition-table", typ, 510)
	}
	// u-root's magic table as a third opinion (covers the same common filesystems).
	if len(sigs) == 0 && uRootMagic(b) {
		add("filesystem", "unknown(u-root magic)", -1)
	}
	return sigs
}

// ProbeDevice reads the start of path and returns every signature found by
// this package and, when blkid is installed, by `blkid -p`. An empty result
// means blank. I/O errors are returned, never treated as blank.
func ProbeDevice(ctx context.Context, path string) ([]Signature, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("probe %s: %w", path, err)
	}
	defer f.Close()
	buf := make([]byte, probeLen)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("probe %s: read: %w", path, err)
	}
	sigs := ProbeBytes(buf[:n])
	more, err := blkidProbe(ctx, path)
	if err != nil {
		return nil, err
	}
	return append(sigs, more...), nil
}

// blkidProbe runs `blkid -p -o export` (low-level probing, no cache). Exit 2
// means nothing found. Missing blkid returns nothing (our own probe stands).
func blkidProbe(ctx context.Context, path string) ([]Signature, error) {
	bin, err := exec.LookPath("blkid")
	if err != nil {
		return nil, nil
	}
	cmd := exec.CommandContext(ctx, bin, "-p", "-o", "export", path)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.ExitCode() == 2:
		return nil, nil
	case errors.As(err, &ee) && ee.ExitCode() == 8:
		// ambivalent probing result: several signatures. Not blank.
		return []Signature{{Kind: "other", Type: "ambivalent", Offset: -1, Source: "blkid"}}, nil
	default:
		return nil, fmt.Errorf("blkid -p %s: %w: %s", path, err, strings.TrimSpace(stderr.String()))
	}
	return parseBlkidExport(out.String()), nil
}

func parseBlkidExport(s string) []Signature {
	kv := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			kv[k] = v
		}
	}
	var sigs []Signature
	if t := kv["TYPE"]; t != "" {
		kind := "filesystem"
		switch kv["USAGE"] {
		case "raid":
			kind = "raid/lvm"
		case "crypto", "other":
			kind = "other"
		}
		sigs = append(sigs, Signature{Kind: kind, Type: t, Offset: -1, Source: "blkid"})
	}
	if t := kv["PTTYPE"]; t != "" {
		sigs = append(sigs, Signature{Kind: "partition-table", Type: t, Offset: -1, Source: "blkid"})
	}
	if len(sigs) == 0 && len(kv) > 0 {
		sigs = append(sigs, Signature{Kind: "other", Type: "unknown", Offset: -1, Source: "blkid"})
	}
	return sigs
}
