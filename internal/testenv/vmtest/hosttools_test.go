//go:build linux

package vmtest

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestLddPaths(t *testing.T) {
	out := "\tlinux-vdso.so.1 (0x00007ffc)\n" +
		"\tlibext2fs.so.2 => /lib/x86_64-linux-gnu/libext2fs.so.2 (0x00007f)\n" +
		"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n" +
		"\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n" +
		"\tnotfound.so => not found\n"
	assert.Equal(t, []string{"/lib/x86_64-linux-gnu/libext2fs.so.2", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"}, lddPaths(out))
}

func TestHostTools(t *testing.T) {
	files := HostTools(t, "mkfs.ext4")
	assert.Contains(t, files, "/usr/sbin/mkfs.ext4")
	assert.Greater(t, len(files), 2, "the tool and at least libc and the loader")
}
