//go:build linux

package iscsinl

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/gosan/iscsi/pdu"
)

const testHandle = 0xffff888004c0ffee

// fakeKernel answers requests on the far end of a SOCK_SEQPACKET pair, the
// way scsi_transport_iscsi does: replies echo the uevent under the request's
// nlmsg_type, events are separate datagrams with nlmsg_type 0.
type fakeKernel struct {
	t    *testing.T
	fd   int
	mu   sync.Mutex
	reqs []*Message
	wg   sync.WaitGroup
}

// handler returns the datagrams to send back for one request.
type handler func(k *fakeKernel, m *Message) [][]byte

func newTestConn(t *testing.T, h handler, opts ...Option) (*Conn, *fakeKernel) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	require.NoError(t, unix.SetNonblock(fds[0], true))
	o := defaultOptions()
	o.handle = testHandle
	o.logger = slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, fn := range opts {
		fn(&o)
	}
	c, err := newConn(fds[0], nil, 4242, o)
	require.NoError(t, err)
	k := &fakeKernel{t: t, fd: fds[1]}
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		buf := make([]byte, 1<<20)
		for {
			n, err := unix.Read(k.fd, buf)
			if err != nil || n == 0 {
				return
			}
			msgs, err := ParseMessages(buf[:n])
			if err != nil || len(msgs) != 1 {
				k.t.Errorf("fake kernel: bad request: %v", err)
				return
			}
			m := cloneMessage(&msgs[0])
			k.mu.Lock()
			k.reqs = append(k.reqs, m)
			k.mu.Unlock()
			if h == nil {
				continue
			}
			for _, d := range h(k, m) {
				k.send(d)
			}
		}
	}()
	t.Cleanup(func() {
		c.Close()
		unix.Shutdown(k.fd, unix.SHUT_RDWR)
		k.wg.Wait()
		unix.Close(k.fd)
	})
	return c, k
}

func (k *fakeKernel) send(d []byte) {
	if _, err := unix.Write(k.fd, d); err != nil {
		k.t.Errorf("fake kernel: write: %v", err)
	}
}

func (k *fakeKernel) requests() []*Message {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]*Message(nil), k.reqs...)
}

// reply echoes the request's uevent with r filled in.
func reply(m *Message, r ...uint32) []byte {
	u := make([]uint32, 6)
	for i := range u {
		u[i] = binary.NativeEndian.Uint32(m.U[4*i:])
	}
	return kmsg{nlType: m.Header.Type, typ: m.Type, handle: m.TransportHandle, u: u, r: r}.bytes()
}

func ifError(m *Message, errno syscall.Errno) []byte {
	return kmsg{nlType: m.Header.Type, typ: KEventIfError, iferror: -int32(errno), handle: m.TransportHandle}.bytes()
}

func neg(e syscall.Errno) uint32 { return uint32(-int32(e)) }

func sidcid(m *Message) (uint32, uint32) {
	return binary.NativeEndian.Uint32(m.U[0:]), binary.NativeEndian.Uint32(m.U[4:])
}

func recvPDU(sid, cid uint32, p []byte) []byte {
	return kmsg{typ: KEventRecvPDU, handle: testHandle, r: []uint32{sid, cid}, payload: p}.bytes()
}

// kernelLike implements the request types a login needs.
func kernelLike(k *fakeKernel, m *Message) [][]byte {
	sid, cid := sidcid(m)
	switch m.Type {
	case UEventCreateSession:
		return [][]byte{reply(m, 5, 2)}
	case UEventCreateConn:
		return [][]byte{reply(m, sid, cid)}
	case UEventDestroySession:
		if sid != 5 {
			return [][]byte{ifError(m, syscall.EINVAL)}
		}
		return [][]byte{kmsg{typ: KEventDestroySession, r: []uint32{2, 5}}.bytes(), reply(m)}
	case UEventBindConn:
		return [][]byte{reply(m, neg(syscall.EBADF))}
	case UEventStartConn:
		return [][]byte{ifError(m, syscall.EPERM)}
	case UEventSendPDU:
		return [][]byte{reply(m), recvPDU(sid, cid, loginRsp("TargetPortalGroupTag=1\x00"))}
	case UEventGetStats:
		p := make([]byte, 96)
		binary.NativeEndian.PutUint32(p[16+4*3:], 3)
		other := make([]byte, 96)
		binary.NativeEndian.PutUint32(other[16+4*3:], 99)
		return [][]byte{
			kmsg{typ: UEventGetStats, u: []uint32{sid + 1, cid}, payload: other}.bytes(), // another process's
			kmsg{typ: UEventGetStats, u: []uint32{sid, cid}, payload: p}.bytes(),
		}
	}
	return [][]byte{reply(m)}
}

func TestConnRequests(t *testing.T) {
	c, k := newTestConn(t, kernelLike)
	ctx := context.Background()

	s, err := c.CreateSession(ctx, CreateSession{InitialCmdSN: 1, CmdsMax: 128, QueueDepth: 32})
	require.NoError(t, err)
	assert.Equal(t, SessionResult{SID: 5, HostNo: 2}, s)
	assert.True(t, c.Owns(5))

	cr, err := c.CreateConn(ctx, 5, 0)
	require.NoError(t, err)
	assert.Equal(t, ConnResult{SID: 5, CID: 0}, cr)

	err = c.BindConn(ctx, 5, 0, 7, true)
	var ke *KernelError
	require.ErrorAs(t, err, &ke)
	assert.True(t, ke.Retcode)
	assert.ErrorIs(t, err, syscall.EBADF)

	require.NoError(t, c.SetParam(ctx, 5, 0, ParamTargetName, "iqn.2024-01.test:t"))
	require.NoError(t, c.SetParam(ctx, 5, 0, ParamPassword, "hunter2"))

	err = c.StartConn(ctx, 5, 0)
	assert.ErrorIs(t, err, ErrPermission)
	assert.Contains(t, err.Error(), "need CAP_SYS_ADMIN")

	st, err := c.GetStats(ctx, 5, 0)
	require.NoError(t, err)
	assert.Equal(t, uint32(3), st.Login, "stats of another sid are not taken")

	require.NoError(t, c.StopConn(ctx, 5, 0, StopConnTerm))
	require.NoError(t, c.DestroyConn(ctx, 5, 0))
	require.NoError(t, c.UnbindSession(ctx, 5))
	require.NoError(t, c.SetHostParam(ctx, 2, HostParamInitiatorName, "iqn.i"))

	err = c.DestroySession(ctx, 99)
	require.ErrorAs(t, err, &ke)
	assert.Equal(t, UEventDestroySession, ke.Op)
	assert.ErrorIs(t, err, syscall.EINVAL)

	require.NoError(t, c.DestroySession(ctx, 5))
	assert.False(t, c.Owns(5))
	select {
	case ev := <-c.Events():
		assert.Equal(t, &DestroySessionEvent{HostNo: 2, SID: 5}, ev)
	case <-time.After(5 * time.Second):
		t.Fatal("no DESTROY_SESSION event")
	}

	reqs := k.requests()
	require.NotEmpty(t, reqs)
	for _, r := range reqs {
		assert.Equal(t, uint64(testHandle), r.TransportHandle)
		assert.Equal(t, uint32(4242), r.Header.PID)
		assert.Equal(t, uint16(r.Type), r.Header.Type)
	}
	var sp []*Message
	for _, r := range reqs {
		if r.Type == UEventSetParam {
			sp = append(sp, r)
		}
	}
	require.Len(t, sp, 2)
	assert.Equal(t, "iqn.2024-01.test:t\x00", string(sp[0].Payload[:binary.NativeEndian.Uint32(sp[0].U[12:])]))
	bind := reqs[2]
	require.Equal(t, UEventBindConn, bind.Type)
	assert.Equal(t, uint64(7), binary.NativeEndian.Uint64(bind.U[8:]), "transport_eph = fd")
	assert.Equal(t, uint32(1), binary.NativeEndian.Uint32(bind.U[16:]), "is_leading")
}

func TestConnLoginTransport(t *testing.T) {
	c, k := newTestConn(t, kernelLike)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.CreateSession(ctx, CreateSession{InitialCmdSN: 1})
	require.NoError(t, err)
	_, err = c.CreateConn(ctx, s.SID, 0)
	require.NoError(t, err)

	tr := c.PDUTransport(s.SID, 0)
	req := &pdu.LoginRequest{Transit: true, CSG: 1, NSG: 3, ITT: 1, CmdSN: 1, Data: []byte("InitiatorName=iqn.i\x00TargetName=iqn.t\x00")}
	require.NoError(t, tr.SendPDU(ctx, req))
	got, err := tr.RecvPDU(ctx)
	require.NoError(t, err)
	assert.Equal(t, loginRsp("TargetPortalGroupTag=1\x00"), got)

	var send *Message
	for _, r := range k.requests() {
		if r.Type == UEventSendPDU {
			send = r
		}
	}
	require.NotNil(t, send)
	hs, ds := binary.NativeEndian.Uint32(send.U[8:]), binary.NativeEndian.Uint32(send.U[12:])
	assert.Equal(t, uint32(48), hs, "hdr_size")
	assert.Equal(t, uint32(len(req.Data)), ds, "data_size is the unpadded length")
	assert.Equal(t, req.AppendHeader(nil), send.Payload[:48])
	assert.Equal(t, req.Data, send.Payload[48:48+ds])

	require.NoError(t, tr.SendRaw(ctx, loginRsp("x=y\x00")))
	_, err = tr.RecvPDU(ctx)
	require.NoError(t, err)
	assert.Error(t, tr.SendRaw(ctx, make([]byte, 47)))
}

func TestConnEventRouting(t *testing.T) {
	var mu sync.Mutex
	var foreign []Event
	c, k := newTestConn(t, kernelLike, WithForeignEventHandler(func(ev Event) {
		mu.Lock()
		foreign = append(foreign, ev)
		mu.Unlock()
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.Adopt(7)

	// Foreign session (iscsid's, say) and host events: handler, never an error.
	k.send(recvPDU(100, 0, loginRsp("a=b\x00")))
	k.send(kmsg{typ: KEventConnError, r: []uint32{100, 0, uint32(ErrConnFailed)}}.bytes())
	k.send(kmsg{typ: KEventHostEvent, r: []uint32{3, 0, 2}}.bytes())
	// Owned session: Events, and CONN_ERROR ends a RecvPDU wait.
	done := make(chan error, 1)
	go func() {
		_, err := c.RecvPDU(ctx, 7, 0)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	k.send(kmsg{typ: KEventConnError, r: []uint32{7, 0, uint32(ErrTCPConnClose)}}.bytes())
	select {
	case err := <-done:
		var ce *ConnError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, ErrTCPConnClose, ce.Code)
		assert.Contains(t, err.Error(), "ISCSI_ERR_TCP_CONN_CLOSE")
	case <-ctx.Done():
		t.Fatal("RecvPDU not woken by CONN_ERROR")
	}
	select {
	case ev := <-c.Events():
		assert.Equal(t, &ConnErrorEvent{SID: 7, CID: 0, Error: ErrTCPConnClose}, ev)
	case <-ctx.Done():
		t.Fatal("no event")
	}
	k.send(kmsg{typ: KEventUnbindSession, r: []uint32{7, 3}}.bytes())
	select {
	case ev := <-c.Events():
		assert.Equal(t, &UnbindSessionEvent{SID: 7, HostNo: 3}, ev)
	case <-ctx.Done():
		t.Fatal("no event")
	}
	// Requests still work after foreign events.
	_, err := c.CreateConn(ctx, 7, 1)
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, foreign, 3)
	pe, ok := foreign[0].(*RecvPDUEvent)
	require.True(t, ok)
	assert.Equal(t, uint32(100), pe.SID)
	assert.Equal(t, loginRsp("a=b\x00"), pe.PDU)
	assert.IsType(t, &ConnErrorEvent{}, foreign[1])
	assert.IsType(t, &HostEvent{}, foreign[2])

	_, err = c.RecvPDU(ctx, 100, 0)
	assert.ErrorIs(t, err, ErrNotOwned)
}

func TestConnForeignDroppedWithoutHandler(t *testing.T) {
	c, k := newTestConn(t, kernelLike)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	k.send(recvPDU(100, 0, loginRsp("")))
	k.send([]byte{1, 2, 3}) // garbage datagram: logged, not fatal
	k.send(kmsg{typ: KEventRecvPDU, payload: make([]byte, 10)}.bytes())
	_, err := c.CreateSession(ctx, CreateSession{})
	require.NoError(t, err)
	select {
	case ev := <-c.Events():
		t.Fatalf("unexpected event %#v", ev)
	default:
	}
}

func TestConnPDUQueueOverflowAndGrowth(t *testing.T) {
	c, k := newTestConn(t, kernelLike, WithPDUBuffer(1), WithRecvBuffer(128))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.Adopt(7)
	big := loginRsp(string(make([]byte, 4000)))
	k.send(recvPDU(7, 0, big)) // larger than the 128-byte receive buffer
	got, err := c.RecvPDU(ctx, 7, 0)
	require.NoError(t, err)
	assert.Equal(t, big, got)

	k.send(recvPDU(7, 0, loginRsp("1")))
	k.send(recvPDU(7, 0, loginRsp("2")))
	k.send(recvPDU(7, 0, loginRsp("3")))
	require.Eventually(t, func() bool { return c.LostMessages() >= 2 }, 5*time.Second, 5*time.Millisecond)
	got, err = c.RecvPDU(ctx, 7, 0)
	require.NoError(t, err)
	assert.Equal(t, loginRsp("1"), got)
	_, err = c.RecvPDU(ctx, 7, 0)
	assert.ErrorIs(t, err, ErrEventsLost)
}

func TestConnTimeoutSkipsLateReply(t *testing.T) {
	var mu sync.Mutex
	var held *Message
	n := 0
	c, _ := newTestConn(t, func(k *fakeKernel, m *Message) [][]byte {
		mu.Lock()
		defer mu.Unlock()
		n++
		if n == 1 {
			held = m // answer later
			return nil
		}
		sid, cid := sidcid(m)
		return [][]byte{reply(held, 5, 111), reply(m, sid, cid)}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := c.CreateConn(ctx, 5, 111)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)

	res, err := c.CreateConn(context.Background(), 5, 222)
	require.NoError(t, err)
	assert.Equal(t, ConnResult{SID: 5, CID: 222}, res, "the late reply to the abandoned request is skipped")
}

func TestConnSerializesRequests(t *testing.T) {
	c, k := newTestConn(t, kernelLike)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			res, err := c.CreateConn(context.Background(), 5, uint32(i))
			assert.NoError(t, err)
			assert.Equal(t, uint32(i), res.CID)
		}(i)
	}
	wg.Wait()
	assert.Len(t, k.requests(), 20)
}

func TestConnClose(t *testing.T) {
	before := runtime.NumGoroutine()
	c, _ := newTestConn(t, func(*fakeKernel, *Message) [][]byte { return nil }) // never answers
	c.Adopt(1)
	errs := make(chan error, 2)
	go func() {
		_, err := c.CreateSession(context.Background(), CreateSession{})
		errs <- err
	}()
	go func() {
		_, err := c.RecvPDU(context.Background(), 1, 0)
		errs <- err
	}()
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, c.Close())
	for i := 0; i < 2; i++ {
		select {
		case err := <-errs:
			assert.ErrorIs(t, err, ErrClosed)
		case <-time.After(5 * time.Second):
			t.Fatal("waiter not released by Close")
		}
	}
	_, ok := <-c.Events()
	assert.False(t, ok, "Events is closed")
	assert.NoError(t, c.Close(), "second Close is a no-op")
	_, err := c.CreateSession(context.Background(), CreateSession{})
	assert.ErrorIs(t, err, ErrClosed)
	_, err = c.RecvPDU(context.Background(), 1, 0)
	assert.ErrorIs(t, err, ErrClosed)
	// Only the fake kernel's goroutine (stopped in Cleanup) may remain.
	assert.Eventually(t, func() bool { return runtime.NumGoroutine() <= before+1 }, 5*time.Second, 10*time.Millisecond)
}

func TestMapSendErr(t *testing.T) {
	assert.ErrorIs(t, mapSendErr(UEventCreateSession, unix.EPERM), ErrPermission)
	assert.Contains(t, mapSendErr(UEventCreateSession, unix.EPERM).Error(), "need CAP_SYS_ADMIN")
	assert.ErrorIs(t, mapSendErr(UEventCreateSession, unix.ECONNREFUSED), ErrNetNamespace)
	assert.ErrorIs(t, mapSendErr(UEventCreateSession, unix.EIO), unix.EIO)
}

// TestDialOnThisHost: the build host's kernel has no scsi_transport_iscsi;
// Dial must say so clearly. On a kernel with it, Dial either works or names
// the missing iscsi_tcp module.
func TestDialOnThisHost(t *testing.T) {
	c, err := Dial()
	if err == nil {
		defer c.Close()
		assert.NotZero(t, c.TransportHandle())
		return
	}
	switch {
	case errors.Is(err, ErrKernelUnsupported):
		assert.Contains(t, err.Error(), "scsi_transport_iscsi")
		assert.ErrorIs(t, err, unix.EPROTONOSUPPORT)
		assert.NotErrorIs(t, err, ErrTransportNotLoaded)
	case errors.Is(err, ErrTransportNotLoaded):
		assert.Contains(t, err.Error(), "modprobe iscsi_tcp")
	default:
		t.Fatalf("Dial: unclear error %v", err)
	}
}

func TestTransportHandle(t *testing.T) {
	root := t.TempDir()
	_, err := transportHandle(root, "tcp")
	var tn *TransportNotLoadedError
	require.ErrorAs(t, err, &tn)
	assert.ErrorIs(t, err, ErrTransportNotLoaded)
	assert.Contains(t, err.Error(), "load kernel module iscsi_tcp (modprobe iscsi_tcp)")

	dir := filepath.Join(root, "class", "iscsi_transport", "tcp")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "handle"), []byte("18446612682093510784\n"), 0o644))
	h, err := transportHandle(root, "tcp")
	require.NoError(t, err)
	assert.Equal(t, uint64(18446612682093510784), h)

	require.NoError(t, os.WriteFile(filepath.Join(dir, "handle"), []byte("zz\n"), 0o644))
	_, err = transportHandle(root, "tcp")
	assert.Error(t, err)
	_, err = transportHandle(root, "../x")
	assert.Error(t, err)

	c, err := Dial(WithSysfsRoot(t.TempDir()))
	if err == nil { // only on a kernel with NETLINK_ISCSI
		c.Close()
		t.Fatal("Dial with an empty sysfs must fail")
	}
	assert.True(t, errors.Is(err, ErrKernelUnsupported) || errors.Is(err, ErrTransportNotLoaded), "%v", err)
}

func TestOtherListeners(t *testing.T) {
	p := filepath.Join(t.TempDir(), "netlink")
	require.NoError(t, os.WriteFile(p, []byte(
		"sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode\n"+
			"ffff8880038c2000 0   1          00000550 0        0        0     2        0        1000\n"+
			"ffff8880038c3000 8   777        00000001 0        0        0     2        0        1001\n"+
			"ffff8880038c4000 8   4242       00000001 0        0        0     2        0        1002\n"+
			"ffff8880038c5000 8   0          00000000 0        0        0     2        0        1003\n"+
			"ffff8880038c6000 8   888        00000002 0        0        0     2        0        1004\n"), 0o644))
	got, err := otherListeners(p, 4242)
	require.NoError(t, err)
	assert.Equal(t, []uint32{777}, got)
	_, err = otherListeners(filepath.Join(t.TempDir(), "missing"), 1)
	assert.Error(t, err)
}

// recordHandler keeps every slog record it is given.
type recordHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.records = append(h.records, r)
	h.mu.Unlock()
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordHandler) atLeast(l slog.Level) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.records {
		if r.Level >= l {
			out = append(out, r.Message)
		}
	}
	return out
}

// TestConnCloseLogsNoError: closing the descriptor under the parked receive
// goroutine is a normal stop, not a receive failure.
func TestConnCloseLogsNoError(t *testing.T) {
	for i := 0; i < 20; i++ { // the race between Close and the parked read varies
		h := &recordHandler{}
		c, _ := newTestConn(t, kernelLike, WithLogger(slog.New(h)))
		// A request and its reply first, so the receive goroutine has been
		// through the poller at least once and is parked in it again.
		_, err := c.CreateSession(context.Background(), CreateSession{})
		require.NoError(t, err)
		require.NoError(t, c.Close())
		assert.Empty(t, h.atLeast(slog.LevelWarn), "Close must not log warnings or errors")
	}
}
