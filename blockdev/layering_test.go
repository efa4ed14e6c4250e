package blockdev

import (
	"go/parser"
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
