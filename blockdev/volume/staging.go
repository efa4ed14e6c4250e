package volume

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Staging at a caller-given path (a CSI node plugin's NodeStageVolume):
// the volume is staged as Stage does, at its global path under the root,
// and its global directory is then bind-mounted at the staging path the
// caller (kubelet) chose. A staging record, keyed by the caller's volume
// id, remembers the pair, so that UnstageAt, which gets only the volume id
// and the staging path (CSI's NodeUnstageVolume), finds the attach record.
//
// Layout, next to the global directories:
//
//	<root>/iscsi/.staged/<sha256(volumeID)>.json   staging record (no secrets)

// Errors of the staging-path lifecycle (errors.Is).
var (
	// ErrStagedElsewhere: the volume id is staged at another staging
	// path, another volume id is staged at this staging path, or the LUN
	// is staged for another volume id.
	ErrStagedElsewhere = errors.New("staged for another volume or at another path")
	// ErrIncompatible: the volume id is staged at this path with another
	// spec (target, LUN, mode, fsType, read-only, mount options).
	ErrIncompatible = errors.New("already staged with an incompatible spec")
)

// Staged is one staging record: what StageAt did for a volume id.
type Staged struct {
	VolumeID    string   `json:"volumeID"`
	StagingPath string   `json:"stagingPath"`
	GlobalPath  string   `json:"globalPath"`
	Volume      Volume   `json:"volume"` // normalized; Secrets are never serialized
	DevicePath  string   `json:"devicePath,omitempty"`
	Devices     []Device `json:"devices,omitempty"`
}

// stagedDir is where staging records live.
func (m *Manager) stagedDir() string { return filepath.Join(m.root, "iscsi", ".staged") }

func (m *Manager) stagedFile(volumeID string) string {
	sum := sha256.Sum256([]byte(volumeID))
	return filepath.Join(m.stagedDir(), hex.EncodeToString(sum[:])+".json")
}

// LookupStaged returns the staging record of volumeID; an error matching
// fs.ErrNotExist when there is none.
func (m *Manager) LookupStaged(volumeID string) (*Staged, error) {
	b, err := os.ReadFile(m.stagedFile(volumeID))
	if err != nil {
		return nil, err
	}
	var s Staged
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("staging record of volume %q: %w", volumeID, err)
	}
	if s.VolumeID != volumeID {
		return nil, fmt.Errorf("staging record of volume %q names volume %q", volumeID, s.VolumeID)
	}
	return &s, nil
}

// ListStaged returns every staging record (unreadable ones are skipped).
func (m *Manager) ListStaged() ([]*Staged, error) {
	ents, err := os.ReadDir(m.stagedDir())
	if isNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*Staged
	for _, e := range ents {
		if filepath.Ext(e.Name()) != ".json" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(m.stagedDir(), e.Name()))
		if err != nil {
			continue
		}
		var s Staged
		if json.Unmarshal(b, &s) == nil && s.VolumeID != "" {
			out = append(out, &s)
		}
	}
	return out, nil
}

func (m *Manager) writeStaged(s *Staged) error {
	if err := os.MkdirAll(m.stagedDir(), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(m.stagedFile(s.VolumeID), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write staging record: %w", err)
	}
	return nil
}

func (m *Manager) removeStaged(volumeID string) error {
	if err := os.Remove(m.stagedFile(volumeID)); err != nil && !isNotExist(err) {
		return err
	}
	return nil
}

// compatible says whether two normalized specs stage the same thing the
// same way (secrets and secret references aside).
func compatible(a, b Volume) bool {
	a.Secrets, b.Secrets, a.SecretRef, b.SecretRef = nil, nil, nil, nil
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// checkStaging enforces one volume id per staging path and per LUN, and one
// staging path per volume id.
func (m *Manager) checkStaging(volumeID, stagingPath, globalPath string, n Volume) error {
	all, err := m.ListStaged()
	if err != nil {
		return err
	}
	for _, s := range all {
		switch {
		case s.VolumeID == volumeID && cleanPath(s.StagingPath) != cleanPath(stagingPath):
			return fmt.Errorf("volume %q is staged at %s: %w", volumeID, s.StagingPath, ErrStagedElsewhere)
		case s.VolumeID == volumeID && !compatible(s.Volume, n):
			return fmt.Errorf("volume %q at %s: %w", volumeID, stagingPath, ErrIncompatible)
		case s.VolumeID != volumeID && cleanPath(s.StagingPath) == cleanPath(stagingPath):
			return fmt.Errorf("staging path %s holds volume %q: %w", stagingPath, s.VolumeID, ErrStagedElsewhere)
		case s.VolumeID != volumeID && s.GlobalPath == globalPath:
			return fmt.Errorf("%s lun %d is staged for volume %q: %w", n.IQN, n.LUN, s.VolumeID, ErrStagedElsewhere)
		}
	}
	return nil
}
