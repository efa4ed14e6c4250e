//go:build !linux

package blockdev

func isPermission(err error) bool    { return false }
func isModuleMissing(err error) bool { return false }
