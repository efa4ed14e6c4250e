package volume

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// findMultipath returns /dev/dm-N when a device-mapper multipath map sits
// above any of devs (sysfs holders/dm-N with dm/uuid "mpath-..."), else "".
func findMultipath(sysfs string, devs []string) string {
	for _, d := range devs {
		name := filepath.Base(cleanPath(d))
		holders, err := os.ReadDir(filepath.Join(sysfs, "block", name, "holders"))
		if err != nil {
			continue
		}
		names := make([]string, 0, len(holders))
		for _, h := range holders {
			names = append(names, h.Name())
		}
		sort.Strings(names)
		for _, h := range names {
			if !strings.HasPrefix(h, "dm-") {
				continue
			}
			uuid, err := os.ReadFile(filepath.Join(sysfs, "block", h, "dm", "uuid"))
			if err == nil && strings.HasPrefix(strings.TrimSpace(string(uuid)), "mpath-") {
				return "/dev/" + h
			}
		}
	}
	return ""
}

// mapHolds says whether dm map dm (/dev/dm-N) sits on every one of devs
// (sysfs block/dm-N/slaves).
func mapHolds(sysfs, dm string, devs []string) bool {
	dir := filepath.Join(sysfs, "block", filepath.Base(cleanPath(dm)), "slaves")
	for _, d := range devs {
		if _, err := os.Stat(filepath.Join(dir, filepath.Base(cleanPath(d)))); err != nil {
			return false
		}
	}
	return true
}
