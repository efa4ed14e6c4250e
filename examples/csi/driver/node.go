package driver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gosan/iscsi"
	"github.com/gosan/iscsi/blockdev/volume"
)

// Node returns the Node service.
func (d *Driver) Node() csi.NodeServer { return node{d: d} }

type node struct {
	csi.UnimplementedNodeServer
	d *Driver
}

func (n node) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	var caps []*csi.NodeServiceCapability
	for _, t := range []csi.NodeServiceCapability_RPC_Type{
		csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME,
		csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
		csi.NodeServiceCapability_RPC_EXPAND_VOLUME,
		csi.NodeServiceCapability_RPC_VOLUME_MOUNT_GROUP,
		csi.NodeServiceCapability_RPC_GET_VOLUME_HEALTH,
		csi.NodeServiceCapability_RPC_GET_STORAGE_HEALTH,
		csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	} {
		caps = append(caps, &csi.NodeServiceCapability{Type: &csi.NodeServiceCapability_Rpc{
			Rpc: &csi.NodeServiceCapability_RPC{Type: t}}})
	}
	return &csi.NodeGetCapabilitiesResponse{Capabilities: caps}, nil
}

func (n node) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: n.d.cfg.NodeID, MaxVolumesPerNode: n.d.cfg.MaxVolumesPerNode}, nil
}

// accessMode checks a capability and returns the volume mode, whether the
// access mode is read-only, and the mount settings.
func accessMode(c *csi.VolumeCapability) (mode volume.Mode, readOnly bool, err error) {
	if c == nil {
		return "", false, status.Error(codes.InvalidArgument, "volume_capability is required")
	}
	switch {
	case c.GetBlock() != nil:
		mode = volume.ModeBlock
	case c.GetMount() != nil:
		mode = volume.ModeFilesystem
	default:
		return "", false, status.Error(codes.InvalidArgument, "volume_capability: access_type must be mount or block")
	}
	if c.GetAccessMode() == nil {
		return "", false, status.Error(codes.InvalidArgument, "volume_capability: access_mode is required")
	}
	switch m := c.GetAccessMode().GetMode(); m {
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER:
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY, csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY:
		readOnly = true
	case csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER, csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER:
		if mode != volume.ModeBlock {
			return "", false, status.Errorf(codes.InvalidArgument,
				"volume_capability: access mode %s needs volumeMode Block: ext4 and xfs mounted on several nodes at once corrupt each other", m)
		}
	default:
		return "", false, status.Errorf(codes.InvalidArgument, "volume_capability: access mode %s is not supported", m)
	}
	return mode, readOnly, nil
}

// sessionCHAP builds the session credentials from the request's secrets
// (node.session.auth.*): user and password required, the mutual pair
// optional. Errors name keys only.
func sessionCHAP(s map[string]string) (*iscsi.CHAP, error) {
	c := &iscsi.CHAP{User: s[volume.SecretSessionUser], Secret: s[volume.SecretSessionPassword],
		TargetUser: s[volume.SecretSessionUserIn], TargetSecret: s[volume.SecretSessionPasswordIn], AllowShortSecrets: true}
	if c.User == "" || c.Secret == "" {
		return nil, fmt.Errorf("sessionCHAPAuth is set, so the node-stage secret must contain %s and %s",
			volume.SecretSessionUser, volume.SecretSessionPassword)
	}
	return c, nil
}

func (n node) NodeStageVolume(ctx context.Context, req *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	id, path := req.GetVolumeId(), req.GetStagingTargetPath()
	if err := checkIDPath(id, "staging_target_path", path, true); err != nil {
		return nil, err
	}
	mode, ro, err := accessMode(req.GetVolumeCapability())
	if err != nil {
		return nil, err
	}
	ctx, release, err := n.d.acquire(ctx, id)
	if err != nil {
		return nil, err
	}
	defer release()
	log := n.d.volLog("NodeStageVolume")

	v, err := parseVolumeContext(req.GetVolumeContext(), req.GetSecrets())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	v.VolumeMode = mode
	v.ReadOnly = ro
	if m := req.GetVolumeCapability().GetMount(); m != nil {
		if m.GetFsType() != "" {
			v.FSType = m.GetFsType()
		}
		v.MountOptions = m.GetMountFlags()
	}
	nv, err := v.Normalize()
	if err != nil {
		return nil, toStatus("stage", err)
	}
	if v.SessionCHAPAuth {
		chap, err := sessionCHAP(req.GetSecrets())
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		// Kept before the login, so that the Supervisor of a plugin that
		// restarts after the login can recover the session.
		if err := n.d.chap.put(id, nv.IQN, nv.AllPortals(), chap); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	res, err := n.d.cfg.Volumes.StageAt(ctx, id, path, v)
	if err != nil {
		serr := toStatus("stage", err)
		if rollBack(err, status.Code(serr)) {
			// kubelet treats a final error as "not staged" and will not
			// call NodeUnstageVolume: undo what the attempt left.
			if uerr := n.d.cfg.Volumes.UnstageAt(ctx, id, path); uerr != nil {
				log.WarnContext(ctx, "rolling back a failed stage", "err", uerr)
			}
		}
		if _, lerr := n.d.cfg.Volumes.LookupStaged(id); errors.Is(lerr, fs.ErrNotExist) {
			_ = n.d.chap.remove(id) // nothing staged: nothing to recover
		}
		return nil, serr
	}
	for _, f := range res.Failed {
		log.WarnContext(ctx, "portal not attached; the volume works on the other paths", "portal", f.Portal, "err", f.Err)
	}
	log.InfoContext(ctx, "staged", "targetName", nv.IQN, "lun", nv.LUN, "device", res.DevicePath,
		"stagingPath", path, "formatted", res.Formatted, "mode", string(mode))
	return &csi.NodeStageVolumeResponse{}, nil
}

func (n node) NodeUnstageVolume(ctx context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	id, path := req.GetVolumeId(), req.GetStagingTargetPath()
	if err := checkIDPath(id, "staging_target_path", path, false); err != nil {
		return nil, err
	}
	ctx, release, err := n.d.acquire(ctx, id)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := n.d.cfg.Volumes.UnstageAt(ctx, id, path); err != nil {
		return nil, toStatus("unstage", err)
	}
	if err := n.d.chap.remove(id); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	n.d.volLog("NodeUnstageVolume").InfoContext(ctx, "unstaged", "stagingPath", path)
	return &csi.NodeUnstageVolumeResponse{}, nil
}

func (n node) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	id, target, staging := req.GetVolumeId(), req.GetTargetPath(), req.GetStagingTargetPath()
	if err := checkIDPath(id, "target_path", target, true); err != nil {
		return nil, err
	}
	mode, ro, err := accessMode(req.GetVolumeCapability())
	if err != nil {
		return nil, err
	}
	if staging == "" {
		return nil, status.Error(codes.InvalidArgument, "staging_target_path is required (the plugin has STAGE_UNSTAGE_VOLUME)")
	}
	var o volume.PublishOptions
	o.ReadOnly = ro || req.GetReadonly()
	if g := req.GetVolumeCapability().GetMount().GetVolumeMountGroup(); g != "" {
		gid, err := strconv.ParseInt(g, 10, 64)
		if err != nil || gid < 0 {
			return nil, status.Errorf(codes.InvalidArgument, "volume_mount_group %q is not a numeric group id", g)
		}
		o.FSGroup = &gid
	}
	ctx, release, err := n.d.acquire(ctx, id)
	if err != nil {
		return nil, err
	}
	defer release()
	st, err := n.d.cfg.Volumes.LookupStaged(id)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, status.Errorf(codes.FailedPrecondition, "volume %q is not staged on this node; NodeStageVolume first", id)
	}
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if st.Volume.VolumeMode != mode {
		return nil, status.Errorf(codes.InvalidArgument, "volume %q is staged as %s, the capability asks for %s", id, st.Volume.VolumeMode, mode)
	}
	if req.GetVolumeCapability().GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER {
		others, err := publishedElsewhere(st, staging, target)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if len(others) > 0 {
			return nil, status.Errorf(codes.FailedPrecondition,
				"volume %q has access mode SINGLE_NODE_SINGLE_WRITER and is already published at %s", id, strings.Join(others, ", "))
		}
	}
	if err := n.d.cfg.Volumes.PublishAt(ctx, id, staging, target, o); err != nil {
		return nil, toStatus("publish", err)
	}
	n.d.volLog("NodePublishVolume").InfoContext(ctx, "published", "targetPath", target, "readOnly", o.ReadOnly)
	return &csi.NodePublishVolumeResponse{}, nil
}

func (n node) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	id, target := req.GetVolumeId(), req.GetTargetPath()
	if err := checkIDPath(id, "target_path", target, true); err != nil {
		return nil, err
	}
	ctx, release, err := n.d.acquire(ctx, id)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := n.d.cfg.Volumes.Unpublish(ctx, target); err != nil {
		return nil, toStatus("unpublish", err)
	}
	n.d.volLog("NodeUnpublishVolume").InfoContext(ctx, "unpublished", "targetPath", target)
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

// lookupAt returns the staging record of id and checks that path exists:
// NOT_FOUND otherwise (NodeGetVolumeStats, NodeExpandVolume).
func (n node) lookupAt(id, path string) (*volume.Staged, os.FileInfo, error) {
	if err := checkIDPath(id, "volume_path", path, false); err != nil {
		return nil, nil, err
	}
	st, err := n.d.cfg.Volumes.LookupStaged(id)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, status.Errorf(codes.NotFound, "volume %q is not staged on this node", id)
	}
	if err != nil {
		return nil, nil, status.Error(codes.Internal, err.Error())
	}
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, status.Errorf(codes.NotFound, "volume %q: %s does not exist", id, path)
	}
	if err != nil {
		return nil, nil, status.Error(codes.Internal, err.Error())
	}
	return st, fi, nil
}

// rollBack says whether a failed StageAt is undone: when the error is final
// for kubelet (it then considers the volume not staged; Unavailable,
// DeadlineExceeded, Canceled, Aborted and ResourceExhausted leave it
// "uncertain" and kubelet calls NodeUnstageVolume itself), and not a
// refusal that touched nothing (a conflict with what is staged, an
// invalid spec).
func rollBack(err error, code codes.Code) bool {
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted, codes.ResourceExhausted:
		return false
	}
	var ve *volume.ValidationError
	return !errors.Is(err, volume.ErrStagedElsewhere) && !errors.Is(err, volume.ErrIncompatible) && !errors.As(err, &ve)
}

// checkIDPath checks the volume id and a path argument every node call
// has: both present, the path absolute where the call creates it.
func checkIDPath(id, field, path string, absolute bool) error {
	switch {
	case id == "":
		return status.Error(codes.InvalidArgument, "volume_id is required")
	case path == "":
		return status.Error(codes.InvalidArgument, field+" is required")
	case absolute && !filepath.IsAbs(path):
		return status.Errorf(codes.InvalidArgument, "%s %q is not absolute", field, path)
	}
	return nil
}
