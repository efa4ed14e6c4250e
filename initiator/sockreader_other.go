//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package initiator

import "net"

// rawReader is the poll(2) fast path of sockReader; this OS does not get
// one, so every read parks in Go's poller.
type rawReader struct{}

func (*rawReader) init(net.Conn) {}

func (*rawReader) ok() bool { return false }

func (*rawReader) read(nc net.Conn, p []byte) (int, error) { return nc.Read(p) }
