package login_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/internal/login"
)

// Example logs in to a target over TCP with mutual CHAP. (It needs a
// target listening on the address, so it has no Output line.)
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", "127.0.0.1:3260")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	t := login.NewConnTransport(conn)
	res, err := login.Login(ctx, t, login.Config{
		InitiatorName: "iqn.2024-01.example:host1",
		TargetName:    "iqn.2024-01.example:disk1",
		ISID:          [6]byte{0x80, 0, 0, 0, 0, 1},
		CHAP: &iscsi.CHAP{
			User: "host1", Secret: "a-secret-of-16-b",
			TargetUser: "disk1", TargetSecret: "another-secret-16",
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	t.SetDigests(res.Negotiated.HeaderDigest, res.Negotiated.DataDigest)
	t.SetMaxRecvDataSegmentLength(int(res.Negotiated.MaxRecvDataSegmentLength))
	fmt.Println("TSIH", res.TSIH, "MaxXmitDataSegmentLength", res.Negotiated.MaxXmitDataSegmentLength)
}

// ExampleTextExchange_SendTargets lists targets on a discovery session.
func ExampleTextExchange_SendTargets() {
	ctx := context.Background()
	conn, err := net.Dial("tcp", "127.0.0.1:3260")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	t := login.NewConnTransport(conn)
	res, err := login.Login(ctx, t, login.Config{InitiatorName: "iqn.2024-01.example:host1", ISID: [6]byte{0x80, 0, 0, 0, 0, 2}})
	if err != nil {
		fmt.Println(err)
		return
	}
	x := &login.TextExchange{ITT: 1, CmdSN: res.CmdSN, ExpStatSN: res.ExpStatSN,
		MaxXmitDataSegmentLength: int(res.Negotiated.MaxXmitDataSegmentLength)}
	targets, err := x.SendTargets(ctx, t, "All")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, tg := range targets {
		fmt.Println(tg.TargetName, tg.Portals)
	}
}

func ExampleParseSendTargets() {
	text := []byte("TargetName=iqn.2024-01.example:disk1\x00TargetAddress=[2001:db8::5]:3260,1\x00TargetAddress=192.0.2.5,1\x00")
	targets, err := login.ParseSendTargets(text)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, tg := range targets {
		for _, p := range tg.Portals {
			fmt.Println(tg.TargetName, p.Address, p.Port, p.Group)
		}
	}
	// Output:
	// iqn.2024-01.example:disk1 2001:db8::5 3260 1
	// iqn.2024-01.example:disk1 192.0.2.5 3260 1
}
