package blockdev

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/internal/iscsinl"
	"github.com/gosan/iscsi/pdu"
)

func TestSessionParams(t *testing.T) {
	c := sessionConfig{InitiatorName: "iqn.i", TargetName: "iqn.t", Addr: "10.0.0.1", Port: 3260,
		ISID: isidFor(0x010203), User: "u", UserIn: "tu", Timeouts: DefaultTimeouts()}
	got := map[iscsinl.Param]string{}
	for _, p := range sessionParams(c) {
		_, dup := got[p.Param]
		require.False(t, dup, "%v set twice", p.Param)
		got[p.Param] = p.Value
		assert.NotEqual(t, iscsinl.ParamPassword, p.Param, "secrets are never handed to the kernel")
		assert.NotEqual(t, iscsinl.ParamPasswordIn, p.Param, "secrets are never handed to the kernel")
	}
	assert.Equal(t, map[iscsinl.Param]string{
		iscsinl.ParamInitiatorName:     "iqn.i",
		iscsinl.ParamTargetName:        "iqn.t",
		iscsinl.ParamPersistentAddress: "10.0.0.1",
		iscsinl.ParamPersistentPort:    "3260",
		iscsinl.ParamSessRecoveryTmo:   "120",
		iscsinl.ParamIfaceName:         "default",
		iscsinl.ParamISID:              "00023d010203",
		iscsinl.ParamFastAbort:         "1",
		iscsinl.ParamAbortTmo:          "15",
		iscsinl.ParamLUResetTmo:        "30",
		iscsinl.ParamTgtResetTmo:       "30",
		iscsinl.ParamPingTmo:           "5",
		iscsinl.ParamRecvTmo:           "5",
		iscsinl.ParamUsername:          "u",
		iscsinl.ParamUsernameIn:        "tu",
	}, got)
	// The essential ones are not optional.
	for _, p := range sessionParams(c) {
		switch p.Param {
		case iscsinl.ParamTargetName, iscsinl.ParamInitiatorName, iscsinl.ParamPersistentAddress,
			iscsinl.ParamPersistentPort, iscsinl.ParamSessRecoveryTmo:
			assert.False(t, p.Optional, "%v", p.Param)
		}
	}
	c.User, c.UserIn = "", ""
	for _, p := range sessionParams(c) {
		assert.NotEqual(t, iscsinl.ParamUsername, p.Param)
	}
}

func TestNegotiatedParams(t *testing.T) {
	n := iscsi.Negotiated{
		HeaderDigest: true, DataDigest: false, MaxRecvDataSegmentLength: 262144, MaxXmitDataSegmentLength: 8192,
		MaxBurstLength: 16776192, FirstBurstLength: 65536, DefaultTime2Wait: 2, DefaultTime2Retain: 0,
		MaxOutstandingR2T: 1, ErrorRecoveryLevel: 0, InitialR2T: true, ImmediateData: true,
		DataPDUInOrder: true, DataSequenceInOrder: false, TargetPortalGroupTag: 7, HasTargetPortalGroupTag: true,
	}
	ps := negotiatedParams(n, 0xffffffff)
	got := map[iscsinl.Param]string{}
	for _, p := range ps {
		got[p.Param] = p.Value
	}
	assert.Equal(t, map[iscsinl.Param]string{
		iscsinl.ParamMaxRecvDLength:   "262144",
		iscsinl.ParamMaxXmitDLength:   "8192",
		iscsinl.ParamHdrDgstEn:        "1",
		iscsinl.ParamDataDgstEn:       "0",
		iscsinl.ParamInitialR2TEn:     "1",
		iscsinl.ParamMaxR2T:           "1",
		iscsinl.ParamImmDataEn:        "1",
		iscsinl.ParamFirstBurst:       "65536",
		iscsinl.ParamMaxBurst:         "16776192",
		iscsinl.ParamPDUInOrderEn:     "1",
		iscsinl.ParamDataSeqInOrderEn: "0",
		iscsinl.ParamERL:              "0",
		iscsinl.ParamIFMarkerEn:       "0",
		iscsinl.ParamOFMarkerEn:       "0",
		iscsinl.ParamExpStatSN:        "0", // StatSN+1 wraps (RFC 1982)
		iscsinl.ParamDefTime2Wait:     "2",
		iscsinl.ParamDefTime2Retain:   "0",
		iscsinl.ParamTPGT:             "7",
	}, got)
	n.HasTargetPortalGroupTag = false
	for _, p := range negotiatedParams(n, 41) {
		assert.NotEqual(t, iscsinl.ParamTPGT, p.Param)
		if p.Param == iscsinl.ParamExpStatSN {
			assert.Equal(t, "42", p.Value)
		}
	}
}

func TestISIDAndSecs(t *testing.T) {
	assert.Equal(t, [6]byte{0, 2, 0x3d, 0, 0, 1}, isidFor(1))
	assert.Equal(t, [6]byte{0, 2, 0x3d, 0xab, 0xcd, 0xef}, isidFor(0x12abcdef))
	assert.Equal(t, "0", secs(-time.Second))
	assert.Equal(t, "1", secs(time.Millisecond))
	assert.Equal(t, "120", secs(2*time.Minute))
	assert.Equal(t, "1", kbool(true))
	assert.Equal(t, "0", kbool(false))
}

func TestParseISID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want [6]byte
		ok   bool
	}{
		{"00023d000001", [6]byte{0, 2, 0x3d, 0, 0, 1}, true},
		{"400001370000", [6]byte{0x40, 0, 1, 0x37, 0, 0}, true},
		{"", [6]byte{}, false},
		{"00023d0000", [6]byte{}, false},
		{"00023d00000102", [6]byte{}, false},
		{"zz023d000001", [6]byte{}, false},
	} {
		got, ok := parseISID(tc.in)
		assert.Equal(t, tc.ok, ok, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
}

func TestTimeoutsDefaults(t *testing.T) {
	got := Timeouts{Recovery: 5 * time.Second}.withDefaults()
	want := DefaultTimeouts()
	want.Recovery = 5 * time.Second
	assert.Equal(t, want, got)
}

func TestAttachErrorIs(t *testing.T) {
	for _, tc := range []struct {
		err  *AttachError
		want []error
		not  []error
	}{
		{&AttachError{Step: stepConnect, Err: syscall.ECONNREFUSED}, []error{ErrUnreachable, syscall.ECONNREFUSED}, []error{ErrLogin, iscsi.ErrAuthentication}},
		{&AttachError{Step: stepLogin, Err: &iscsi.LoginError{Class: 2, Detail: 1}}, []error{ErrLogin, iscsi.ErrAuthentication}, []error{ErrUnreachable, iscsi.ErrTargetNotFound}},
		{&AttachError{Step: stepLogin, Err: fmt.Errorf("x: %w", iscsi.ErrMutualAuth)}, []error{iscsi.ErrMutualAuth, ErrLogin}, []error{iscsi.ErrAuthentication}},
		{&AttachError{Step: stepLogin, Err: &iscsi.LoginError{Class: 2, Detail: 3}}, []error{iscsi.ErrTargetNotFound, ErrLogin}, []error{iscsi.ErrAuthentication}},
		{&AttachError{Step: stepCreate, Err: &iscsinl.KernelError{Op: iscsinl.UEventCreateSession, Errno: syscall.EPERM}}, []error{ErrPermission}, []error{ErrLogin}},
		{&AttachError{Step: stepScan, Err: fmt.Errorf("%w: x", ErrNoDevice)}, []error{ErrNoDevice}, []error{ErrLogin}},
	} {
		for _, w := range tc.want {
			assert.ErrorIs(t, tc.err, w, tc.err.Error())
		}
		for _, w := range tc.not {
			assert.NotErrorIs(t, tc.err, w, tc.err.Error())
		}
	}
	assert.ErrorIs(t, mapOpenErr(&iscsinl.TransportNotLoadedError{Name: "tcp"}), ErrModuleNotLoaded)
	assert.ErrorIs(t, mapOpenErr(iscsinl.ErrKernelUnsupported), ErrModuleNotLoaded)
	assert.ErrorIs(t, mapOpenErr(iscsinl.ErrPermission), ErrPermission)
}

func TestCHAPRedaction(t *testing.T) {
	c := &iscsi.CHAP{User: "alice", Secret: "s3cret-0123456", TargetUser: "tgt", TargetSecret: "t-s3cret-0123456"}
	s := Spec{Portal: "p", TargetName: "t", CHAP: c}
	for _, out := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v", c, c, c), s.String(), fmt.Sprintf("%+v", s), c.LogValue().String()} {
		assert.NotContains(t, out, "s3cret")
		assert.Contains(t, out, "alice")
	}
	assert.NotContains(t, Spec{Portal: "p", TargetName: "t"}.String(), "s3cret")
}

func TestHostChecks(t *testing.T) {
	dir := t.TempDir()
	status := filepath.Join(dir, "status")
	require.NoError(t, os.WriteFile(status, []byte("Name:\tx\nCapEff:\t000001ffffffffff\n"), 0o644))
	ok, err := hasCapSysAdmin(status)
	require.NoError(t, err)
	assert.True(t, ok)
	require.NoError(t, os.WriteFile(status, []byte("CapEff:\t0000000000000000\n"), 0o644))
	ok, err = hasCapSysAdmin(status)
	require.NoError(t, err)
	assert.False(t, ok)
	require.NoError(t, os.WriteFile(status, []byte("Name:\tx\n"), 0o644))
	_, err = hasCapSysAdmin(status)
	assert.Error(t, err)

	nl := "sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode\n" +
		"0000000000000000 0   1          00000550 0        0        0     2        0        100\n" +
		"0000000000000000 8   0          00000000 0        0        0     2        0        101\n" + // the kernel's
		"0000000000000000 8   4242       00000001 0        0        0     2        0        102\n" + // us
		"0000000000000000 8   777        00000001 0        0        0     2        0        103\n" + // iscsid
		"0000000000000000 8   778        00000002 0        0        0     2        0        104\n" + // other group
		"garbage\n"
	others, err := parseNetlinkListeners(strings.NewReader(nl), 4242)
	require.NoError(t, err)
	assert.Equal(t, []uint32{777}, others)
}

func FuzzParseNetlinkListeners(f *testing.F) {
	f.Add("0000 8 777 00000001 0\n", uint32(1))
	f.Add("sk Eth Pid Groups\n0 8 x y\n", uint32(0))
	f.Fuzz(func(t *testing.T, s string, self uint32) {
		out, _ := parseNetlinkListeners(strings.NewReader(s), self)
		for _, p := range out {
			if p == self || p == 0 {
				t.Fatalf("listed self/kernel port %d", p)
			}
		}
	})
}

func TestPortal(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ in, want string }{
		{"10.0.0.1", "10.0.0.1:3260"},
		{"10.0.0.1:3261", "10.0.0.1:3261"},
		{"[fd00::1]:3260", "[fd00::1]:3260"},
		{"[fd00::1]", "[fd00::1]:3260"},
		{"localhost:3262", "127.0.0.1:3262"},
	} {
		a, err := resolvePortal(ctx, tc.in)
		require.NoError(t, err, tc.in)
		got := portalString(a)
		if tc.in == "localhost:3262" && got == "[::1]:3262" {
			continue // resolver order
		}
		assert.Equal(t, tc.want, got, tc.in)
	}
	assert.Equal(t, "10.0.0.1:1", portalString(&net.TCPAddr{IP: net.ParseIP("10.0.0.1"), Port: 1}), "no v4-in-v6 form")
	for _, bad := range []string{"", ":3260", "10.0.0.1:0", "10.0.0.1:99999", "10.0.0.1:x"} {
		_, err := resolvePortal(ctx, bad)
		assert.Error(t, err, bad)
	}
}

func TestRestoreITT(t *testing.T) {
	for _, tc := range []struct {
		op      pdu.Opcode
		restore bool
	}{
		{pdu.OpLoginResponse, true}, {pdu.OpTextResponse, true}, {pdu.OpLogoutResponse, true},
		{pdu.OpNOPIn, false}, {pdu.OpAsyncMessage, false},
	} {
		p := make([]byte, pdu.BHSLen)
		p[0] = byte(tc.op)
		binary.BigEndian.PutUint32(p[16:], 0x5000_0001) // the kernel's ITT
		restoreITT(p, 7)
		want := uint32(0x5000_0001)
		if tc.restore {
			want = 7
		}
		assert.Equal(t, want, binary.BigEndian.Uint32(p[16:]), "%v", tc.op)
	}
	restoreITT(make([]byte, 10), 1) // short: no panic
}

func TestDialTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	accepted := make(chan struct{})
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
		close(accepted)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fd, err := dialTCP(ctx, l.Addr().(*net.TCPAddr), "")
	require.NoError(t, err)
	nodelay, err := syscall.GetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY)
	require.NoError(t, err)
	assert.Equal(t, 1, nodelay)
	syscall.Close(fd)
	<-accepted

	// A closed port: connection refused, typed as unreachable by Attach.
	addr := l.Addr().(*net.TCPAddr)
	l.Close()
	_, err = dialTCP(ctx, addr, "")
	assert.ErrorIs(t, err, syscall.ECONNREFUSED)
	_, err = dialTCP(ctx, addr, "no-such-netdev0")
	assert.Error(t, err)
	// ctx ends while connecting to a blackhole address.
	short, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	start := time.Now()
	_, err = dialTCP(short, &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 3260}, "")
	require.Error(t, err)
	assert.Less(t, time.Since(start), 3*time.Second)
}

func TestOpenWithoutTransport(t *testing.T) {
	// This host's kernel has no NETLINK_ISCSI, or the fake sysfs root has
	// no iscsi_transport: either way the module is reported missing.
	_, err := Open(Options{SysfsRoot: t.TempDir()})
	require.Error(t, err)
	if !errors.Is(err, ErrPermission) {
		assert.ErrorIs(t, err, ErrModuleNotLoaded)
		assert.Contains(t, err.Error(), "modprobe iscsi_tcp")
	}
}
