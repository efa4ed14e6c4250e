//go:build linux

package vmtest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type cpioEntry struct {
	name               string
	mode               uint32
	data               []byte
	rdevMajor, rdevMin uint32
}

// readCPIO parses a newc archive strictly (magic, alignment, trailer).
func readCPIO(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	for {
		require.LessOrEqual(t, off+110, len(b), "truncated header")
		require.Zero(t, off%4, "header not 4-aligned")
		h := b[off : off+110]
		require.Equal(t, "070701", string(h[:6]))
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			require.NoError(t, err)
			return uint32(v)
		}
		mode, size, rmaj, rmin, nameSize := field(1), field(6), field(9), field(10), field(11)
		name := string(b[off+110 : off+110+int(nameSize)-1])
		require.Zero(t, b[off+110+int(nameSize)-1], "name not NUL-terminated")
		off = (off + 110 + int(nameSize) + 3) &^ 3
		data := b[off : off+int(size)]
		off = (off + int(size) + 3) &^ 3
		if name == "TRAILER!!!" {
			require.Equal(t, len(b), off, "bytes after the trailer")
			return out
		}
		out = append(out, cpioEntry{name, mode, data, rmaj, rmin})
	}
}

func TestCPIOWriter(t *testing.T) {
	var buf bytes.Buffer
	cw := newCPIOWriter(&buf)
	require.NoError(t, cw.File("/a/b/c.txt", 0o644, []byte("hello")))
	require.NoError(t, cw.File("a/b/d", 0o755, []byte("1234")))
	require.NoError(t, cw.Symlink("bin/sh", "busybox"))
	require.NoError(t, cw.CharDev("dev/console", 0o600, 5, 1))
	require.NoError(t, cw.FileFrom("x", 0o600, 3, strings.NewReader("xyzzy")))
	require.NoError(t, cw.Dir("empty/dir"))
	require.Error(t, cw.File("/", 0o644, nil))
	require.NoError(t, cw.Close())

	got := readCPIO(t, buf.Bytes())
	var names []string
	for _, e := range got {
		names = append(names, e.name)
	}
	assert.Equal(t, []string{"a", "a/b", "a/b/c.txt", "a/b/d", "bin", "bin/sh", "dev", "dev/console", "x", "empty", "empty/dir"}, names)
	byName := map[string]cpioEntry{}
	for _, e := range got {
		byName[e.name] = e
	}
	assert.Equal(t, uint32(cpioModeDir|0o755), byName["a"].mode)
	assert.Equal(t, uint32(cpioModeRegular|0o644), byName["a/b/c.txt"].mode)
	assert.Equal(t, "hello", string(byName["a/b/c.txt"].data))
	assert.Equal(t, "1234", string(byName["a/b/d"].data))
	assert.Equal(t, "xyz", string(byName["x"].data))
	assert.Equal(t, uint32(cpioModeSymlink|0o777), byName["bin/sh"].mode)
	assert.Equal(t, "busybox", string(byName["bin/sh"].data))
	assert.Equal(t, uint32(cpioModeCharDev|0o600), byName["dev/console"].mode)
	assert.Equal(t, [2]uint32{5, 1}, [2]uint32{byName["dev/console"].rdevMajor, byName["dev/console"].rdevMin})
}

func TestCPIOFileFromShortReader(t *testing.T) {
	cw := newCPIOWriter(&bytes.Buffer{})
	require.Error(t, cw.FileFrom("x", 0o644, 10, strings.NewReader("short")))
	require.Error(t, cw.Close(), "a failed write sticks")
}

func TestParseExit(t *testing.T) {
	const n = "0123abcd"
	tests := []struct {
		name string
		out  string
		code int
		ok   bool
	}{
		{"plain", "hello\nVMTEST-EXIT 0123abcd 3\n", 3, true},
		{"crlf", "hello\r\n\r\nVMTEST-EXIT 0123abcd 0\r\n", 0, true},
		{"nul bytes", "\x00\x00VMTEST-EXIT 0123\x00abcd 17\r\n", 17, true},
		{"kernel message before it", "[    2.1] sd 0:0:0:0: ok VMTEST-EXIT 0123abcd 125\n", 125, true},
		{"no trailing newline", "VMTEST-EXIT 0123abcd 1", 1, true},
		{"first wins", "VMTEST-EXIT 0123abcd 2\nVMTEST-EXIT 0123abcd 4\n", 2, true},
		{"kernel message after it", "VMTEST-EXIT 0123abcd 9 [ 3.0] reboot\n", 9, true},
		{"wrong nonce", "VMTEST-EXIT ffffffff 3\n", 0, false},
		{"payload printing the format", "VMTEST-EXIT  3\nVMTEST-EXIT %s %s\n", 0, false},
		{"digits glued to text", "VMTEST-EXIT 0123abcd 3x\n", 0, false},
		{"too large", "VMTEST-EXIT 0123abcd 256\n", 0, false},
		{"negative", "VMTEST-EXIT 0123abcd -1\n", 0, false},
		{"missing", "Kernel panic - not syncing\n", 0, false},
		{"empty", "", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, ok := parseExit(tc.out, n)
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.code, code)
		})
	}
	_, ok := parseExit("VMTEST-EXIT  3\n", "")
	assert.False(t, ok, "an empty nonce never matches")
}

func FuzzParseExit(f *testing.F) {
	f.Add("VMTEST-EXIT abc 3\r\n", "abc")
	f.Add("\x00VMTEST-EXIT abc 255", "abc")
	f.Fuzz(func(t *testing.T, out, nonce string) {
		code, ok := parseExit(out, nonce)
		if ok {
			require.True(t, code >= 0 && code <= 255)
			require.Contains(t, cleanConsole([]byte(out)), markerPrefix+nonce+" "+strconv.Itoa(code))
		}
	})
}

func TestTail(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"", 3, ""},
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb\nc", 5, "a\nb\nc"},
		{"\n\n", 1, ""},
		{"a\nb", 0, ""},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, tail(tc.in, tc.n), "tail(%q, %d)", tc.in, tc.n)
	}
}

func TestParseModinfoStrings(t *testing.T) {
	info := parseModinfoStrings([]byte("license=GPL\x00depends=scsi_mod,libiscsi\x00\x00junk\x00=x\x00vermagic=6.1.0 SMP\x00"))
	assert.Equal(t, map[string]string{"license": "GPL", "depends": "scsi_mod,libiscsi", "vermagic": "6.1.0 SMP"}, info)
}

func FuzzParseModinfo(f *testing.F) {
	f.Add([]byte("\x7fELF"))
	f.Add([]byte("depends=a,b\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := parseModinfo(b)
		if err != nil {
			require.Nil(t, info)
		}
		for k := range parseModinfoStrings(b) {
			require.NotEmpty(t, k)
		}
	})
}

func TestNormModule(t *testing.T) {
	for in, want := range map[string]string{
		"dm-multipath.ko": "dm_multipath", "crc32c_generic.ko.xz": "crc32c_generic",
		"iscsi_tcp": "iscsi_tcp", "target_core_mod.ko.zst": "target_core_mod", "x.ko.gz": "x",
	} {
		assert.Equal(t, want, normModule(in))
	}
}

// fakeBzImage builds a minimal bzImage: boot header + payload.
func fakeBzImage(payload []byte) []byte {
	const setupSects = 1
	b := make([]byte, (setupSects+1)*512+16+len(payload))
	b[0x1f1] = setupSects
	copy(b[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x206:], 0x20f)
	binary.LittleEndian.PutUint32(b[0x248:], 16)
	binary.LittleEndian.PutUint32(b[0x24c:], uint32(len(payload)))
	copy(b[(setupSects+1)*512+16:], payload)
	return b
}

func TestExtractVmlinux(t *testing.T) {
	elfish := append([]byte("\x7fELF"), bytes.Repeat([]byte{7}, 1000)...)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(elfish)
	require.NoError(t, zw.Close())
	gzPayload := append(gz.Bytes(), 0, 0x10, 0, 0) // the kernel appends the size
	var notELF bytes.Buffer
	zw = gzip.NewWriter(&notELF)
	_, _ = zw.Write([]byte("not an elf"))
	require.NoError(t, zw.Close())

	xzPayload := func() []byte {
		cmd := exec.Command("xz", "-c", "--check=crc32")
		cmd.Stdin = bytes.NewReader(elfish)
		out, err := cmd.Output()
		require.NoError(t, err, "xz (Debian package xz-utils) is needed: run %s", DepsCommand)
		return append(out, 1, 2, 3, 4)
	}()

	tests := []struct {
		name    string
		bz      []byte
		wantErr string
	}{
		{"gzip", fakeBzImage(gzPayload), ""},
		{"xz", fakeBzImage(xzPayload), ""},
		{"not elf", fakeBzImage(notELF.Bytes()), "not an ELF"},
		{"unknown compression", fakeBzImage([]byte("ABCDEFGH")), "unknown bzImage compression"},
		{"short file", []byte("MZ"), "not a bzImage"},
		{"payload past end", func() []byte {
			b := fakeBzImage([]byte{1, 2, 3})
			binary.LittleEndian.PutUint32(b[0x24c:], 1<<30)
			return b
		}(), "outside"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := extractVmlinux(context.Background(), tc.bz)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, elfish, out)
		})
	}
}

func FuzzBzPayload(f *testing.F) {
	f.Add(fakeBzImage([]byte{0x1f, 0x8b, 8, 0}))
	f.Add([]byte("HdrS"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := bzPayload(b)
		if err == nil {
			require.NotEmpty(t, p)
			require.LessOrEqual(t, len(p), len(b))
		}
	})
}

func TestShQuoteRoundTrip(t *testing.T) {
	for _, s := range []string{"", "plain", "it's", `a "b" $c \d`, "new\nline", "'''", "-test.run=^TestX$"} {
		out, err := exec.Command("/bin/sh", "-c", "printf %s "+shQuote(s)).Output()
		require.NoError(t, err)
		assert.Equal(t, s, string(out))
	}
}

func TestRunScript(t *testing.T) {
	s, err := runScript(&Config{Binary: "/x", Args: []string{"-a", "b c"}, Env: map[string]string{"B": "2", "A": "it's"}})
	require.NoError(t, err)
	assert.Equal(t, "export GOSAN_IN_VM=1\nexport A='it'\\''s'\nexport B='2'\nexec /vmtest/payload '-a' 'b c'\n", s)
	s, err = runScript(&Config{Script: "exit 0"})
	require.NoError(t, err)
	assert.Contains(t, s, "exec /bin/sh /vmtest/script.sh\n")
	_, err = runScript(&Config{Script: "x", Env: map[string]string{"A=B": "1"}})
	assert.Error(t, err)
	_, err = runScript(&Config{Script: "x", Env: map[string]string{"1A": "1"}})
	assert.Error(t, err)
}

func TestBuildEnv(t *testing.T) {
	got := buildEnv([]string{"PATH=/bin", "CGO_ENABLED=1", "GOFLAGS=-race -mod=mod", "GOFLAGS_X=1"})
	assert.Equal(t, []string{"PATH=/bin", "GOFLAGS=-mod=mod", "GOFLAGS_X=1"}, got)
}

func TestModuleSets(t *testing.T) {
	k, err := FindKernel()
	require.NoError(t, err, "the guest kernel cache is needed: run %s", DepsCommand)
	ix, err := loadModuleIndex(k.ModulesDir())
	require.NoError(t, err)
	for _, s := range []ModuleSet{SetNet, SetISCSI, SetXFS, SetMultipath, SetLoop, SetLIO, SetVirtioBlk, SetBtrfs} {
		t.Run(string(s), func(t *testing.T) {
			names, err := s.Modules()
			require.NoError(t, err)
			mods, err := ix.resolve(context.Background(), names)
			require.NoError(t, err)
			pos := map[string]int{}
			for i, m := range mods {
				_, dup := pos[m.Name]
				require.False(t, dup, "%s listed twice", m.Name)
				pos[m.Name] = i
			}
			// Every module comes after its dependencies.
			for i, m := range mods {
				data, err := readModule(context.Background(), m.Path)
				require.NoError(t, err)
				info, err := parseModinfo(data)
				require.NoError(t, err)
				for _, d := range strings.Split(info["depends"], ",") {
					if d == "" {
						continue
					}
					j, ok := pos[normModule(d)]
					require.True(t, ok || ix.builtin[normModule(d)], "%s needs %s, not in the list", m.Name, d)
					if ok {
						assert.Less(t, j, i, "%s loaded before its dependency %s", m.Name, d)
					}
				}
			}
			for _, n := range names {
				_, ok := pos[normModule(n)]
				assert.True(t, ok || ix.builtin[normModule(n)], "requested %s missing", n)
			}
		})
	}
	iscsi, err := ix.resolve(context.Background(), []string{"iscsi_tcp"})
	require.NoError(t, err)
	var got []string
	for _, m := range iscsi {
		got = append(got, m.Name)
	}
	assert.Equal(t, "iscsi_tcp", got[len(got)-1])
	assert.Contains(t, got, "scsi_transport_iscsi")
	assert.Contains(t, got, "scsi_mod")

	_, err = ix.resolve(context.Background(), []string{"no_such_module_xyz"})
	assert.ErrorContains(t, err, `"no_such_module_xyz" not found`)
	_, err = ModuleSet("bogus").Modules()
	assert.Error(t, err)
}

func TestVmlinuxCached(t *testing.T) {
	k, err := FindKernel()
	require.NoError(t, err, "the guest kernel cache is needed: run %s", DepsCommand)
	p, err := k.Vmlinux(context.Background())
	require.NoError(t, err)
	assert.True(t, isELF(p))
	st, err := os.Stat(p)
	require.NoError(t, err)
	assert.Greater(t, st.Size(), int64(10<<20), fmt.Sprintf("%s is suspiciously small", p))
}
