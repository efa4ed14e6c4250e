package volume

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStageAt: the staging-path lifecycle a CSI node plugin drives: stage
// at a caller-given path (twice), conflicts, publish, unstage refused while
// published, unstage by volume id and staging path, nothing left.
func TestStageAt(t *testing.T) {
	e := newEnv(t, smallDisk)
	ctx := e.ctx
	v := testVolume(0, "ext4")
	staging := filepath.Join(t.TempDir(), "globalmount")
	target := filepath.Join(t.TempDir(), "pod", "mount")

	res, err := e.m.StageAt(ctx, "vol-1", staging, v)
	require.NoError(t, err)
	assert.True(t, res.Formatted)
	res2, err := e.m.StageAt(ctx, "vol-1", staging, v)
	require.NoError(t, err, "a repeat is OK")
	assert.False(t, res2.Formatted)
	assert.Equal(t, 1, mountCount(t, staging), "the repeat does not stack a second bind")

	st, err := e.m.LookupStaged("vol-1")
	require.NoError(t, err)
	assert.Equal(t, staging, st.StagingPath)
	assert.Equal(t, res.GlobalPath, st.GlobalPath)
	assert.Equal(t, res.DevicePath, st.DevicePath)

	_, err = e.m.StageAt(ctx, "vol-2", staging, testVolume(1, "ext4"))
	assert.ErrorIs(t, err, ErrStagedElsewhere, "another volume at the same staging path")
	_, err = e.m.StageAt(ctx, "vol-2", filepath.Join(t.TempDir(), "g2"), v)
	assert.ErrorIs(t, err, ErrStagedElsewhere, "the same LUN for another volume id")
	ro := v
	ro.ReadOnly = true
	_, err = e.m.StageAt(ctx, "vol-1", staging, ro)
	assert.ErrorIs(t, err, ErrIncompatible)

	require.NoError(t, os.WriteFile(filepath.Join(staging, "data"), []byte("hello"), 0o600))
	require.NoError(t, e.m.PublishAt(ctx, "vol-1", staging, target, PublishOptions{}))
	b, err := os.ReadFile(filepath.Join(target, "data"))
	require.NoError(t, err)
	assert.Equal(t, "hello", string(b))
	assert.ErrorIs(t, e.m.PublishAt(ctx, "vol-9", staging, target, PublishOptions{}), ErrNotStaged)

	err = e.m.UnstageAt(ctx, "vol-1", staging)
	require.ErrorIs(t, err, ErrInUse, "still published")
	assert.Equal(t, 1, mountCount(t, staging), "a refused unstage leaves the staging mount")
	assert.ErrorIs(t, e.m.UnstageAt(ctx, "vol-1", "/elsewhere"), ErrStagedElsewhere)

	require.NoError(t, e.m.Unpublish(ctx, target))
	require.NoError(t, e.m.UnstageAt(ctx, "vol-1", staging))
	require.NoError(t, e.m.UnstageAt(ctx, "vol-1", staging), "a repeat is OK")
	_, err = e.m.LookupStaged("vol-1")
	assert.True(t, errors.Is(err, os.ErrNotExist))
	assert.Zero(t, mountCount(t, staging))
	e.assertClean(t, res.GlobalPath)
}

// TestStageAtKeepsNoSecret: neither the staging record nor the attach
// record holds CHAP credentials.
func TestStageAtKeepsNoSecret(t *testing.T) {
	e := newEnv(t, smallDisk)
	v := testVolume(0, "ext4")
	v.SessionCHAPAuth = true
	v.Secrets = Secrets{SecretSessionUser: "chap-user-x", SecretSessionPassword: "chap-secret-never-stored"}
	staging := filepath.Join(t.TempDir(), "globalmount")
	res, err := e.m.StageAt(e.ctx, "vol-secret", staging, v)
	require.NoError(t, err)
	b, err := os.ReadFile(e.m.stagedFile("vol-secret"))
	require.NoError(t, err)
	assert.NotContains(t, string(b), "chap-secret-never-stored")
	assert.Contains(t, string(b), `"chapAuthSession": true`, "the flag is kept, the values are not")
	require.NoError(t, e.m.UnstageAt(e.ctx, "vol-secret", staging))
	e.assertClean(t, res.GlobalPath)
}
