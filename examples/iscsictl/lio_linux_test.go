package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gosan/iscsi/internal/testenv/lio"
)

// TestIscsictlAgainstLIO drives iscsictl against LIO in a qemu guest reached
// through a port forward. LIO advertises the guest's own address
// (10.0.2.15:3260) in SendTargets, which the host cannot reach; iscsictl
// lists it as LIO says, and every other command dials the address in the URL,
// so a user reaches the targets at the address they gave.
func TestIscsictlAgainstLIO(t *testing.T) {
	_, f := lio.StartFixture(t)

	t.Run("discover-lists-advertised-portal", func(t *testing.T) {
		code, out, errs := ctl(t, nil, nil, "discover", "--json", "iscsi://"+f.Portal)
		require.Equal(t, 0, code, errs)
		var got []struct {
			TargetName string `json:"target_name"`
			Portals    []struct {
				Address string `json:"address"`
				Port    int    `json:"port"`
			} `json:"portals"`
		}
		require.NoError(t, json.Unmarshal([]byte(out), &got))
		// LIO lists every target to every initiator, the ACL target too.
		assert.Len(t, got, len(f.Targets()))
		for _, tg := range got {
			require.Len(t, tg.Portals, 1, tg.TargetName)
			assert.Equal(t, f.AdvertisedPortal, fmt.Sprintf("%s:%d", tg.Portals[0].Address, tg.Portals[0].Port))
		}
	})

	t.Run("luns-at-the-given-address", func(t *testing.T) {
		code, out, errs := ctl(t, nil, nil, "luns", "--json", fmt.Sprintf("iscsi://%s/%s", f.Portal, f.MultiLUN.IQN))
		require.Equal(t, 0, code, errs)
		var rows []lunInfo
		require.NoError(t, json.Unmarshal([]byte(out), &rows))
		require.Len(t, rows, len(f.MultiLUN.LUNs), "LIO's LUN 0 is the first disk, no controller")
		for i, l := range f.MultiLUN.LUNs {
			assert.Equal(t, l.LUN, rows[i].LUN)
			assert.Equal(t, "disk", rows[i].Type)
			assert.Equal(t, "LIO-ORG", rows[i].Vendor)
			assert.Equal(t, l.BlockSize, rows[i].BlockSize)
			assert.Equal(t, l.Size, rows[i].SizeBytes)
		}
	})

	t.Run("mutual-chap-write-read", func(t *testing.T) {
		// LIO's CHAP credentials belong to a node ACL: the initiator name matters.
		env := map[string]string{"LIBISCSI_CHAP_USERNAME": f.MutualCHAP.User, "LIBISCSI_CHAP_PASSWORD": f.MutualCHAP.Secret,
			"LIBISCSI_CHAP_TARGET_USERNAME": f.MutualCHAP.TargetUser, "LIBISCSI_CHAP_TARGET_PASSWORD": f.MutualCHAP.TargetSecret}
		l := f.MutualCHAP.LUNs[0]
		url := fmt.Sprintf("iscsi://%s/%s/%d", f.Portal, f.MutualCHAP.IQN, l.LUN)
		data := make([]byte, 256<<10+512)
		rand.Read(data)
		off := int64(512 * 9)
		code, _, errs := ctl(t, env, data, "--initiator-name", f.Initiator, "write", url, "--offset", fmt.Sprint(off))
		require.Equal(t, 0, code, errs)
		code, out, errs := ctl(t, env, nil, "--initiator-name", f.Initiator, "read", url, "--offset", fmt.Sprint(off), "--length", fmt.Sprint(len(data)))
		require.Equal(t, 0, code, errs)
		require.True(t, bytes.Equal(data, []byte(out)), "read returns what was written")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		sum, err := f.Checksum(ctx, l, off, int64(len(data)))
		require.NoError(t, err)
		assert.Equal(t, sha256.Sum256(data), sum, "the guest's backing file holds what was written")

		// Another initiator name: refused by the node ACL, one line, no secret.
		code, _, errs = ctl(t, env, nil, "read", url, "--length", "512")
		assert.Equal(t, 1, code)
		assert.Contains(t, errs, "authorization")
		assert.NotContains(t, errs, f.MutualCHAP.Secret)
	})
}
