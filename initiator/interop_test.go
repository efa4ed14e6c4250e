//go:build linux

package initiator

// The interop suite runs the same integration tests against every real target
// the library is tested with: tgtd (userspace, on the host) and LIO (the Linux
// kernel's target, in a qemu guest). Targets legitimately differ in a few
// answers; those differences are fields of interopTarget, each documented
// where it is set, and nowhere else does the suite branch on the target.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"testing"
	"time"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/internal/testenv/lio"
	"github.com/gosan/iscsi/internal/testenv/tgtd"
	"github.com/gosan/iscsi/scsi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// interopLUN is one LUN of an interop target.
type interopLUN struct {
	n         uint64
	size      int64
	blockSize int
	// stored returns what the target stored in [off, off+n): its SHA-256,
	// read from the backing file (tgtd) or asked of the guest (LIO).
	stored func(t testing.TB, ctx context.Context, off, n int64) [32]byte
}

// interopTarget is one fixture target.
type interopTarget struct {
	iqn  string
	luns []interopLUN
	// chap holds the credentials of the iscsi.CHAP targets (zero otherwise).
	chap iscsi.CHAP
	// initiator is the initiator name a login must use ("" = any).
	initiator string
}

// interopTargets is a target implementation under test and what it answers.
type interopTargets struct {
	name    string // "tgtd" or "lio"
	version string
	portal  string // the address the test dials

	plain, multi, chap, mutual, acl interopTarget
	allowedInitiator                string

	// advertised is the portal SendTargets reports: tgtd reports the
	// address it listens on (= portal); LIO reports the guest's own
	// address (10.0.2.15:3260), unreachable through the port forward.
	advertised string
	// discoveryHonoursACL: tgtd hides the ACL target from other
	// initiators; LIO lists every target to every initiator.
	discoveryHonoursACL bool
	// chapMissing is the login error when a iscsi.CHAP target gets no iscsi.CHAP
	// offer (AuthMethod=None): tgtd answers 0x0201 "authentication
	// failure"; LIO logs "Proposer's value list "None" contains no valid
	// values from Acceptor's value list "CHAP"" and closes the connection
	// without a Login Response, so the library can only report EOF.
	chapMissing error
	// notFound is the login error for a target name that does not exist:
	// tgtd answers 0x0203 "not found"; LIO 0x0301 "service unavailable".
	notFound error
	// aclRefusal is the login error for an initiator outside the ACL:
	// tgtd answers 0x0203 "target not found"; LIO 0x0202 "authorization
	// failure".
	aclRefusal error
	// chapNeedsInitiator: LIO binds iscsi.CHAP credentials to a node ACL (an
	// initiator name); a iscsi.CHAP login under another name is refused with
	// 0x0202. tgtd binds accounts to the target, any initiator name works.
	chapNeedsInitiator bool
	// reportLUNs is the REPORT LUNS answer of the multi-LUN target: tgtd
	// adds LUN 0, a controller (peripheral type 0x0c), to every target;
	// LIO's LUN 0 is the first disk.
	reportLUNs []uint64
	// vendor is the INQUIRY vendor of disk LUNs.
	vendor string
	// alias is the TargetAlias of the login response: LIO sends "LIO
	// Target"; tgtd sends none.
	alias string
	// negotiated: the values login settles on with our defaults. tgtd does
	// not declare MaxRecvDataSegmentLength (so the RFC default 8192
	// applies); LIO always declares 262144.
	maxXmit, firstBurst, maxBurst uint32
	// unitAttention: tgtd answers the first command of every new session
	// with CHECK CONDITION / UNIT ATTENTION (power on); LIO does not.
	unitAttention bool
	// enableDigests makes the plain target accept CRC32C digests: tgtd
	// must be told (HeaderDigest/DataDigest default None); LIO prefers
	// CRC32C and needs nothing.
	enableDigests func(t *testing.T)
}

// tgtdInterop starts a private tgtd with the standard fixture (private: the
// suite writes data and needs fresh sessions' unit attention).
func tgtdInterop(t *testing.T) *interopTargets {
	srv, f := tgtd.StartFixture(t)
	fileSum := func(path string) func(testing.TB, context.Context, int64, int64) [32]byte {
		return func(t testing.TB, _ context.Context, off, n int64) [32]byte {
			return sha256.Sum256(fileBytes(t, path, off, int(n)))
		}
	}
	conv := func(ft tgtd.FixtureTarget) interopTarget {
		it := interopTarget{iqn: ft.IQN}
		if ft.User != "" {
			it.chap = iscsi.CHAP{User: ft.User, Secret: ft.Secret, TargetUser: ft.TargetUser, TargetSecret: ft.TargetSecret,
				Algorithms: []iscsi.CHAPAlgorithm{iscsi.CHAPMD5}}
		}
		for _, l := range ft.LUNs {
			it.luns = append(it.luns, interopLUN{n: l.LUN, size: l.Size, blockSize: l.BlockSize, stored: fileSum(l.Path)})
		}
		return it
	}
	it := &interopTargets{
		name:    "tgtd",
		version: tgtdVersion(),
		portal:  f.Portal,
		plain:   conv(f.Plain), multi: conv(f.MultiLUN), chap: conv(f.CHAP), mutual: conv(f.MutualCHAP), acl: conv(f.ACL),
		allowedInitiator:    f.AllowedInitiator,
		advertised:          f.Portal,
		discoveryHonoursACL: true,
		chapMissing:         iscsi.ErrAuthentication,
		notFound:            iscsi.ErrTargetNotFound,
		aclRefusal:          iscsi.ErrTargetNotFound,
		reportLUNs:          []uint64{0, 1, 2},
		vendor:              "IET",
		maxXmit:             8192,
		firstBurst:          65536,
		maxBurst:            262144,
		unitAttention:       true,
		enableDigests: func(t *testing.T) {
			ctx := context.Background()
			require.NoError(t, srv.SetParam(ctx, tgtd.TIDPlain, "HeaderDigest", "CRC32C"))
			require.NoError(t, srv.SetParam(ctx, tgtd.TIDPlain, "DataDigest", "CRC32C"))
		},
	}
	it.acl.initiator = f.AllowedInitiator
	return it
}

// tgtdVersion is the Debian package version of tgt, for the log.
func tgtdVersion() string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", "tgt").Output()
	if err != nil {
		return "unknown"
	}
	return string(out)
}

// lioInterop boots the LIO guest for the suite.
func lioInterop(t *testing.T) *interopTargets {
	_, f := lio.StartFixture(t)
	conv := func(ft lio.FixtureTarget, initiator string) interopTarget {
		it := interopTarget{iqn: ft.IQN, initiator: initiator}
		if ft.User != "" {
			it.chap = iscsi.CHAP{User: ft.User, Secret: ft.Secret, TargetUser: ft.TargetUser, TargetSecret: ft.TargetSecret,
				Algorithms: []iscsi.CHAPAlgorithm{iscsi.CHAPMD5}}
		}
		for _, l := range ft.LUNs {
			it.luns = append(it.luns, interopLUN{n: l.LUN, size: l.Size, blockSize: l.BlockSize,
				stored: func(t testing.TB, ctx context.Context, off, n int64) [32]byte {
					sum, err := f.Checksum(ctx, l, off, n)
					require.NoError(t, err, "checksum of the guest's backing file")
					return sum
				}})
		}
		return it
	}
	return &interopTargets{
		name:    "lio",
		version: "Linux " + f.Kernel,
		portal:  f.Portal,
		plain:   conv(f.Plain, ""), multi: conv(f.MultiLUN, ""),
		chap: conv(f.CHAP, f.Initiator), mutual: conv(f.MutualCHAP, f.Initiator),
		acl:                 conv(f.ACL, f.AllowedInitiator),
		allowedInitiator:    f.AllowedInitiator,
		advertised:          f.AdvertisedPortal,
		discoveryHonoursACL: false,
		chapMissing:         io.EOF,
		notFound:            iscsi.ErrServiceUnavailable,
		aclRefusal:          iscsi.ErrAuthorization,
		chapNeedsInitiator:  true,
		reportLUNs:          []uint64{0, 1},
		vendor:              "LIO-ORG",
		alias:               "LIO Target",
		maxXmit:             262144,
		firstBurst:          65536,
		maxBurst:            262144,
		unitAttention:       false,
		enableDigests:       func(*testing.T) {},
	}
}

// TestInterop runs the integration suite against tgtd and LIO (in
// parallel with each other; the subtests of one target run in order, the
// digest test last because it changes tgtd's target parameters).
func TestInterop(t *testing.T) {
	for _, start := range []struct {
		name string
		fn   func(*testing.T) *interopTargets
	}{{"tgtd", tgtdInterop}, {"lio", lioInterop}} {
		t.Run(start.name, func(t *testing.T) {
			t.Parallel()
			began := time.Now()
			it := start.fn(t)
			t.Logf("%s %s at %s (ready after %v)", it.name, it.version, it.portal, time.Since(began).Round(time.Millisecond))
			t.Run("discovery", func(t *testing.T) { interopDiscovery(t, it) })
			t.Run("login", func(t *testing.T) { interopLogin(t, it) })
			t.Run("negotiated", func(t *testing.T) { interopNegotiated(t, it) })
			t.Run("unit-attention", func(t *testing.T) { interopUnitAttention(t, it) })
			t.Run("report-luns", func(t *testing.T) { interopReportLUNs(t, it) })
			t.Run("read-write", func(t *testing.T) { interopReadWrite(t, it) })
			t.Run("digests", func(t *testing.T) { interopDigests(t, it) })
			t.Logf("%s suite took %v", it.name, time.Since(began).Round(time.Millisecond))
		})
	}
}

// dial logs in to tg on it's portal with tg's initiator name and opts.
func (it *interopTargets) dial(t testing.TB, ctx context.Context, tg interopTarget, opts ...Option) *Session {
	t.Helper()
	all := []Option{WithLogger(testLogger(t)), WithLoginTimeout(20 * time.Second)}
	if tg.initiator != "" {
		all = append(all, WithInitiatorName(tg.initiator))
	}
	if tg.chap.User != "" {
		all = append(all, WithCHAP(tg.chap))
	}
	s, err := Dial(ctx, it.portal, tg.iqn, append(all, opts...)...)
	require.NoError(t, err, "login to %s on %s", tg.iqn, it.name)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func interopCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func interopDiscovery(t *testing.T, it *interopTargets) {
	ctx := interopCtx(t)
	targets, err := Discover(ctx, it.portal, WithLogger(testLogger(t)))
	require.NoError(t, err)
	byName := map[string]Target{}
	for _, tg := range targets {
		byName[tg.TargetName] = tg
	}
	for _, ft := range []interopTarget{it.plain, it.multi, it.chap, it.mutual} {
		tg, ok := byName[ft.iqn]
		require.True(t, ok, "target %s missing from %v", ft.iqn, targets)
		require.Len(t, tg.Portals, 1)
		assert.Equal(t, it.advertised, tg.Portals[0].String())
		assert.Equal(t, uint16(1), tg.Portals[0].GroupTag)
	}
	_, acl := byName[it.acl.iqn]
	assert.Equal(t, !it.discoveryHonoursACL, acl, "ACL target listed to an initiator outside its ACL")

	if it.advertised == it.portal {
		return
	}
	// Behind NAT or a port forward the advertised portal is unreachable:
	// dialling it fails within the login timeout with an error naming the
	// address and carrying no login status (how it fails depends on the
	// network: refused, timed out, or, on the project's machines, a TCP
	// connection that something other than LIO closes at once), and
	// dialling the address the user gave works.
	_, err = Dial(ctx, it.advertised, it.plain.iqn, WithLogger(testLogger(t)), WithLoginTimeout(2*time.Second))
	require.Error(t, err)
	assert.Contains(t, err.Error(), it.advertised)
	var le *iscsi.LoginError
	assert.False(t, errors.As(err, &le), "no target answered: %v", err)
	t.Logf("advertised portal: %v", err)
	s := it.dial(t, ctx, interopTarget{iqn: byName[it.plain.iqn].TargetName})
	require.NoError(t, s.Ping(ctx))
	assert.Equal(t, it.portal, s.Portal())
}

func interopLogin(t *testing.T, it *interopTargets) {
	wrongSecret := it.chap.chap
	wrongSecret.Secret = "not-the-right-secret"
	wrongTarget := it.mutual.chap
	wrongTarget.TargetSecret = "not-the-target-secret"
	chapOtherName := it.chap
	chapOtherName.initiator = tgtd.IQNPrefix + "not-in-any-acl"
	var chapOtherWant error // tgtd: accounts are per target, any name logs in
	if it.chapNeedsInitiator {
		chapOtherWant = iscsi.ErrAuthorization
	}
	noCHAP := it.chap
	noCHAP.chap = iscsi.CHAP{}
	wrong := func(tg interopTarget, c iscsi.CHAP) interopTarget { tg.chap = c; return tg }
	aclOther := it.acl
	aclOther.initiator = ""
	for _, tc := range []struct {
		name   string
		target interopTarget
		want   error // nil: success
	}{
		{"plain", it.plain, nil},
		{"chap", it.chap, nil},
		{"mutual", it.mutual, nil},
		{"chap-missing", noCHAP, it.chapMissing},
		{"chap-wrong-secret", wrong(it.chap, wrongSecret), iscsi.ErrAuthentication},
		{"mutual-wrong-target-secret", wrong(it.mutual, wrongTarget), iscsi.ErrMutualAuth},
		{"chap-other-initiator", chapOtherName, chapOtherWant},
		{"acl-allowed", it.acl, nil},
		{"acl-refused", aclOther, it.aclRefusal},
		{"no-such-target", interopTarget{iqn: tgtd.IQNPrefix + "does-not-exist"}, it.notFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := interopCtx(t)
			opts := []Option{WithLogger(testLogger(t)), WithLoginTimeout(20 * time.Second)}
			if tc.target.initiator != "" {
				opts = append(opts, WithInitiatorName(tc.target.initiator))
			}
			if tc.target.chap.User != "" {
				opts = append(opts, WithCHAP(tc.target.chap))
			}
			s, err := Dial(ctx, it.portal, tc.target.iqn, opts...)
			if tc.want == nil {
				require.NoError(t, err)
				defer s.Close()
				require.NoError(t, s.Ping(ctx))
				return
			}
			require.Error(t, err)
			require.ErrorIs(t, err, tc.want)
			var le *iscsi.LoginError
			if errors.As(err, &le) {
				t.Logf("%s answers status 0x%02x%02x", it.name, le.Class, le.Detail)
			}
			for _, secret := range []string{it.chap.chap.Secret, it.mutual.chap.Secret, it.mutual.chap.TargetSecret, "not-the-target-secret", "not-the-right-secret"} {
				assert.NotContains(t, err.Error(), secret, "secret in error text")
			}
		})
	}
}

func interopNegotiated(t *testing.T, it *interopTargets) {
	ctx := interopCtx(t)
	s := it.dial(t, ctx, it.plain)
	n := s.Negotiated()
	t.Logf("%s negotiated %+v", it.name, n)
	assert.Equal(t, it.maxXmit, n.MaxXmitDataSegmentLength, "target's MaxRecvDataSegmentLength")
	assert.Equal(t, uint32(DefaultMaxRecvDataSegmentLength), n.MaxRecvDataSegmentLength, "ours")
	assert.Equal(t, it.firstBurst, n.FirstBurstLength)
	assert.Equal(t, it.maxBurst, n.MaxBurstLength)
	assert.True(t, n.InitialR2T, "both targets insist on InitialR2T=Yes (OR'ed)")
	assert.True(t, n.ImmediateData)
	assert.False(t, n.HeaderDigest)
	assert.False(t, n.DataDigest)
	assert.Equal(t, uint16(1), n.TargetPortalGroupTag)
	assert.Equal(t, it.alias, n.TargetAlias)
	// A write larger than FirstBurstLength and MaxXmitDataSegmentLength goes
	// as immediate data, then R2T-solicited Data-Out within both limits.
	l, err := s.LUN(ctx, it.plain.luns[0].n)
	require.NoError(t, err)
	data := randBytes(int(it.maxBurst) + 3*512)
	off := int64(5 << 20)
	_, err = l.WriteAt(data, off)
	require.NoError(t, err)
	assert.Equal(t, sha256.Sum256(data), it.plain.luns[0].stored(t, ctx, off, int64(len(data))))
}

func interopUnitAttention(t *testing.T, it *interopTargets) {
	ctx := interopCtx(t)
	s := it.dial(t, ctx, it.plain)
	n := it.plain.luns[0].n
	// Execute does not absorb UNIT ATTENTION: the first command shows it.
	raw := &LUN{s: s, n: n, raw: encodeLUN(n)}
	res, err := raw.Execute(ctx, scsi.TestUnitReadyCDB(nil), nil, nil)
	require.NoError(t, err)
	if it.unitAttention {
		require.ErrorIs(t, res.Err(), scsi.ErrUnitAttention)
	} else {
		require.NoError(t, res.Err(), "no UNIT ATTENTION on a new session")
	}
	res, err = raw.Execute(ctx, scsi.TestUnitReadyCDB(nil), nil, nil)
	require.NoError(t, err)
	require.NoError(t, res.Err(), "the second command is clean on both targets")
}

func interopReportLUNs(t *testing.T, it *interopTargets) {
	ctx := interopCtx(t)
	s := it.dial(t, ctx, it.multi)
	luns, err := s.ReportLUNs(ctx)
	require.NoError(t, err)
	assert.Equal(t, it.reportLUNs, luns)
	for _, fl := range it.multi.luns {
		l, err := s.LUN(ctx, fl.n)
		require.NoError(t, err)
		assert.Equal(t, fl.blockSize, l.BlockSize())
		assert.Equal(t, fl.size, l.Size())
		assert.Equal(t, it.vendor, l.Inquiry().Vendor)
		_, hasLimits := l.BlockLimits()
		assert.True(t, hasLimits, "Block Limits VPD page")
	}
}

// interopReadWrite writes blocks of sizes from one block to about 1 MiB at
// offsets off the burst boundaries, reads them back through the same and a
// fresh session, and compares the whole span with what the target stored.
func interopReadWrite(t *testing.T, it *interopTargets) {
	for _, fl := range it.multi.luns {
		t.Run(fmt.Sprintf("bs%d", fl.blockSize), func(t *testing.T) {
			ctx := interopCtx(t)
			bs := fl.blockSize
			s := it.dial(t, ctx, it.multi)
			l, err := s.LUN(ctx, fl.n)
			require.NoError(t, err)
			start := int64(bs) * 3
			off := start
			var image []byte // expected bytes of [start, off): zeros between writes
			type span struct {
				off  int64
				data []byte
			}
			var spans []span
			for _, blocks := range []int{1, 2, 3, 17, 64, 129, 257, 513, 2049} {
				n := min(blocks*bs, 1<<20+bs)
				require.LessOrEqual(t, off+int64(n), fl.size)
				data := randBytes(n)
				w, err := l.WriteAt(data, off)
				require.NoError(t, err, "write %d at %d", n, off)
				require.Equal(t, n, w)
				got := make([]byte, n)
				_, err = l.ReadAt(got, off)
				require.NoError(t, err)
				require.True(t, bytes.Equal(data, got), "read back %d at %d", n, off)
				spans = append(spans, span{off, data})
				image = append(image, data...)
				image = append(image, make([]byte, 5*bs)...)
				off += int64(n) + int64(5*bs)
			}
			require.NoError(t, l.SynchronizeCache(ctx))
			// A fresh session sees every write.
			s2 := it.dial(t, ctx, it.multi)
			l2, err := s2.LUN(ctx, fl.n)
			require.NoError(t, err)
			for _, sp := range spans {
				got := make([]byte, len(sp.data))
				_, err := l2.ReadAt(got, sp.off)
				require.NoError(t, err)
				require.True(t, bytes.Equal(sp.data, got), "fresh session reads %d at %d", len(sp.data), sp.off)
			}
			// The target stored exactly the expected image (zeros in the gaps).
			assert.Equal(t, sha256.Sum256(image), fl.stored(t, ctx, start, int64(len(image))), "stored bytes of [%d, %d)", start, off)
			var ae *AlignmentError
			_, err = l.ReadAt(make([]byte, bs), 1)
			require.ErrorAs(t, err, &ae)
		})
	}
}

func interopDigests(t *testing.T, it *interopTargets) {
	it.enableDigests(t)
	ctx := interopCtx(t)
	s := it.dial(t, ctx, it.plain, WithHeaderDigest(DigestRequireCRC32C), WithDataDigest(DigestRequireCRC32C))
	require.True(t, s.Negotiated().HeaderDigest)
	require.True(t, s.Negotiated().DataDigest)
	fl := it.plain.luns[0]
	l, err := s.LUN(ctx, fl.n)
	require.NoError(t, err)
	off := int64(16<<20 + 512)
	for _, n := range []int{512, 64<<10 + 512, 1 << 20} {
		data := randBytes(n)
		_, err = l.WriteAt(data, off)
		require.NoError(t, err)
		got := make([]byte, n)
		_, err = l.ReadAt(got, off)
		require.NoError(t, err)
		require.True(t, bytes.Equal(data, got), "read back %d at %d", n, off)
		assert.Equal(t, sha256.Sum256(data), fl.stored(t, ctx, off, int64(n)))
		off += int64(n)
	}
}
