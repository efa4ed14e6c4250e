package volume

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/internal/portal"
)

// Discoverer is implemented by an Attacher that can run a SendTargets
// discovery (KernelAttacher does). With one, Stage discovers on each of
// the volume's portals before logging in, as kubelet does, and logs in on
// the portals the target advertises too. Attachers without it (test fakes)
// are given the volume's portals only.
type Discoverer interface {
	// Discover opens a discovery session on spec.Portal (with spec.CHAP
	// when set), asks SendTargets=All and returns the portals (host:port)
	// that advertise spec.TargetName; none when the target is not listed.
	Discover(ctx context.Context, spec DiscoverySpec) ([]string, error)
}

// DiscoverySpec is one Discover request.
type DiscoverySpec struct {
	Portal        string
	TargetName    string
	InitiatorName string      // "" => the attacher's default
	CHAP          *iscsi.CHAP // discovery CHAP (chapAuthDiscovery); nil => none
}

// String never prints secrets.
func (s DiscoverySpec) String() string {
	return fmt.Sprintf("discovery of %s at %s (initiator %q, %v)", s.TargetName, s.Portal, s.InitiatorName, s.CHAP)
}

// ErrTargetNotAdvertised is a portal whose SendTargets answer does not list
// the volume's target (kubelet's iscsiadm then has no node record to log
// in with).
var ErrTargetNotAdvertised = errors.New("target not listed by SendTargets")

// discoverPortals returns the portals Stage logs in on: each of the
// volume's portals whose discovery lists the target, and every portal the
// target advertises there. A portal whose discovery fails (wrong discovery
// CHAP, unreachable, target not listed) is not logged in on and is
// returned in failed. Without a Discoverer the volume's portals are used
// as they are.
func (m *Manager) discoverPortals(ctx context.Context, n Volume) (portals []string, failed []PortalError) {
	all := n.AllPortals()
	d, ok := m.att.(Discoverer)
	if !ok {
		return all, nil
	}
	var chap *iscsi.CHAP
	if n.DiscoveryCHAPAuth {
		chap, _ = n.Secrets.discoveryCHAP() // validated by Normalize
	}
	seen := map[string]bool{}
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			portals = append(portals, p)
		}
	}
	for _, p := range all {
		adv, err := d.Discover(ctx, DiscoverySpec{Portal: p, TargetName: n.IQN, InitiatorName: n.InitiatorName, CHAP: chap})
		if err == nil && len(adv) == 0 {
			err = ErrTargetNotAdvertised
		}
		if err != nil {
			m.log.WarnContext(ctx, "discovery failed", "portal", p, "iqn", n.IQN, "err", err)
			failed = append(failed, PortalError{Portal: p, Err: fmt.Errorf("discovery: %w", err)})
			continue
		}
		add(p)
		for _, a := range adv {
			np, err := normalizePortal(a)
			if err != nil || !reachableFrom(np, p) {
				m.log.DebugContext(ctx, "ignoring advertised portal", "portal", a, "discoveredAt", p, "err", err)
				continue
			}
			add(np)
		}
	}
	return portals, failed
}

// reachableFrom says whether portal p, advertised by a target reached at
// via, can be reached from here: a loopback or unspecified address is the
// target's own view of itself (behind NAT, or bound to localhost) unless
// via is a loopback address too.
func reachableFrom(p, via string) bool {
	pa, err1 := portal.Parse(p)
	va, err2 := portal.Parse(via)
	if err1 != nil || err2 != nil {
		return false
	}
	ip := net.ParseIP(pa.Host)
	if ip == nil || !(ip.IsLoopback() || ip.IsUnspecified()) {
		return true
	}
	vip := net.ParseIP(va.Host)
	return vip != nil && vip.IsLoopback() && !ip.IsUnspecified()
}
