package initiator

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/gosan/iscsi/internal/login"
	iportal "github.com/gosan/iscsi/internal/portal"
	"github.com/gosan/iscsi/pdu"
)

// Target is one SendTargets entry: a target name and the portals it
// answers on.
type Target struct {
	TargetName string
	Portals    []Portal
}

// Portal is one network portal of a target.
type Portal struct {
	Address  string // host name or IP address; IPv6 without brackets
	Port     int
	GroupTag uint16 // target portal group tag
}

// String returns "host:port", with IPv6 addresses in brackets: the form
// Dial accepts.
func (p Portal) String() string { return net.JoinHostPort(p.Address, strconv.Itoa(p.Port)) }

// Discover opens a discovery session on portal, asks SendTargets=All and
// logs out. Options that apply: initiator name, ISID, CHAP, digests,
// timeouts, logger, dialer. A target that lists no address is reachable on
// portal itself; Discover fills that in.
func Discover(ctx context.Context, portal string, opts ...Option) ([]Target, error) {
	cfg := buildConfig(opts)
	s := &Session{cfg: cfg, log: cfg.logger, isid: cfg.isid}
	lctx, cancel := context.WithTimeout(ctx, cfg.loginTimeout)
	defer cancel()
	addr := normalizePortal(portal)
	nc, err := cfg.dialer.DialContext(lctx, "tcp", addr)
	if err != nil {
		return nil, &ConnectionError{Op: "dial " + addr, Err: err}
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	t := newTransport(nc, 64<<10)
	res, err := login.Login(lctx, t, login.Config{
		InitiatorName:  cfg.initiatorName,
		InitiatorAlias: cfg.initiatorAlias,
		ISID:           s.isid,
		InitialCmdSN:   1,
		CHAP:           cfg.chap,
		Params:         loginParams(&cfg),
		Logger:         s.log,
	})
	if err != nil {
		return nil, fmt.Errorf("iscsi: discovery login at %s: %w", addr, err)
	}
	neg := res.Negotiated
	t.r.SetDigests(neg.HeaderDigest, neg.DataDigest)
	t.w.SetDigests(neg.HeaderDigest, neg.DataDigest)
	t.r.SetMaxDataSegmentLength(int(max(neg.MaxRecvDataSegmentLength, 8192)))
	x := &login.TextExchange{
		ITT:                      1,
		CmdSN:                    res.CmdSN,
		ExpStatSN:                res.StatSN + 1,
		ExpCmdSN:                 res.ExpCmdSN,
		MaxCmdSN:                 res.MaxCmdSN,
		MaxXmitDataSegmentLength: int(neg.MaxXmitDataSegmentLength),
	}
	found, err := x.SendTargets(lctx, t, "All")
	if err != nil {
		return nil, fmt.Errorf("iscsi: SendTargets at %s: %w", addr, err)
	}
	host, port := addr, iportal.DefaultPort
	if pa, err := iportal.Parse(addr); err == nil {
		host, port = pa.Host, pa.Port
	}
	out := make([]Target, 0, len(found))
	for _, f := range found {
		tg := Target{TargetName: f.TargetName}
		for _, p := range f.Portals {
			tg.Portals = append(tg.Portals, Portal{Address: p.Address, Port: p.Port, GroupTag: p.Group})
		}
		if len(tg.Portals) == 0 {
			tg.Portals = []Portal{{Address: host, Port: port, GroupTag: neg.TargetPortalGroupTag}}
		}
		out = append(out, tg)
	}
	// Log out politely; the answer does not change the result.
	logout := pdu.LogoutRequest{Immediate: true, Reason: pdu.LogoutCloseSession, ITT: 2, CmdSN: x.CmdSN, ExpStatSN: x.ExpStatSN}
	octx, ocancel := context.WithTimeout(ctx, cfg.logoutTimeout)
	defer ocancel()
	_ = nc.SetDeadline(deadlineOf(octx))
	if err := t.w.WriteMessage(&logout); err == nil {
		var resp pdu.LogoutResponse
		for range 4 { // skip NOP-Ins / async messages before the response
			b, err := t.r.ReadPDU(nil)
			if err != nil || resp.Decode(b) == nil {
				break
			}
		}
	}
	return out, nil
}

func deadlineOf(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}
