package volume

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/gosan/iscsi/blockdev"
)

// RecordFile is the attach record's name inside the global directory.
const RecordFile = "iscsi.json"

// maxRecordSize bounds what readRecord accepts.
const maxRecordSize = 1 << 20

// Record is what Stage persists (atomically, without secrets) so that
// Unstage can undo it after a restart.
type Record struct {
	Version       int      `json:"version"`
	Portals       []string `json:"portals"`
	TargetName    string   `json:"iqn"` // "iqn": the name records on disk have always used
	LUN           int32    `json:"lun"`
	Iface         string   `json:"iscsiInterface"`
	InitiatorName string   `json:"initiatorName,omitempty"`
	FSType        string   `json:"fsType"`
	VolumeMode    Mode     `json:"volumeMode"`
	ReadOnly      bool     `json:"readOnly,omitempty"`
	MountOptions  []string `json:"mountOptions,omitempty"` // as Stage last wrote the record, for diagnosis
	Devices       []Device `json:"devices"`                // one per attached path, in portal order
	DevicePath    string   `json:"devicePath,omitempty"`   // what was mounted / handed out: dm-N or the first path
}

const recordVersion = 1

// writeFileAtomic writes data to path via a temp file in the same
// directory: write, fsync, rename, fsync the directory.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	ok = true
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func writeRecord(dir string, r *Record) error {
	r.Version = recordVersion
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, RecordFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write attach record: %w", err)
	}
	return nil
}

// kubeletRecord is the iscsi.json kubelet's in-tree iscsi plugin writes
// (the exported fields of its iscsiDisk, Go's default JSON names) into the
// same global directory. Reading it lets Unstage tear down a volume the
// in-tree plugin staged (a migration).
type kubeletRecord struct {
	VolName       string
	Portals       []string
	Iqn           string
	Lun           string
	InitIface     string
	Iface         string
	InitiatorName string
}

// record converts k; the mode comes from the directory (kubelet's file
// does not say it).
func (k *kubeletRecord) record(mode Mode) (*Record, error) {
	lun, err := strconv.ParseInt(k.Lun, 10, 32)
	if err != nil || lun < 0 {
		return nil, fmt.Errorf("kubelet's Lun %q is not a LUN number", k.Lun)
	}
	return &Record{Portals: k.Portals, TargetName: k.Iqn, LUN: int32(lun), Iface: k.Iface,
		InitiatorName: k.InitiatorName, VolumeMode: mode}, nil
}

// readRecord returns the record in dir, ours or kubelet's (see
// kubeletRecord; mode is then the one the directory's place says);
// fs.ErrNotExist when there is none.
func readRecord(dir string, mode Mode) (*Record, error) {
	p := filepath.Join(dir, RecordFile)
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > maxRecordSize {
		return nil, fmt.Errorf("attach record %s: too large (%d bytes)", p, st.Size())
	}
	var raw map[string]json.RawMessage
	b, err := io.ReadAll(io.LimitReader(f, maxRecordSize))
	if err == nil {
		err = json.Unmarshal(b, &raw)
	}
	if err != nil {
		return nil, fmt.Errorf("attach record %s: %w", p, err)
	}
	var r *Record
	if _, ours := raw["version"]; ours {
		r = &Record{}
		err = json.Unmarshal(b, r)
	} else {
		var k kubeletRecord
		if err = json.Unmarshal(b, &k); err == nil {
			r, err = k.record(mode)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("attach record %s: %w", p, err)
	}
	if r.TargetName == "" || len(r.Portals) == 0 {
		return nil, fmt.Errorf("attach record %s: missing iqn or portals", p)
	}
	if r.Iface == "" {
		r.Iface = blockdev.DefaultIface
	}
	return r, nil
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
