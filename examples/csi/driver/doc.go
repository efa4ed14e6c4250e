// Package driver is a CSI node plugin (CSI spec v1.13) on the kernel
// binding (package blockdev) and the mount layer (package blockdev/volume)
// of github.com/gosan/iscsi: Identity and Node services over gRPC, no
// iscsiadm, no iscsid.
//
// NodeStageVolume logs in (CHAP from the request's secrets), formats a
// blank LUN, mounts it and bind-mounts it at kubelet's staging path
// (volume.Manager.StageAt); NodeUnstageVolume finds what to undo from the
// volume id and the staging path alone. The CHAP credentials a volume was
// staged with are kept in a 0600 file on tmpfs (Config.RunDir, under /run)
// until it is unstaged, so a restarted plugin can still log a CHAP session
// in again: the process runs blockdev.Kernel.Supervise for its whole life
// and adopts the sessions an earlier instance left.
//
// Every log line of a volume call carries the volume id; secrets are never
// logged, stored outside RunDir, or put in an error.
package driver
