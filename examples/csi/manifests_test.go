package main

import (
	"bufio"
	"bytes"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/gosan/iscsi/blockdev/volume"
	"github.com/gosan/iscsi/examples/csi/driver"
)

// decodeStrict decodes every document of a manifest file with Kubernetes'
// own types: an unknown or duplicate field is an error.
func decodeStrict(t *testing.T, file string) []runtime.Object {
	t.Helper()
	scheme := runtime.NewScheme()
	require.NoError(t, appsv1.AddToScheme(scheme))
	require.NoError(t, corev1.AddToScheme(scheme))
	require.NoError(t, storagev1.AddToScheme(scheme))
	ser := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme, json.SerializerOptions{Yaml: true, Strict: true})
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	r := utilyaml.NewYAMLReader(bufioReader(b))
	var out []runtime.Object
	for {
		doc, err := r.Read()
		if err != nil {
			break
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, _, err := ser.Decode(doc, nil, nil)
		require.NoError(t, err, "%s", file)
		out = append(out, obj)
	}
	require.NotEmpty(t, out, file)
	return out
}

func stripComments(b []byte) []byte {
	var out []byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l...)
			out = append(out, '\n')
		}
	}
	return out
}

// TestStrictDecodingCatchesTypos: the decoder used below does refuse an
// unknown field (so the manifests' passing means something).
func TestStrictDecodingCatchesTypos(t *testing.T) {
	scheme := runtime.NewScheme()
	require.NoError(t, storagev1.AddToScheme(scheme))
	ser := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme, json.SerializerOptions{Yaml: true, Strict: true})
	_, _, err := ser.Decode([]byte("apiVersion: storage.k8s.io/v1\nkind: CSIDriver\nmetadata: {name: x}\nspec: {attachRequird: false}\n"), nil, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "attachRequird")
}

func TestManifests(t *testing.T) {
	defaults, err := parseFlags(nil)
	require.NoError(t, err)

	objs := decodeStrict(t, "deploy/csidriver.yaml")
	require.Len(t, objs, 1)
	cd := objs[0].(*storagev1.CSIDriver)
	assert.Equal(t, driver.DefaultName, cd.Name)
	require.NotNil(t, cd.Spec.AttachRequired)
	assert.False(t, *cd.Spec.AttachRequired, "the plugin has no controller publish")
	require.NotNil(t, cd.Spec.FSGroupPolicy)
	assert.Equal(t, storagev1.FileFSGroupPolicy, *cd.Spec.FSGroupPolicy, "fsGroup reaches the plugin (VOLUME_MOUNT_GROUP)")

	objs = decodeStrict(t, "deploy/daemonset.yaml")
	require.Len(t, objs, 1)
	ds := objs[0].(*appsv1.DaemonSet)
	spec := ds.Spec.Template.Spec
	assert.True(t, spec.HostNetwork, "sessions are in the host's network namespace")
	hostPaths := map[string]string{}
	for _, v := range spec.Volumes {
		require.NotNil(t, v.HostPath, v.Name)
		hostPaths[v.Name] = v.HostPath.Path
	}
	containers := map[string]corev1.Container{}
	for _, c := range spec.Containers {
		containers[c.Name] = c
	}
	plugin, ok := containers["plugin"]
	require.True(t, ok)
	require.NotNil(t, plugin.SecurityContext)
	assert.True(t, *plugin.SecurityContext.Privileged)
	o, err := parseFlags(plugin.Args)
	require.NoError(t, err, "the DaemonSet's arguments are the plugin's flags")
	assert.Equal(t, defaults.endpoint, o.endpoint)
	assert.Equal(t, defaults.stateDir, o.stateDir)
	assert.Equal(t, defaults.runDir, o.runDir)
	assert.Equal(t, driver.DefaultName, o.name)
	assert.Equal(t, "$(NODE_NAME)", o.nodeID)

	mounts := map[string]corev1.VolumeMount{}
	for _, m := range plugin.VolumeMounts {
		mounts[m.MountPath] = m
	}
	bidi := func(p string) {
		m, ok := mounts[p]
		require.True(t, ok, "plugin mounts %s", p)
		require.NotNil(t, m.MountPropagation, p)
		assert.Equal(t, corev1.MountPropagationBidirectional, *m.MountPropagation, p)
		assert.Equal(t, p, hostPaths[m.Name], "%s is the same path on the host", p)
	}
	bidi("/var/lib/kubelet")
	bidi(o.stateDir)
	run, ok := mounts[o.runDir]
	require.True(t, ok, "the run dir is mounted")
	assert.True(t, strings.HasPrefix(hostPaths[run.Name], "/run/"), "credentials stay on the host's tmpfs /run")
	for _, p := range []string{"/dev", "/sys"} {
		m, ok := mounts[p]
		require.True(t, ok, p)
		assert.Equal(t, p, hostPaths[m.Name])
	}
	sockDir := path.Dir(strings.TrimPrefix(o.endpoint, "unix://"))
	sock, ok := mounts[sockDir]
	require.True(t, ok, "the endpoint's directory %s is a mount", sockDir)
	assert.Equal(t, "/var/lib/kubelet/plugins/"+driver.DefaultName, hostPaths[sock.Name])

	reg, ok := containers["node-driver-registrar"]
	require.True(t, ok)
	assert.Contains(t, reg.Args, "--csi-address="+strings.TrimPrefix(o.endpoint, "unix://"))
	assert.Contains(t, reg.Args, "--kubelet-registration-path="+hostPaths[sock.Name]+"/"+path.Base(o.endpoint))
	regMounts := map[string]string{}
	for _, m := range reg.VolumeMounts {
		regMounts[m.MountPath] = hostPaths[m.Name]
	}
	assert.Equal(t, "/var/lib/kubelet/plugins_registry", regMounts["/registration"])
	assert.Equal(t, hostPaths[sock.Name], regMounts[sockDir])

	objs = decodeStrict(t, "deploy/static-pv.yaml")
	require.Len(t, objs, 3)
	secret := objs[0].(*corev1.Secret)
	pv := objs[1].(*corev1.PersistentVolume)
	pvc := objs[2].(*corev1.PersistentVolumeClaim)
	require.NotNil(t, pv.Spec.CSI)
	assert.Equal(t, driver.DefaultName, pv.Spec.CSI.Driver)
	for _, k := range []string{"targetPortal", "iqn", "lun"} {
		assert.NotEmpty(t, pv.Spec.CSI.VolumeAttributes[k], k)
	}
	require.NotNil(t, pv.Spec.CSI.NodeStageSecretRef)
	assert.Equal(t, secret.Name, pv.Spec.CSI.NodeStageSecretRef.Name)
	assert.Equal(t, secret.Namespace, pv.Spec.CSI.NodeStageSecretRef.Namespace)
	assert.ElementsMatch(t, []string{volume.SecretSessionUser, volume.SecretSessionPassword}, keys(secret.StringData),
		"only the keys one-way session CHAP needs")
	assert.Equal(t, pv.Name, pvc.Spec.VolumeName)

	df, err := os.ReadFile(filepath.Join("Dockerfile"))
	require.NoError(t, err)
	for _, pkg := range []string{"e2fsprogs", "xfsprogs", "util-linux", "CGO_ENABLED=0"} {
		assert.Contains(t, string(df), pkg, "the image carries mkfs, blkid, fsck and resize tools")
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
