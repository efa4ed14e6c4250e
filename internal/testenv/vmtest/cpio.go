//go:build linux

package vmtest

import (
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// File type bits of a cpio newc mode (the same values as Linux's S_IF*).
const (
	cpioModeDir     = 0o040000
	cpioModeRegular = 0o100000
	cpioModeSymlink = 0o120000
	cpioModeCharDev = 0o020000
)

// cpioWriter writes a "newc" (SVR4, no CRC) cpio archive, the format the
// Linux kernel unpacks as an initramfs. It creates the parent directories of
// every entry it is given, once.
type cpioWriter struct {
	w    io.Writer
	n    int64 // bytes written
	ino  uint32
	dirs map[string]bool
	err  error
}

func newCPIOWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: w, ino: 1, dirs: map[string]bool{"": true, ".": true, "/": true}}
}

// cleanName turns a guest path into the archive's relative form ("bin/sh").
func cleanName(name string) (string, error) {
	c := strings.TrimPrefix(path.Clean("/"+name), "/")
	if c == "" || c == "." {
		return "", fmt.Errorf("vmtest: cpio: bad entry name %q", name)
	}
	return c, nil
}

func (c *cpioWriter) write(p []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
}

func (c *cpioWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

func (c *cpioWriter) header(name string, mode uint32, size int, rdevMajor, rdevMinor uint32) {
	nlink := uint32(1)
	if mode&0o170000 == cpioModeDir {
		nlink = 2
	}
	ino := c.ino
	c.ino++
	h := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, 0, size, 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	c.write([]byte(h))
	c.write([]byte(name))
	c.write([]byte{0})
	c.pad()
}

// mkdirAll emits directory entries for dir and its missing parents.
func (c *cpioWriter) mkdirAll(dir string) {
	if c.dirs[dir] {
		return
	}
	c.mkdirAll(path.Dir(dir))
	c.dirs[dir] = true
	c.header(dir, cpioModeDir|0o755, 0, 0, 0)
}

// Dir adds a directory (and its parents).
func (c *cpioWriter) Dir(name string) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	c.mkdirAll(n)
	return c.err
}

// File adds a regular file with the given permission bits.
func (c *cpioWriter) File(name string, perm uint32, data []byte) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	if uint64(len(data)) > 0xffffffff {
		return errors.New("vmtest: cpio: file larger than 4 GiB")
	}
	c.mkdirAll(path.Dir(n))
	c.header(n, cpioModeRegular|(perm&0o7777), len(data), 0, 0)
	c.write(data)
	c.pad()
	return c.err
}

// FileFrom adds a regular file of size bytes read from r.
func (c *cpioWriter) FileFrom(name string, perm uint32, size int64, r io.Reader) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	if size < 0 || size > 0xffffffff {
		return fmt.Errorf("vmtest: cpio: %s: bad size %d", name, size)
	}
	c.mkdirAll(path.Dir(n))
	c.header(n, cpioModeRegular|(perm&0o7777), int(size), 0, 0)
	if c.err != nil {
		return c.err
	}
	m, err := io.CopyN(c.w, r, size)
	c.n += m
	if err != nil {
		c.err = fmt.Errorf("vmtest: cpio: %s: %w", name, err)
		return c.err
	}
	c.pad()
	return c.err
}

// Symlink adds a symbolic link name -> target.
func (c *cpioWriter) Symlink(name, target string) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	c.mkdirAll(path.Dir(n))
	c.header(n, cpioModeSymlink|0o777, len(target), 0, 0)
	c.write([]byte(target))
	c.pad()
	return c.err
}

// CharDev adds a character device node.
func (c *cpioWriter) CharDev(name string, perm, major, minor uint32) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	c.mkdirAll(path.Dir(n))
	c.header(n, cpioModeCharDev|(perm&0o7777), 0, major, minor)
	return c.err
}

// Close writes the trailer. It does not close the underlying writer.
func (c *cpioWriter) Close() error {
	c.header("TRAILER!!!", 0, 0, 0, 0)
	return c.err
}
