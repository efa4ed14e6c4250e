package volume

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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

// readRecord returns the record in dir; fs.ErrNotExist when there is none.
func readRecord(dir string) (*Record, error) {
	p := filepath.Join(dir, RecordFile)
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > maxRecordSize {
		return nil, fmt.Errorf("attach record %s: too large (%d bytes)", p, st.Size())
	}
	var r Record
	dec := json.NewDecoder(f)
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("attach record %s: %w", p, err)
	}
	if r.TargetName == "" || len(r.Portals) == 0 {
		return nil, fmt.Errorf("attach record %s: missing iqn or portals", p)
	}
	return &r, nil
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
