package driver

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/gosan/iscsi/blockdev/volume"
)

// Volume context keys. Both spellings in use today are accepted:
// kubernetes-csi/csi-driver-iscsi's and the in-tree iscsi volume's.
const (
	ctxTargetPortal   = "targetPortal"
	ctxPortals        = "portals" // JSON array or comma list
	ctxIQN            = "iqn"
	ctxLUN            = "lun"
	ctxIface          = "iscsiInterface"
	ctxInitiatorName  = "initiatorName"
	ctxFSType         = "fsType"
	ctxDiscoveryCHAP  = "discoveryCHAPAuth" // csi-driver-iscsi
	ctxSessionCHAP    = "sessionCHAPAuth"   // csi-driver-iscsi
	ctxDiscoveryCHAP2 = "chapAuthDiscovery" // in-tree
	ctxSessionCHAP2   = "chapAuthSession"   // in-tree
)

// parseVolumeContext maps a volume context and the request's secrets onto
// a volume.Volume (mode, fsType, mount options and read-only come from the
// capability, set by the caller). Errors name keys, never values of
// secrets.
func parseVolumeContext(vc map[string]string, secrets map[string]string) (volume.Volume, error) {
	var v volume.Volume
	var probs []string
	v.TargetPortal = strings.TrimSpace(vc[ctxTargetPortal])
	if v.TargetPortal == "" {
		probs = append(probs, ctxTargetPortal+" is required")
	}
	if p := strings.TrimSpace(vc[ctxPortals]); p != "" {
		ps, err := parsePortals(p)
		if err != nil {
			probs = append(probs, err.Error())
		}
		v.Portals = ps
	}
	v.IQN = strings.TrimSpace(vc[ctxIQN])
	if v.IQN == "" {
		probs = append(probs, ctxIQN+" is required")
	}
	if l, ok := vc[ctxLUN]; !ok || strings.TrimSpace(l) == "" {
		probs = append(probs, ctxLUN+" is required")
	} else if n, err := strconv.ParseInt(strings.TrimSpace(l), 10, 32); err != nil {
		probs = append(probs, fmt.Sprintf("%s %q is not a number", ctxLUN, l))
	} else {
		v.LUN = int32(n)
	}
	v.ISCSIInterface = vc[ctxIface]
	v.InitiatorName = vc[ctxInitiatorName]
	v.FSType = vc[ctxFSType]
	var err error
	if v.DiscoveryCHAPAuth, err = boolKey(vc, ctxDiscoveryCHAP, ctxDiscoveryCHAP2); err != nil {
		probs = append(probs, err.Error())
	}
	if v.SessionCHAPAuth, err = boolKey(vc, ctxSessionCHAP, ctxSessionCHAP2); err != nil {
		probs = append(probs, err.Error())
	}
	if len(secrets) > 0 {
		v.Secrets = volume.Secrets(secrets)
	}
	if len(probs) > 0 {
		return volume.Volume{}, fmt.Errorf("volume_context: %s", strings.Join(probs, "; "))
	}
	return v, nil
}

// parsePortals reads `["a:3260","b"]` or `a:3260,b`.
func parsePortals(s string) ([]string, error) {
	if strings.HasPrefix(s, "[") {
		var ps []string
		if err := json.Unmarshal([]byte(s), &ps); err != nil {
			return nil, fmt.Errorf("%s is neither a JSON array of strings nor a comma list: %v", ctxPortals, err)
		}
		return ps, nil
	}
	var ps []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			ps = append(ps, p)
		}
	}
	return ps, nil
}

// boolKey reads a boolean under either of two keys; both set must agree.
func boolKey(vc map[string]string, a, b string) (bool, error) {
	var out bool
	var seen string
	for _, k := range []string{a, b} {
		s, ok := vc[k]
		if !ok || strings.TrimSpace(s) == "" {
			continue
		}
		v, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return false, fmt.Errorf("%s %q is not true or false", k, s)
		}
		if seen != "" && v != out {
			return false, fmt.Errorf("%s and %s disagree", seen, k)
		}
		out, seen = v, k
	}
	return out, nil
}
