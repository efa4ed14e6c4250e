//go:build linux

package vmtest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ModuleSet names a group of kernel modules the guest loads at boot, in
// dependency order (resolved from each module's .modinfo "depends=").
type ModuleSet string

// Module sets. SetNet is always loaded; SetVirtioBlk is added when
// Config.Disks is not empty.
const (
	// SetNet: virtio-net for the user-mode network (10.0.2.15, host at 10.0.2.2).
	SetNet ModuleSet = "net"
	// SetISCSI: the open-iscsi kernel side (scsi_transport_iscsi, iscsi_tcp),
	// sd, sg, ext4, and the crypto the kernel would otherwise request_module
	// at run time (crc32c, crct10dif, crc64-rocksoft).
	SetISCSI ModuleSet = "iscsi"
	// SetXFS: xfs and its checksum dependencies.
	SetXFS ModuleSet = "xfs"
	// SetMultipath: device-mapper multipath with its path selectors.
	SetMultipath ModuleSet = "multipath"
	// SetLoop: loop devices.
	SetLoop ModuleSet = "loop"
	// SetLIO: the kernel's iSCSI target (configfs is mounted at
	// /sys/kernel/config by /init).
	SetLIO ModuleSet = "lio"
	// SetVirtioBlk: virtio disks (/dev/vda, /dev/vdb, ... for Config.Disks).
	SetVirtioBlk ModuleSet = "virtio-blk"
	// SetBtrfs: btrfs (crc32c checksums) and its dependencies.
	SetBtrfs ModuleSet = "btrfs"
)

// Modules returns the modules of a set, in load order before dependency
// resolution (preloaded crypto first: the guest has no modprobe).
func (s ModuleSet) Modules() ([]string, error) {
	switch s {
	case SetNet:
		return []string{"virtio_pci", "virtio_net"}, nil
	case SetISCSI:
		return []string{"crc32c_generic", "crct10dif_generic", "crc64_rocksoft_generic",
			"scsi_transport_iscsi", "libiscsi", "libiscsi_tcp", "iscsi_tcp", "sd_mod", "sg", "ext4"}, nil
	case SetXFS:
		return []string{"crc32c_generic", "libcrc32c", "xfs"}, nil
	case SetMultipath:
		return []string{"dm_mod", "dm_multipath", "dm_round_robin", "dm_queue_length", "dm_service_time"}, nil
	case SetLoop:
		return []string{"loop"}, nil
	case SetLIO:
		return []string{"crc32c_generic", "configfs", "target_core_mod", "target_core_file",
			"target_core_iblock", "iscsi_target_mod"}, nil
	case SetVirtioBlk:
		return []string{"virtio_pci", "virtio_blk"}, nil
	case SetBtrfs:
		return []string{"crc32c_generic", "libcrc32c", "btrfs"}, nil
	}
	return nil, fmt.Errorf("vmtest: unknown module set %q", string(s))
}

// normModule turns a module file or dependency name into its canonical form
// (the kernel treats '-' and '_' alike).
func normModule(name string) string {
	for _, ext := range []string{".ko.xz", ".ko.zst", ".ko.gz", ".ko"} {
		name = strings.TrimSuffix(name, ext)
	}
	return strings.ReplaceAll(name, "-", "_")
}

// moduleIndex maps module names to their files under lib/modules/<ver>.
type moduleIndex struct {
	dir     string
	files   map[string]string // name -> path relative to dir
	builtin map[string]bool
}

func loadModuleIndex(modDir string) (*moduleIndex, error) {
	ix := &moduleIndex{dir: modDir, files: map[string]string{}, builtin: map[string]bool{}}
	err := filepath.WalkDir(filepath.Join(modDir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.Contains(d.Name(), ".ko") {
			return nil
		}
		rel, err := filepath.Rel(modDir, p)
		if err != nil {
			return err
		}
		ix.files[normModule(d.Name())] = rel
		return nil
	})
	if err != nil {
		return nil, missing("guest kernel modules: %v", err)
	}
	if f, err := os.Open(filepath.Join(modDir, "modules.builtin")); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			ix.builtin[normModule(filepath.Base(strings.TrimSpace(s.Text())))] = true
		}
		f.Close()
	}
	return ix, nil
}

// module is one resolved loadable module.
type module struct {
	Name string
	Path string // absolute path on the host
}

// resolve returns names and all their dependencies, each after everything it
// depends on and otherwise in request order; built-in modules are dropped.
func (ix *moduleIndex) resolve(ctx context.Context, names []string) ([]module, error) {
	var out []module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		name = normModule(name)
		switch state[name] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("vmtest: module dependency cycle: %s -> %s", strings.Join(chain, " -> "), name)
		}
		rel, ok := ix.files[name]
		if !ok {
			if ix.builtin[name] {
				state[name] = 2
				return nil
			}
			via := ""
			if len(chain) > 0 {
				via = " (needed by " + strings.Join(chain, " -> ") + ")"
			}
			return fmt.Errorf("vmtest: kernel module %q not found under %s%s", name, ix.dir, via)
		}
		state[name] = 1
		data, err := readModule(ctx, filepath.Join(ix.dir, rel))
		if err != nil {
			return err
		}
		info, err := parseModinfo(data)
		if err != nil {
			return fmt.Errorf("vmtest: module %s: %w", name, err)
		}
		for _, dep := range strings.Split(info["depends"], ",") {
			if dep = strings.TrimSpace(dep); dep == "" {
				continue
			}
			if err := visit(dep, append(chain, name)); err != nil {
				return err
			}
		}
		state[name] = 2
		out = append(out, module{Name: name, Path: filepath.Join(ix.dir, rel)})
		return nil
	}
	for _, n := range names {
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// maxModuleSize bounds what readModule accepts (the largest Debian module is
// a few tens of MB uncompressed).
const maxModuleSize = 256 << 20

// readModule returns a module's ELF bytes, decompressing .ko.gz/.ko.xz/.ko.zst.
func readModule(ctx context.Context, p string) ([]byte, error) {
	raw, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("vmtest: %w", err)
	}
	switch {
	case strings.HasSuffix(p, ".ko"):
		return raw, nil
	case strings.HasSuffix(p, ".ko.gz"):
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("vmtest: %s: %w", p, err)
		}
		out, err := io.ReadAll(io.LimitReader(zr, maxModuleSize))
		if err != nil {
			return nil, fmt.Errorf("vmtest: %s: %w", p, err)
		}
		return out, nil
	case strings.HasSuffix(p, ".ko.xz"):
		return pipeTool(ctx, raw, "xz", "-dc")
	case strings.HasSuffix(p, ".ko.zst"):
		return pipeTool(ctx, raw, "zstd", "-dc")
	}
	return nil, fmt.Errorf("vmtest: %s: unknown module file type", p)
}

// parseModinfo reads the NUL-separated key=value strings of a kernel
// module's .modinfo section. Repeated keys (alias=) keep the last value.
func parseModinfo(ko []byte) (map[string]string, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, fmt.Errorf("not an ELF module: %w", err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, errors.New("no .modinfo section")
	}
	if sec.Size > maxModuleSize || sec.Type == elf.SHT_NOBITS {
		return nil, errors.New("bad .modinfo section")
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf(".modinfo: %w", err)
	}
	return parseModinfoStrings(data), nil
}

func parseModinfoStrings(data []byte) map[string]string {
	info := map[string]string{}
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := bytes.Cut(kv, []byte{'='})
		if !ok || len(k) == 0 {
			continue
		}
		info[string(k)] = string(v)
	}
	return info
}
