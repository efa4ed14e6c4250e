//go:build linux

package tgtd

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// DropConnections drops every connection of target tid (fault injection,
// like `tgtadm --mode conn --op delete` for each) and returns how many.
func (s *Server) DropConnections(ctx context.Context, tid int) (int, error) {
	sess, err := s.Sessions(ctx, tid)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, ss := range sess {
		for _, c := range ss.Connections {
			if err := s.DeleteConnection(ctx, tid, ss.SID, c.CID); err == nil {
				n++
			}
		}
	}
	return n, nil
}

// ServeDrops listens on a free loopback port and, for each line "drop <tid>"
// a client sends, drops every connection of target tid and answers "ok <n>"
// (or "error ..."). Tests running inside a qemu guest use it to cut their own
// connection at a moment they choose; the guest reaches it at
// 10.0.2.2:<port>. The listener closes at test cleanup.
func (s *Server) ServeDrops(tb testing.TB) (port int) {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("tgtd: drop service: %v", err)
	}
	tb.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go s.serveDrop(tb, c)
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

func (s *Server) serveDrop(tb testing.TB, c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	line, err := bufio.NewReader(io.LimitReader(c, 64)).ReadString('\n')
	var tid int
	if err == nil {
		_, err = fmt.Sscanf(line, "drop %d", &tid)
	}
	if err != nil {
		fmt.Fprintf(c, "error %v\n", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := s.DropConnections(ctx, tid)
	if err != nil {
		fmt.Fprintf(c, "error %v\n", err)
		return
	}
	tb.Logf("tgtd: dropped %d connection(s) of tid %d on request", n, tid)
	fmt.Fprintf(c, "ok %d\n", n)
}
