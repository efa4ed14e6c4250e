package blockdev

import (
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The mount layer (blockdev/volume) depends on the kernel binding, never
// the reverse: no file of this package, tests included, imports its child.
// (The guest tests that drive a volume.Manager are in package
// blockdev_test.)
func TestNoImportOfChildPackage(t *testing.T) {
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly|parser.ParseComments)
		require.NoError(t, err, f)
		if strings.HasSuffix(af.Name.Name, "_test") {
			continue
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			require.False(t, strings.HasPrefix(p, "github.com/gosan/iscsi/blockdev/"), "%s imports %s", f, p)
		}
	}
}

// exportedMethods lists the exported methods of recv declared in files
// (and exported package funcs, with recv ""), as "Name(params)results"
// spelled by go/printer, so a stub whose signature drifts fails too.
func exportedMethods(t *testing.T, files []string, recv string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, f := range files {
		fset := token.NewFileSet()
		af, err := parser.ParseFile(fset, f, nil, 0)
		require.NoError(t, err, f)
		for _, d := range af.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || !fd.Name.IsExported() {
				continue
			}
			r := ""
			if fd.Recv != nil {
				var b strings.Builder
				require.NoError(t, printer.Fprint(&b, fset, fd.Recv.List[0].Type))
				r = b.String()
			}
			if r != recv {
				continue
			}
			var b strings.Builder
			require.NoError(t, printer.Fprint(&b, fset, fd.Type))
			out[fd.Name.Name] = b.String()
		}
	}
	return out
}

// The portable API is the same on every OS: Open and every method of
// *Kernel, and volume's NewManager and every method of *Manager, have the
// same signatures in the Linux files and in the stubs for other systems
// (which cross-compile but never run here).
func TestOtherOSStubsMatchLinuxAPI(t *testing.T) {
	for _, tc := range []struct {
		dir, stub string
		recvs     []string
	}{
		{".", "kernel_other.go", []string{"*Kernel", ""}},
		{"volume", "manager_other.go", []string{"*Manager", ""}},
	} {
		linux, err := filepath.Glob(filepath.Join(tc.dir, "*_linux.go"))
		require.NoError(t, err)
		for _, recv := range tc.recvs {
			want := exportedMethods(t, linux, recv)
			got := exportedMethods(t, []string{filepath.Join(tc.dir, tc.stub)}, recv)
			require.NotEmpty(t, want, "%s %q", tc.dir, recv)
			require.Equal(t, want, got, "%s: receiver %q", tc.dir, recv)
		}
	}
}
