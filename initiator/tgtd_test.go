//go:build linux

package initiator

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/internal/testenv/tgtd"
	"github.com/gosan/iscsi/pdu"
	"github.com/gosan/iscsi/scsi"
	"github.com/stretchr/testify/assert"
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
	flag.Parse()
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		os.Exit(m.Run()) // fuzz workers need no tgtd
	}
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

func TestDiscover(t *testing.T) {
	t.Parallel()
	f := fixture(t)
	ctx := context.Background()
	targets, err := Discover(ctx, f.Portal, WithLogger(testLogger(t)))
	require.NoError(t, err)
	byName := map[string]Target{}
	for _, tg := range targets {
		byName[tg.TargetName] = tg
	}
	for _, ft := range []tgtd.FixtureTarget{f.Plain, f.MultiLUN, f.CHAP, f.MutualCHAP, f.Null} {
		tg, ok := byName[ft.IQN]
		require.True(t, ok, "target %s missing from %v", ft.IQN, targets)
		require.NotEmpty(t, tg.Portals)
		assert.Equal(t, f.Portal, tg.Portals[0].String())
		assert.Equal(t, uint16(1), tg.Portals[0].GroupTag)
	}
	_, acl := byName[f.ACL.IQN]
	assert.False(t, acl, "discovery honours the ACL")

	// The allowed initiator sees the ACL target; its portal dials.
	targets, err = Discover(ctx, f.Portal, WithInitiatorName(f.AllowedInitiator))
	require.NoError(t, err)
	found := false
	for _, tg := range targets {
		if tg.TargetName == f.ACL.IQN {
			found = true
			s := dialT(t, ctx, tg.TargetName, WithInitiatorName(f.AllowedInitiator))
			require.NoError(t, s.Ping(ctx))
		}
	}
	assert.True(t, found)
}

func TestLoginVariants(t *testing.T) {
	t.Parallel()
	f := fixture(t)
	chap := func(ft tgtd.FixtureTarget) iscsi.CHAP {
		return iscsi.CHAP{User: ft.User, Secret: ft.Secret, Algorithms: []iscsi.CHAPAlgorithm{iscsi.CHAPMD5}}
	}
	mutual := func(ft tgtd.FixtureTarget) iscsi.CHAP {
		return iscsi.CHAP{User: ft.User, Secret: ft.Secret, TargetUser: ft.TargetUser, TargetSecret: ft.TargetSecret,
			Algorithms: []iscsi.CHAPAlgorithm{iscsi.CHAPMD5}}
	}
	wrongTarget := mutual(f.MutualCHAP)
	wrongTarget.TargetSecret = "not-the-target-secret"
	wrongSecret := chap(f.CHAP)
	wrongSecret.Secret = "not-the-right-secret"
	for _, tc := range []struct {
		name   string
		target string
		opts   []Option
		want   error // nil: success
	}{
		{"plain", f.Plain.IQN, nil, nil},
		{"chap", f.CHAP.IQN, []Option{WithCHAP(chap(f.CHAP))}, nil},
		{"mutual", f.MutualCHAP.IQN, []Option{WithCHAP(mutual(f.MutualCHAP))}, nil},
		{"chap-missing", f.CHAP.IQN, nil, iscsi.ErrAuthentication},
		{"chap-wrong-secret", f.CHAP.IQN, []Option{WithCHAP(wrongSecret)}, iscsi.ErrAuthentication},
		{"mutual-wrong-target-secret", f.MutualCHAP.IQN, []Option{WithCHAP(wrongTarget)}, iscsi.ErrMutualAuth},
		{"acl-refused", f.ACL.IQN, nil, iscsi.ErrAuthorization},
		{"acl-allowed", f.ACL.IQN, []Option{WithInitiatorName(f.AllowedInitiator)}, nil},
		{"no-such-target", IQNNoSuch, nil, iscsi.ErrTargetNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			opts := append([]Option{WithLogger(testLogger(t)), WithLoginTimeout(10 * time.Second)}, tc.opts...)
			s, err := Dial(ctx, f.Portal, tc.target, opts...)
			if tc.want == nil {
				require.NoError(t, err)
				defer s.Close()
				require.NoError(t, s.Ping(ctx))
				return
			}
			require.Error(t, err)
			if tc.name == "acl-refused" && errors.Is(err, iscsi.ErrTargetNotFound) {
				return // tgtd answers "not found" for a target hidden by its ACL
			}
			require.ErrorIs(t, err, tc.want)
			for _, secret := range []string{f.CHAP.Secret, f.MutualCHAP.Secret, f.MutualCHAP.TargetSecret, "not-the-target-secret", "not-the-right-secret"} {
				assert.NotContains(t, err.Error(), secret, "secret in error text")
			}
		})
	}
}

// IQNNoSuch names a target the fixture does not have.
const IQNNoSuch = tgtd.IQNPrefix + "does-not-exist"

func TestDigests(t *testing.T) {
	t.Parallel()
	fixture(t)
	srv, f := tgtd.StartFixture(t)
	ctx := context.Background()
	require.NoError(t, srv.SetParam(ctx, f.Plain.TID, "HeaderDigest", "CRC32C"))
	require.NoError(t, srv.SetParam(ctx, f.Plain.TID, "DataDigest", "CRC32C"))
	s, err := Dial(ctx, f.Portal, f.Plain.IQN, WithLogger(testLogger(t)), WithHeaderDigest(DigestRequireCRC32C), WithDataDigest(DigestRequireCRC32C))
	require.NoError(t, err)
	defer s.Close()
	require.True(t, s.Negotiated().HeaderDigest)
	require.True(t, s.Negotiated().DataDigest)
	l, err := s.LUN(ctx, 1)
	require.NoError(t, err)
	off := int64(40 << 20)
	for _, n := range []int{512, 64 << 10, 1 << 20} {
		data := randBytes(n)
		_, err = l.WriteAt(data, off)
		require.NoError(t, err)
		require.True(t, bytes.Equal(data, fileBytes(t, f.Plain.LUNs[0].Path, off, n)))
		got := make([]byte, n)
		_, err = l.ReadAt(got, off)
		require.NoError(t, err)
		require.True(t, bytes.Equal(data, got))
	}
}

// Execute reaches a LUN that is no block device: tgtd's LUN 0 is a
// storage array controller, which has no capacity to read (Session.LUN
// fails on it).
func TestExecuteControllerLUN(t *testing.T) {
	t.Parallel()
	f := fixture(t)
	ctx := context.Background()
	s := dialT(t, ctx, f.MultiLUN.IQN)
	buf := make([]byte, 96)
	res, err := s.Execute(ctx, 0, scsi.InquiryCDB(nil, uint16(len(buf))), buf, nil)
	require.NoError(t, err)
	require.NoError(t, res.Err()) // INQUIRY never reports a UNIT ATTENTION
	inq, err := scsi.ParseInquiry(buf[:res.Transferred])
	require.NoError(t, err)
	assert.Equal(t, scsi.TypeStorageArrayCtrl, inq.Type)
	assert.Equal(t, "IET", inq.Vendor)

	got, err := s.Inquiry(ctx, 0)
	require.NoError(t, err)
	assert.Equal(t, inq, got)

	// Execute does not absorb UNIT ATTENTION: the first TEST UNIT READY
	// after login reports the power-on one, the second is GOOD.
	res, err = s.Execute(ctx, 0, scsi.TestUnitReadyCDB(nil), nil, nil)
	require.NoError(t, err)
	require.ErrorIs(t, res.Err(), scsi.ErrUnitAttention)
	res, err = s.Execute(ctx, 0, scsi.TestUnitReadyCDB(nil), nil, nil)
	require.NoError(t, err)
	assert.NoError(t, res.Err())
}

func TestReadWriteBlockSizes(t *testing.T) {
	t.Parallel()
	f := fixture(t)
	ctx := context.Background()
	s := dialT(t, ctx, f.MultiLUN.IQN)
	luns, err := s.ReportLUNs(ctx)
	require.NoError(t, err)
	assert.Equal(t, []uint64{0, 1, 2}, luns)
	for _, fl := range f.MultiLUN.LUNs {
		t.Run(fmt.Sprintf("bs%d", fl.BlockSize), func(t *testing.T) {
			l, err := s.LUN(ctx, fl.LUN)
			require.NoError(t, err)
			bs := fl.BlockSize
			require.Equal(t, bs, l.BlockSize())
			require.Equal(t, fl.Size, l.Size())
			inq := l.Inquiry()
			assert.Equal(t, "IET", inq.Vendor)
			_, hasLimits := l.BlockLimits()
			assert.True(t, hasLimits)
			// Sizes from one block to several MiB, offsets off burst boundaries.
			off := int64(bs) * 3
			for _, blocks := range []int{1, 2, 3, 17, 64, 129, 513, 1500, 4097} {
				n := min(blocks*bs, 3<<20)
				if off+int64(n) > fl.Size {
					off = int64(bs)
				}
				data := randBytes(n)
				_, err := l.WriteAt(data, off)
				require.NoError(t, err, "write %d at %d", n, off)
				require.True(t, bytes.Equal(data, fileBytes(t, fl.Path, off, n)), "file after write %d at %d", n, off)
				got := make([]byte, n)
				_, err = l.ReadAt(got, off)
				require.NoError(t, err)
				require.True(t, bytes.Equal(data, got), "read back %d at %d", n, off)
				off += int64(n) + int64(bs)*5
			}
			// Misaligned I/O is refused with a typed error.
			_, err = l.ReadAt(make([]byte, bs), 1)
			var ae *AlignmentError
			require.ErrorAs(t, err, &ae)
			_, err = l.WriteAt(make([]byte, bs+1), 0)
			require.ErrorAs(t, err, &ae)
			_, err = l.ReadAt(make([]byte, bs), fl.Size)
			require.ErrorAs(t, err, &ae)
			require.NoError(t, l.SynchronizeCache(ctx))
		})
	}
}

func TestConcurrentWritersQD32(t *testing.T) {
	t.Parallel()
	f := fixture(t)
	ctx := context.Background()
	s := dialT(t, ctx, f.Plain.IQN, WithQueueDepth(32))
	fl := f.Plain.LUNs[0]
	l, err := s.LUN(ctx, fl.LUN)
	require.NoError(t, err)
	const workers = 32
	start := fl.Size / 2 // the lower half belongs to other tests
	region := (fl.Size - start) / workers
	var wg sync.WaitGroup
	written := make([][]byte, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			base := start + int64(w)*region
			var all []byte
			off := base
			for i := 0; ; i++ {
				n := 512 * (1 + (w*7+i*13)%300)
				if off+int64(n) > base+region {
					break
				}
				d := randBytes(n)
				if _, err := l.WriteAt(d, off); !assert.NoError(t, err) {
					return
				}
				all = append(all, d...)
				off += int64(n)
			}
			written[w] = all
		}()
	}
	wg.Wait()
	for w := range workers {
		got := fileBytes(t, fl.Path, start+int64(w)*region, len(written[w]))
		require.True(t, bytes.Equal(written[w], got), "worker %d region differs in the backing file", w)
	}
}

func TestLargeSplitRead(t *testing.T) {
	t.Parallel()
	f := fixture(t)
	ctx := context.Background()
	s := dialT(t, ctx, f.Plain.IQN)
	l, err := s.LUN(ctx, 1)
	require.NoError(t, err)
	n := 6<<20 + 512*3
	off := int64(10<<20 + 512)
	data := randBytes(n)
	_, err = l.WriteAt(data, off)
	require.NoError(t, err)
	require.True(t, bytes.Equal(data, fileBytes(t, f.Plain.LUNs[0].Path, off, n)))
	got := make([]byte, n)
	_, err = l.ReadAt(got, off)
	require.NoError(t, err)
	require.True(t, bytes.Equal(data, got))
}

func TestExecuteRaw(t *testing.T) {
	t.Parallel()
	f := fixture(t)
	ctx := context.Background()
	s := dialT(t, ctx, f.Plain.IQN)
	l, err := s.LUN(ctx, 1)
	require.NoError(t, err)
	res, err := l.Execute(ctx, scsi.TestUnitReadyCDB(nil), nil, nil)
	require.NoError(t, err)
	require.NoError(t, res.Err())
	// An unsupported opcode: CHECK CONDITION / ILLEGAL REQUEST in Result.
	res, err = l.Execute(ctx, []byte{0xc7, 0, 0, 0, 0, 0}, nil, nil)
	require.NoError(t, err)
	assert.Equal(t, scsi.StatusCheckCondition, res.Status)
	require.ErrorIs(t, res.Err(), scsi.ErrIllegalRequest)
	// Over-long CDBs are refused before sending.
	_, err = l.Execute(ctx, make([]byte, 32), nil, nil)
	require.Error(t, err)
	capy, err := l.ReadCapacity(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint32(512), capy.BlockLength)
}

func TestUnmapWriteSame(t *testing.T) {
	t.Parallel()
	f := fixture(t)
	ctx := context.Background()
	s := dialT(t, ctx, f.MultiLUN.IQN)
	fl := f.MultiLUN.LUNs[0]
	l, err := s.LUN(ctx, fl.LUN)
	require.NoError(t, err)
	off, n := int64(1<<20), int64(64<<10)
	_, err = l.WriteAt(bytes.Repeat([]byte{0x77}, int(n)), off)
	require.NoError(t, err)
	pattern := bytes.Repeat([]byte{0xab}, 512)
	err = l.WriteSame(ctx, off, n, pattern, false)
	t.Logf("WRITE SAME(16): %v", err)
	if err == nil {
		require.True(t, bytes.Equal(bytes.Repeat(pattern, int(n/512)), fileBytes(t, fl.Path, off, int(n))))
	} else {
		require.ErrorIs(t, err, scsi.ErrIllegalRequest, "WRITE SAME: success or ILLEGAL REQUEST")
	}
	err = l.Unmap(ctx, off, n)
	t.Logf("UNMAP: %v", err)
	if err == nil {
		got := fileBytes(t, fl.Path, off, int(n))
		require.True(t, bytes.Equal(make([]byte, n), got), "unmapped range reads back zeros in the file")
	} else {
		require.ErrorIs(t, err, scsi.ErrIllegalRequest, "UNMAP: success or ILLEGAL REQUEST")
	}
	var ae *AlignmentError
	require.ErrorAs(t, l.Unmap(ctx, 1, 512), &ae)
}

// TestResetsAndUnitAttention runs on a private tgtd: resets disturb every
// session of the target.
func TestResetsAndUnitAttention(t *testing.T) {
	t.Parallel()
	fixture(t)
	srv, f := tgtd.StartFixture(t)
	_ = srv
	ctx := context.Background()
	s, err := Dial(ctx, f.Portal, f.Plain.IQN, WithLogger(testLogger(t)))
	require.NoError(t, err)
	defer s.Close()
	// The first command of a new session gets UNIT ATTENTION: raw Execute
	// shows it, LUN() absorbs it.
	raw := &LUN{s: s, n: 1, raw: encodeLUN(1)}
	res, err := raw.Execute(ctx, scsi.TestUnitReadyCDB(nil), nil, nil)
	require.NoError(t, err)
	require.ErrorIs(t, res.Err(), scsi.ErrUnitAttention)
	l, err := s.LUN(ctx, 1)
	require.NoError(t, err)
	buf := make([]byte, 4096)
	_, err = l.ReadAt(buf, 0)
	require.NoError(t, err)

	require.NoError(t, s.LUNReset(ctx, 1))
	_, err = l.ReadAt(buf, 0) // UA after reset absorbed
	require.NoError(t, err)
	require.NoError(t, s.AbortTaskSet(ctx, 1))
	var te *TMFError
	if err := s.TargetWarmReset(ctx); err != nil {
		require.ErrorAs(t, err, &te)
		assert.Equal(t, pdu.TMFNotSupported, te.Response, "tgtd does not support TARGET WARM RESET")
	}
	_, err = l.WriteAt(buf, 0)
	require.NoError(t, err)
	// ABORT TASK of a tag that names no task (the internal path a
	// cancelled command takes).
	err = s.tmf(ctx, pdu.TMFAbortTask, encodeLUN(1), 0x7777, 1)
	if err != nil {
		require.ErrorAs(t, err, &te)
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	f := fixture(t)
	ctx := context.Background()
	before := goroutines()
	s, err := Dial(ctx, f.Portal, f.Plain.IQN, WithNOP(50*time.Millisecond, time.Second))
	require.NoError(t, err)
	l, err := s.LUN(ctx, 1)
	require.NoError(t, err)
	_, err = l.ReadAt(make([]byte, 1<<20), 0)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	checkNoLeak(t, before)
	_, err = l.ReadAt(make([]byte, 512), 0)
	require.ErrorIs(t, err, ErrSessionClosed)
}

// TestZeroAllocs proves the steady state of a 4 KiB read and write
// allocates nothing (not parallel: AllocsPerRun counts every goroutine).
func TestZeroAllocs(t *testing.T) {
	f := fixture(t)
	ctx := context.Background()
	s := dialT(t, ctx, f.Null.IQN)
	l, err := s.LUN(ctx, 1)
	require.NoError(t, err)
	buf := make([]byte, 4096)
	_, err = l.ReadAt(buf, 0)
	require.NoError(t, err)
	off := int64(0)
	reads := testing.AllocsPerRun(500, func() {
		off = (off + 4096) % (1 << 30)
		if _, err := l.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
	})
	writes := testing.AllocsPerRun(500, func() {
		off = (off + 4096) % (1 << 30)
		if _, err := l.WriteAt(buf, off); err != nil {
			t.Fatal(err)
		}
	})
	assert.Zero(t, reads, "allocations per 4 KiB read")
	assert.Zero(t, writes, "allocations per 4 KiB write")
}

// redirector answers every login with the given statuses in turn, the last
// one repeated: 0x0302 (out of resources) or 0x0101 (moved temporarily to
// to). It counts the logins it saw.
func redirector(t *testing.T, to string, statuses ...uint16) (addr string, logins *atomic.Int32) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	logins = &atomic.Int32{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(logins.Add(1)) - 1
			st := statuses[min(n, len(statuses)-1)]
			go func() {
				defer c.Close()
				r := pdu.NewReader(c, 0)
				b, err := r.ReadPDU(nil)
				if err != nil {
					return
				}
				var req pdu.LoginRequest
				if req.Decode(b) != nil {
					return
				}
				resp := &pdu.LoginResponse{CSG: req.CSG, NSG: req.NSG, ISID: req.ISID, ITT: req.ITT,
					StatusClass: uint8(st >> 8), StatusDetail: uint8(st), ExpCmdSN: req.CmdSN, MaxCmdSN: req.CmdSN}
				if st>>8 == 1 {
					resp.Data = pdu.AppendText(nil, pdu.KV{Key: "TargetAddress", Value: to + ",1"})
				}
				_ = pdu.NewWriter(c).WriteMessage(resp)
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().String(), logins
}

func TestRedirectAndOutOfResources(t *testing.T) {
	t.Parallel()
	f := fixture(t)
	ctx := context.Background()
	addr, logins := redirector(t, f.Portal, 0x0302, 0x0302, 0x0101)
	s, err := Dial(ctx, addr, f.Plain.IQN, WithLogger(testLogger(t)))
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, f.Portal, s.Portal(), "followed the redirection")
	assert.Equal(t, int32(3), logins.Load(), "two retries after out of resources, then the redirect")
	require.NoError(t, s.Ping(ctx))

	// Out of resources for ever: Dial gives up at the login timeout.
	addr, _ = redirector(t, f.Portal, 0x0302)
	start := time.Now()
	_, err = Dial(ctx, addr, f.Plain.IQN, WithLoginTimeout(700*time.Millisecond))
	require.ErrorIs(t, err, iscsi.ErrOutOfResources)
	assert.Less(t, time.Since(start), 5*time.Second)
}

// TestTargetNOPAndConnectionDrop runs on a private tgtd that pings every
// second: the pings are answered (tgtd drops connections that miss them),
// then a connection deleted on the target fails the session with a typed
// error, and Close still returns promptly.
func TestTargetNOPAndConnectionDrop(t *testing.T) {
	t.Parallel()
	fixture(t)
	srv, f := tgtd.StartFixture(t, tgtd.WithNOP(1, 2))
	ctx := context.Background()
	s, err := Dial(ctx, f.Portal, f.Plain.IQN, WithLogger(testLogger(t)), WithNOP(0, 0), WithReplacementTimeout(0))
	require.NoError(t, err)
	defer s.Close()
	l, err := s.LUN(ctx, 1)
	require.NoError(t, err)
	time.Sleep(3500 * time.Millisecond) // several tgtd pings, none missed
	require.NoError(t, s.Err())
	_, err = l.ReadAt(make([]byte, 4096), 0)
	require.NoError(t, err)

	sess, err := srv.Sessions(ctx, f.Plain.TID)
	require.NoError(t, err)
	require.Len(t, sess, 1)
	require.NotEmpty(t, sess[0].Connections)
	require.NoError(t, srv.DeleteConnection(ctx, f.Plain.TID, sess[0].SID, sess[0].Connections[0].CID))
	require.Eventually(t, func() bool { return s.Err() != nil }, 10*time.Second, 20*time.Millisecond)
	_, err = l.ReadAt(make([]byte, 4096), 0)
	var ce *ConnectionError
	require.ErrorAs(t, err, &ce)
	start := time.Now()
	_ = s.Close()
	assert.Less(t, time.Since(start), 2*time.Second)
}
