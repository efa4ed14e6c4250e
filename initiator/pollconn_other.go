//go:build !linux

package initiator

import "net"

// takeSocket keeps the connection in Go's network poller on this OS (see
// pollconn_linux.go).
func takeSocket(nc net.Conn) (net.Conn, bool) { return nc, false }
