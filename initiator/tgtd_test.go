package initiator

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/gosan/iscsi/internal/tgtd"
	"github.com/stretchr/testify/require"
)

// shared is one tgtd with the standard fixture for the tests that do not
// disturb it (no resets, no parameter changes).
var shared struct {
	srv *tgtd.Server
	fix *tgtd.Fixture
	err error
}

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	// Backing files on tmpfs, as in the reference measurements.
	dir, err := os.MkdirTemp("/dev/shm", "gosan-initiator-")
	if err != nil {
		dir = ""
	}
	srv, err := tgtd.StartServer(ctx, tgtd.Options{Dir: dir})
	if err == nil {
		shared.srv = srv
		shared.fix, err = srv.SetupFixture(ctx, "")
	}
	cancel()
	shared.err = err
	code := m.Run()
	if shared.srv != nil {
		_ = shared.srv.Close()
	}
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
	os.Exit(code)
}

func fixture(t testing.TB) *tgtd.Fixture {
	t.Helper()
	require.NoError(t, shared.err, "tgtd fixture: install Debian package tgt (make deps)")
	return shared.fix
}

func dialT(t testing.TB, ctx context.Context, target string, opts ...Option) *Session {
	t.Helper()
	opts = append([]Option{WithLogger(testLogger(t))}, opts...)
	s, err := Dial(ctx, fixture(t).Portal, target, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// fileBytes reads the backing file range: the ground truth of a write.
func fileBytes(t testing.TB, path string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	b := make([]byte, n)
	_, err = f.ReadAt(b, off)
	require.NoError(t, err)
	return b
}

func TestSmokeReadWrite(t *testing.T) {
	f := fixture(t)
	ctx := context.Background()
	s := dialT(t, ctx, f.Plain.IQN)
	l, err := s.LUN(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, int64(tgtd.PlainSize), l.Size())
	require.Equal(t, 512, l.BlockSize())
	for _, n := range []int{512, 4096, 8192, 65536, 300 * 1024, 3 << 20} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			off := int64(512 * 7)
			data := randBytes(n)
			w, err := l.WriteAt(data, off)
			require.NoError(t, err)
			require.Equal(t, n, w)
			require.True(t, bytes.Equal(data, fileBytes(t, f.Plain.LUNs[0].Path, off, n)), "backing file differs")
			got := make([]byte, n)
			r, err := l.ReadAt(got, off)
			require.NoError(t, err)
			require.Equal(t, n, r)
			require.True(t, bytes.Equal(data, got))
		})
	}
}
