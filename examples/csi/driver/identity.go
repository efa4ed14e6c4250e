package driver

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Identity returns the Identity service.
func (d *Driver) Identity() csi.IdentityServer { return identity{d: d} }

type identity struct {
	csi.UnimplementedIdentityServer
	d *Driver
}

func (i identity) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: i.d.cfg.Name, VendorVersion: i.d.cfg.Version}, nil
}

// GetPluginCapabilities: no controller service (a node plugin); online
// expansion (NodeExpandVolume grows a mounted filesystem).
func (i identity) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{Capabilities: []*csi.PluginCapability{{
		Type: &csi.PluginCapability_VolumeExpansion_{VolumeExpansion: &csi.PluginCapability_VolumeExpansion{
			Type: csi.PluginCapability_VolumeExpansion_ONLINE}},
	}}}, nil
}

// Probe is ready when Config.Ready passes; otherwise FAILED_PRECONDITION
// with what to fix on the node.
func (i identity) Probe(ctx context.Context, _ *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	if i.d.cfg.Ready != nil {
		if err := i.d.cfg.Ready(ctx); err != nil {
			return nil, status.Error(codes.FailedPrecondition, "not ready: "+err.Error())
		}
	}
	return &csi.ProbeResponse{Ready: wrapperspb.Bool(true)}, nil
}
