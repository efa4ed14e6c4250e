package initiator

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// pollConnPair returns a pollConn and the other end of its TCP connection.
func pollConnPair(t *testing.T) (*pollConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(acc)
			return
		}
		acc <- c
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	peer, ok := <-acc
	require.True(t, ok)
	laddr, raddr := nc.LocalAddr(), nc.RemoteAddr()
	c, ok := takeSocket(nc)
	require.True(t, ok)
	pc := c.(*pollConn)
	require.Equal(t, laddr, pc.LocalAddr())
	require.Equal(t, raddr, pc.RemoteAddr())
	t.Cleanup(func() { pc.Close(); peer.Close() })
	return pc, peer
}

func TestPollConnReadWrite(t *testing.T) {
	pc, peer := pollConnPair(t)
	// Many small pieces (more than IOV_MAX) and large ones (more than the
	// socket buffers hold, so writev is partial and waits for POLLOUT).
	var bufs [][]byte
	var want []byte
	for i := range 3000 {
		b := []byte{byte(i), byte(i >> 8), 0xa5}
		bufs = append(bufs, b)
		want = append(want, b...)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	bufs = append(bufs, big, []byte("end"))
	want = append(append(want, big...), "end"...)
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(peer, int64(len(want))))
		got <- b
	}()
	n, err := pc.WriteBuffers(bufs)
	require.NoError(t, err)
	require.EqualValues(t, len(want), n)
	require.True(t, bytes.Equal(want, <-got), "peer received other bytes")
	for _, v := range pc.iov[:cap(pc.iov)] {
		require.Nil(t, v.Base, "the writer still references a buffer")
	}

	// Reading: what the peer sends, then EOF when it closes.
	go func() {
		_, _ = peer.Write(big)
		peer.Close()
	}()
	rb, err := io.ReadAll(pc)
	require.NoError(t, err)
	require.True(t, bytes.Equal(big, rb))
	_, err = pc.Read(make([]byte, 10))
	require.ErrorIs(t, err, io.EOF)
}

func TestPollConnDeadlines(t *testing.T) {
	pc, peer := pollConnPair(t)
	buf := make([]byte, 16)

	// A deadline set while a read waits interrupts it.
	errc := make(chan error, 1)
	go func() { _, err := pc.Read(buf); errc <- err }()
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, pc.SetReadDeadline(time.Unix(1, 0)))
	select {
	case err := <-errc:
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	case <-time.After(5 * time.Second):
		t.Fatal("read not interrupted by a past deadline")
	}

	// A future deadline ends the wait when it passes; cleared, reads work.
	start := time.Now()
	require.NoError(t, pc.SetReadDeadline(start.Add(100*time.Millisecond)))
	_, err := pc.Read(buf)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond)
	require.NoError(t, pc.SetReadDeadline(time.Time{}))
	_, err = peer.Write([]byte("x"))
	require.NoError(t, err)
	n, err := pc.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "x", string(buf[:n]))

	// A writer blocked on a peer that does not read: its deadline ends it.
	require.NoError(t, pc.SetWriteDeadline(time.Now().Add(200*time.Millisecond)))
	_, err = pc.Write(make([]byte, 64<<20))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
}

func TestPollConnCloseInterrupts(t *testing.T) {
	pc, _ := pollConnPair(t)
	rerr := make(chan error, 1)
	werr := make(chan error, 1)
	go func() { _, err := pc.Read(make([]byte, 16)); rerr <- err }()
	go func() { _, err := pc.Write(make([]byte, 64<<20)); werr <- err }()
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, pc.Close())
	for _, ch := range []chan error{rerr, werr} {
		select {
		case err := <-ch:
			require.True(t, errors.Is(err, net.ErrClosed), "got %v", err)
		case <-time.After(5 * time.Second):
			t.Fatal("a call blocked in the socket was not interrupted by Close")
		}
	}
	require.ErrorIs(t, pc.Close(), net.ErrClosed)
	_, err := pc.Read(make([]byte, 1))
	require.ErrorIs(t, err, net.ErrClosed)
	require.Equal(t, int64(closedBit), pc.state.Load(), "calls still registered")
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

// Sessions use pollConns in full feature phase; dialling, using and
// closing them (and losing a connection to recovery) leaves no descriptor
// open: not the socket, not the eventfds.
func TestPollConnSessionsLeaveNoDescriptors(t *testing.T) {
	srv, s, l, done := recoveryTestServer(t)
	_, ok := s.conn.Load().nc.(*pollConn)
	require.True(t, ok, "full feature phase is not on a pollConn")
	buf := make([]byte, 4096)
	_, err := l.ReadAt(buf, 0)
	require.NoError(t, err)
	done()

	before := openFDs(t)
	for range 3 {
		srv, s, l, done = recoveryTestServer(t)
		_, err = l.WriteAt(buf, 4096)
		require.NoError(t, err)
		srv.DropConnections() // recovery closes this pollConn and makes another
		_, err = l.ReadAt(buf, 4096)
		require.NoError(t, err)
		done()
	}
	deadline := time.Now().Add(5 * time.Second)
	for openFDs(t) > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	require.Equal(t, before, openFDs(t), "descriptors left open")
}
