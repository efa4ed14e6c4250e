package pdu_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// pduPath is the import path of this package; every other package of the
// module must speak its vocabulary instead of reading header bytes.
const pduPath = "github.com/gosan/iscsi/pdu"

// listedPackage is the part of `go list -json` output rawOffsets needs.
type listedPackage struct {
	ImportPath string
	Dir        string
	Export     string
	GoFiles    []string
	Module     *struct{ Path string }
}

// TestNoRawHeaderOffsetsOutsidePDU type-checks the product code (non-test
// files) of every package of the module except pdu and fails on each place
// that reaches into a header by byte offset: indexing or slicing a
// pdu.BHS (pdu's word accessors are unexported, so the compiler already
// refuses h.word(28) outside it). Header fields are read and written with
// pdu's named accessors and typed PDU structs, so a field has one
// definition (pdu's) and a mistyped offset cannot hide in a caller. Test
// files are exempt: hostile-peer tests forge malformed headers on purpose.
func TestNoRawHeaderOffsetsOutsidePDU(t *testing.T) {
	pkgs := listModule(t)
	var found []string
	for _, p := range pkgs {
		if p.ImportPath == pduPath || p.Module == nil || p.Module.Path != "github.com/gosan/iscsi" {
			continue
		}
		found = append(found, rawOffsets(t, p, pkgs)...)
	}
	require.Empty(t, found, "raw header offsets outside package pdu; use pdu's field accessors or PDU structs")
}

// TestRawOffsetCheckFindsViolations proves the check can fail: a package
// that indexes and slices a BHS yields one finding each.
func TestRawOffsetCheckFindsViolations(t *testing.T) {
	dir := t.TempDir()
	src := `package bad

import (
	"encoding/binary"

	"github.com/gosan/iscsi/pdu"
)

func f(h *pdu.BHS, v pdu.BHS) uint32 {
	_ = h[2]
	_ = v[8:16]
	_ = v[:0]      // encoding in place: fine
	_ = h.Opcode() // named: fine
	binary.BigEndian.PutUint32(h[24:], 1)
	return binary.BigEndian.Uint32(h[28:32])
}
`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.go"), []byte(src), 0o644))
	pkgs := listModule(t)
	found := rawOffsets(t, listedPackage{ImportPath: "example.com/bad", Dir: dir, GoFiles: []string{"bad.go"}}, pkgs)
	require.Len(t, found, 4, "%v", found)
	require.Contains(t, found[0], "bad.go:10:6: indexes a pdu.BHS")
}

// listModule lists the module's packages with their dependencies and the
// export data the build cache holds for them.
func listModule(t *testing.T) map[string]listedPackage {
	t.Helper()
	goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goCmd); err != nil {
		goCmd = "go"
	}
	cmd := exec.Command(goCmd, "list", "-e", "-export", "-deps", "-json=ImportPath,Dir,Export,GoFiles,Module", "github.com/gosan/iscsi/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "go list: %s", stderr.String())
	pkgs := map[string]listedPackage{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else {
			require.NoError(t, err)
		}
		pkgs[p.ImportPath] = p
	}
	require.Contains(t, pkgs, pduPath)
	return pkgs
}

// rawOffsets type-checks p against the export data of its dependencies and
// reports every raw access to a pdu.BHS.
func rawOffsets(t *testing.T, p listedPackage, pkgs map[string]listedPackage) []string {
	t.Helper()
	fset := token.NewFileSet()
	var files []*ast.File
	for _, name := range p.GoFiles {
		f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, 0)
		require.NoError(t, err)
		files = append(files, f)
	}
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		dep, ok := pkgs[path]
		if !ok || dep.Export == "" {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(dep.Export)
	})
	info := &types.Info{Types: map[ast.Expr]types.TypeAndValue{}, Selections: map[*ast.SelectorExpr]*types.Selection{}}
	conf := types.Config{Importer: imp}
	_, err := conf.Check(p.ImportPath, fset, files, info)
	require.NoError(t, err, "type-checking %s", p.ImportPath)

	isBHS := func(e ast.Expr) bool {
		tv, ok := info.Types[e]
		if !ok {
			return false
		}
		typ := tv.Type
		if ptr, ok := typ.(*types.Pointer); ok {
			typ = ptr.Elem()
		}
		named, ok := typ.(*types.Named)
		return ok && named.Obj().Pkg() != nil && named.Obj().Pkg().Path() == pduPath && named.Obj().Name() == "BHS"
	}
	var found []string
	report := func(n ast.Node, what string) {
		found = append(found, fmt.Sprintf("%s: %s", fset.Position(n.Pos()), what))
	}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.IndexExpr:
				if isBHS(n.X) {
					report(n, "indexes a pdu.BHS")
				}
			case *ast.SliceExpr:
				// h[:] hands the whole header on (to a writer, a copy) and
				// h[:0] is where a PDU struct's AppendHeader encodes in
				// place: both allowed.
				whole := n.Low == nil && (n.High == nil || isZero(n.High))
				if isBHS(n.X) && !whole {
					report(n, "slices a pdu.BHS")
				}
			}
			return true
		})
	}
	return found
}

func isZero(e ast.Expr) bool {
	lit, ok := e.(*ast.BasicLit)
	return ok && lit.Kind == token.INT && lit.Value == "0"
}
