//go:build linux

package tgtd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// errNetnsExists: the namespace name (derived from the control number) is taken.
var errNetnsExists = errors.New("network namespace exists")

// netns is a namespace "gosan-tgtd-N" with a veth pair gth<N> (host side,
// 10.200.a.b+1/30) and gtn<N> (namespace side, 10.200.a.b+2/30).
type netns struct {
	ip       string // path of ip
	name     string
	hostVeth string
	nsVeth   string
	hostAddr string
	nsAddr   string
	subnet   string // the /30, "10.200.a.b/30"
}

// subnet30 maps a control number to a distinct /30 of 10.200.0.0/16.
func subnet30(ctrl int) (host, ns, subnet string) {
	idx := ((ctrl-ctrlBase)%ctrlSpan + ctrlSpan) % ctrlSpan
	a, b := idx>>6, (idx&63)*4
	return fmt.Sprintf("10.200.%d.%d", a, b+1), fmt.Sprintf("10.200.%d.%d", a, b+2),
		fmt.Sprintf("10.200.%d.%d/30", a, b)
}

func runIP(ctx context.Context, ip string, args ...string) error {
	cmd := exec.CommandContext(ctx, ip, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// reapStaleNetns removes namespaces of earlier harness runs that died
// without cleanup (SIGKILL, os.Exit): older than olderThan (a minute in
// use), with no live tgtd of that control number. Younger ones may belong to
// a server that another process is starting right now. only != 0 limits the
// sweep to that control number (tests).
func reapStaleNetns(ctx context.Context, ip string, olderThan time.Duration, only int) {
	ents, err := os.ReadDir("/var/run/netns")
	if err != nil {
		return
	}
	for _, e := range ents {
		v, ok := strings.CutPrefix(e.Name(), netnsPrefix)
		if !ok {
			continue
		}
		ctrl, err := strconv.Atoi(v)
		if err != nil || (only != 0 && ctrl != only) || len(Processes(ctrl)) > 0 {
			continue
		}
		fi, err := e.Info()
		if err != nil || time.Since(fi.ModTime()) < olderThan {
			continue
		}
		stale := &netns{ip: ip, name: e.Name(), hostVeth: fmt.Sprintf("gth%d", ctrl)}
		_, _, stale.subnet = subnet30(ctrl)
		_ = stale.remove(ctx)
	}
}

const netnsPrefix = "gosan-tgtd-"

func createNetns(ctx context.Context, ip string, ctrl int) (*netns, error) {
	reapStaleNetns(ctx, ip, time.Minute, 0)
	n := &netns{
		ip:       ip,
		name:     netnsPrefix + strconv.Itoa(ctrl),
		hostVeth: fmt.Sprintf("gth%d", ctrl),
		nsVeth:   fmt.Sprintf("gtn%d", ctrl),
	}
	n.hostAddr, n.nsAddr, n.subnet = subnet30(ctrl)
	if err := runIP(ctx, ip, "netns", "add", n.name); err != nil {
		if strings.Contains(err.Error(), "File exists") {
			return nil, fmt.Errorf("tgtd: %w: %w", errNetnsExists, err)
		}
		return nil, fmt.Errorf("tgtd: create netns: %w", err)
	}
	steps := [][]string{
		{"link", "add", n.hostVeth, "type", "veth", "peer", "name", n.nsVeth, "netns", n.name},
		{"addr", "add", n.hostAddr + "/30", "dev", n.hostVeth},
		{"link", "set", n.hostVeth, "up"},
		// While the veth is down its connected route is gone; without this
		// fallback the default route would carry the packets elsewhere (on
		// sandboxed machines an egress proxy even accepts them).
		{"route", "add", "unreachable", n.subnet, "metric", "4000"},
		{"-n", n.name, "addr", "add", n.nsAddr + "/30", "dev", n.nsVeth},
		{"-n", n.name, "link", "set", n.nsVeth, "up"},
		{"-n", n.name, "link", "set", "lo", "up"},
	}
	for _, st := range steps {
		if err := runIP(ctx, ip, st...); err != nil {
			_ = n.remove(context.WithoutCancel(ctx))
			if strings.Contains(err.Error(), "File exists") {
				return nil, fmt.Errorf("tgtd: %w: %w", errNetnsExists, err)
			}
			return nil, fmt.Errorf("tgtd: set up netns: %w", err)
		}
	}
	return n, nil
}

// remove deletes the veth pair and the namespace.
func (n *netns) remove(ctx context.Context) error {
	_ = runIP(ctx, n.ip, "link", "del", n.hostVeth) // also removes the peer
	_ = runIP(ctx, n.ip, "route", "del", "unreachable", n.subnet, "metric", "4000")
	if err := runIP(ctx, n.ip, "netns", "del", n.name); err != nil && !strings.Contains(err.Error(), "No such file") {
		return fmt.Errorf("tgtd: remove netns: %w", err)
	}
	return nil
}

var errNoNetns = errors.New("tgtd: server is not in a network namespace (use StartInNetns)")

// LinkDown sets the host side of the veth down: the portal becomes
// unreachable. New connections fail at once (EHOSTUNREACH, from a fallback
// "unreachable" route); established ones see their packets dropped and
// time out, as with a cut cable.
func (s *Server) LinkDown(ctx context.Context) error {
	if s.ns == nil {
		return errNoNetns
	}
	return runIP(ctx, s.ns.ip, "link", "set", s.ns.hostVeth, "down")
}

// LinkUp brings the host side of the veth back up.
func (s *Server) LinkUp(ctx context.Context) error {
	if s.ns == nil {
		return errNoNetns
	}
	return runIP(ctx, s.ns.ip, "link", "set", s.ns.hostVeth, "up")
}

// Netns returns the namespace name, the host-side veth and the host-side
// address, or empty strings on loopback.
func (s *Server) Netns() (name, hostVeth, hostAddr string) {
	if s.ns == nil {
		return "", "", ""
	}
	return s.ns.name, s.ns.hostVeth, s.ns.hostAddr
}
