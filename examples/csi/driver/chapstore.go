package driver

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/internal/portal"
)

// chapStore keeps the CHAP credentials of staged volumes in 0600 files in a
// 0700 directory on tmpfs (under /run): they survive a restart of the
// plugin's container, so its Supervisor can log a CHAP session in again,
// but never a reboot, and never reach a disk or the attach record.
type chapStore struct {
	dir string
}

// chapEntry is one file: the session key and the credentials.
type chapEntry struct {
	TargetName   string   `json:"targetName"`
	Portals      []string `json:"portals"`
	User         string   `json:"user"`
	Secret       string   `json:"secret"`
	TargetUser   string   `json:"targetUser,omitempty"`
	TargetSecret string   `json:"targetSecret,omitempty"`
}

// errNotTmpfs: the credentials directory is on a persistent filesystem.
var errNotTmpfs = errors.New("is not on tmpfs: CHAP credentials are kept only in memory-backed storage (mount a tmpfs, e.g. the host's /run)")

// openCHAPStore creates dir (0700) and checks that it is on tmpfs or ramfs.
func openCHAPStore(dir string) (*chapStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("credentials directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("credentials directory: %w", err)
	}
	if !onTmpfs(dir) {
		return nil, fmt.Errorf("credentials directory %s %w", dir, errNotTmpfs)
	}
	return &chapStore{dir: dir}, nil
}

func (c *chapStore) file(volumeID string) string {
	sum := sha256.Sum256([]byte(volumeID))
	return filepath.Join(c.dir, hex.EncodeToString(sum[:])+".json")
}

// put stores the session credentials of a volume (atomically, 0600).
func (c *chapStore) put(volumeID, targetName string, portals []string, chap *iscsi.CHAP) error {
	b, err := json.Marshal(chapEntry{TargetName: targetName, Portals: portals, User: chap.User, Secret: chap.Secret,
		TargetUser: chap.TargetUser, TargetSecret: chap.TargetSecret})
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(c.dir, ".chap-*")
	if err != nil {
		return fmt.Errorf("store CHAP credentials: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("store CHAP credentials: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("store CHAP credentials: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("store CHAP credentials: %w", err)
	}
	if err := os.Rename(tmp.Name(), c.file(volumeID)); err != nil {
		return fmt.Errorf("store CHAP credentials: %w", err)
	}
	return nil
}

// remove forgets a volume's credentials; none is not an error.
func (c *chapStore) remove(volumeID string) error {
	if err := os.Remove(c.file(volumeID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove CHAP credentials: %w", err)
	}
	return nil
}

// lookup is blockdev.Options.Credentials: the credentials some staged
// volume gave for targetName at portal, or nil.
func (c *chapStore) lookup(targetName, portal string) *iscsi.CHAP {
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return nil
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(c.dir, e.Name()))
		if err != nil {
			continue
		}
		var ce chapEntry
		if json.Unmarshal(b, &ce) != nil || ce.TargetName != targetName {
			continue
		}
		for _, p := range ce.Portals {
			if samePortal(p, portal) {
				return &iscsi.CHAP{User: ce.User, Secret: ce.Secret, TargetUser: ce.TargetUser,
					TargetSecret: ce.TargetSecret, AllowShortSecrets: true}
			}
		}
	}
	return nil
}

// samePortal compares two portals in normalized host:port form.
func samePortal(a, b string) bool {
	na, err1 := portal.Normalize(a)
	nb, err2 := portal.Normalize(b)
	return err1 == nil && err2 == nil && na == nb
}

// onTmpfs says whether dir is on tmpfs or ramfs.
func onTmpfs(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && (st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC)
}
