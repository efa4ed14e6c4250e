//go:build linux

package iscsinl_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gosan/iscsi/internal/iscsinl"
)

// Creating a kernel session and connection; login then runs over
// c.PDUTransport(sid, cid) after BindConn.
func ExampleDial() {
	c, err := iscsinl.Dial()
	switch {
	case errors.Is(err, iscsinl.ErrKernelUnsupported), errors.Is(err, iscsinl.ErrTransportNotLoaded):
		fmt.Println("no kernel iSCSI here:", err)
		return
	case err != nil:
		fmt.Println(err)
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.CreateSession(ctx, iscsinl.CreateSession{InitialCmdSN: 1, CmdsMax: 128, QueueDepth: 32})
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := c.CreateConn(ctx, s.SID, 0); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("session %d on host%d\n", s.SID, s.HostNo)
}
