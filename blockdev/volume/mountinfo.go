package volume

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// MountInfo is one line of /proc/self/mountinfo.
type MountInfo struct {
	ID, Parent   int
	Major, Minor uint32
	Root         string // path inside the filesystem (a bind of /dev/sdb shows "/sdb")
	MountPoint   string
	Options      string // per-mount options (rw, noatime, ...)
	FSType       string
	Source       string
	SuperOptions string // the filesystem's options (rw, commit=30, ...)
}

// maxMountinfoLine bounds one mountinfo line (paths are at most PATH_MAX).
const maxMountinfoLine = 64 << 10

// ParseMountInfo parses the mountinfo format (proc(5)). Malformed lines are
// an error; octal escapes (\040) are decoded.
func ParseMountInfo(r io.Reader) ([]MountInfo, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxMountinfoLine)
	var out []MountInfo
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		m, err := parseMountInfoLine(line)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mountinfo: %w", err)
	}
	return out, nil
}

func parseMountInfoLine(line string) (MountInfo, error) {
	bad := func(why string) (MountInfo, error) {
		return MountInfo{}, fmt.Errorf("mountinfo: %s in line %q", why, truncate(line, 200))
	}
	f := strings.Fields(line)
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if len(f) < 7 || sep < 0 || sep+2 >= len(f) {
		return bad("too few fields")
	}
	var m MountInfo
	var err error
	if m.ID, err = strconv.Atoi(f[0]); err != nil {
		return bad("bad mount id")
	}
	if m.Parent, err = strconv.Atoi(f[1]); err != nil {
		return bad("bad parent id")
	}
	maj, min, ok := strings.Cut(f[2], ":")
	if !ok {
		return bad("bad major:minor")
	}
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(min, 10, 32)
	if err1 != nil || err2 != nil {
		return bad("bad major:minor")
	}
	m.Major, m.Minor = uint32(ma), uint32(mi)
	m.Root = unescapeOctal(f[3])
	m.MountPoint = unescapeOctal(f[4])
	m.Options = f[5]
	m.FSType = unescapeOctal(f[sep+1])
	m.Source = unescapeOctal(f[sep+2])
	if sep+3 < len(f) {
		m.SuperOptions = f[sep+3]
	}
	return m, nil
}

func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b bytes.Buffer
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// readMountInfo reads /proc/self/mountinfo.
func readMountInfo() ([]MountInfo, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseMountInfo(f)
}

// cleanPath makes p absolute and resolves symlinks in its existing prefix,
// as the kernel reports mount points.
func cleanPath(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		return filepath.Clean(p)
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		return r
	}
	return abs
}

// mountsAt returns the mounts whose mount point is p (stacked mounts give several).
func mountsAt(mi []MountInfo, p string) []MountInfo {
	p = cleanPath(p)
	var out []MountInfo
	for _, m := range mi {
		if m.MountPoint == p {
			out = append(out, m)
		}
	}
	return out
}

// isMountPoint says whether something is mounted at p.
func isMountPoint(p string) (bool, error) {
	mi, err := readMountInfo()
	if err != nil {
		return false, err
	}
	return len(mountsAt(mi, p)) > 0, nil
}
