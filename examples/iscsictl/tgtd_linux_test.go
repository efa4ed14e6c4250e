package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gosan/iscsi/internal/testenv/tgtd"
)

func lunURL(f *tgtd.Fixture, tgt tgtd.FixtureTarget, lun uint64) string {
	return fmt.Sprintf("iscsi://%s/%s/%d", f.Portal, tgt.IQN, lun)
}

func TestIscsictlAgainstTgtd(t *testing.T) {
	_, f := tgtd.StartFixture(t)

	t.Run("discover", func(t *testing.T) {
		code, out, errs := ctl(t, nil, nil, "discover", "iscsi://"+f.Portal)
		require.Equal(t, 0, code, errs)
		// tgtd's SendTargets honours ACLs: the ACL target is listed only to
		// the one initiator name it admits.
		for _, tg := range f.Targets() {
			if tg.IQN == f.ACL.IQN {
				assert.NotContains(t, out, tg.IQN)
				continue
			}
			assert.Contains(t, out, f.Portal+",1 "+tg.IQN)
		}
		code, out, errs = ctl(t, nil, nil, "--initiator-name", f.AllowedInitiator, "discover", "iscsi://"+f.Portal)
		require.Equal(t, 0, code, errs)
		assert.Contains(t, out, f.Portal+",1 "+f.ACL.IQN)
		code, out, errs = ctl(t, nil, nil, "discover", "--json", "iscsi://"+f.Portal)
		require.Equal(t, 0, code, errs)
		var got []struct {
			TargetName string `json:"target_name"`
			Portals    []struct {
				Address string `json:"address"`
				Port    int    `json:"port"`
			} `json:"portals"`
		}
		require.NoError(t, json.Unmarshal([]byte(out), &got))
		assert.Len(t, got, len(f.Targets())-1)
		require.NotEmpty(t, got[0].Portals)
		assert.Equal(t, "127.0.0.1", got[0].Portals[0].Address)
	})

	t.Run("luns", func(t *testing.T) {
		url := fmt.Sprintf("iscsi://%s/%s", f.Portal, f.MultiLUN.IQN)
		code, out, errs := ctl(t, nil, nil, "luns", "--json", url)
		require.Equal(t, 0, code, errs)
		var rows []lunInfo
		require.NoError(t, json.Unmarshal([]byte(out), &rows))
		byLUN := map[uint64]lunInfo{}
		for _, r := range rows {
			byLUN[r.LUN] = r
		}
		assert.Equal(t, uint8(0x0c), byLUN[0].TypeCode, "tgtd's LUN 0 is a controller")
		for _, l := range f.MultiLUN.LUNs {
			r, ok := byLUN[l.LUN]
			require.True(t, ok, "LUN %d listed", l.LUN)
			assert.Equal(t, "disk", r.Type)
			assert.Equal(t, "IET", r.Vendor)
			assert.Equal(t, l.BlockSize, r.BlockSize)
			assert.Equal(t, l.Size, r.SizeBytes)
			assert.Equal(t, l.Size/int64(l.BlockSize), r.Blocks)
		}
		code, out, _ = ctl(t, nil, nil, "luns", url)
		require.Equal(t, 0, code)
		assert.Contains(t, out, "VIRTUAL-DISK")
	})

	t.Run("write-read-backing-file", func(t *testing.T) {
		for _, l := range f.MultiLUN.LUNs {
			url := lunURL(f, f.MultiLUN, l.LUN)
			data := make([]byte, 3*1024*1024+1000) // not a multiple of the block size
			rand.Read(data)
			off := int64(l.BlockSize) * 7
			code, _, errs := ctl(t, nil, data, "write", url, "--offset", fmt.Sprint(off))
			require.Equal(t, 0, code, errs)
			backing, err := os.ReadFile(l.Path)
			require.NoError(t, err)
			require.True(t, bytes.Equal(data, backing[off:off+int64(len(data))]), "backing file of LUN %d holds what was written", l.LUN)

			code, out, errs := ctl(t, nil, nil, "read", url, "--offset", fmt.Sprint(off), "--length", fmt.Sprint(len(data)))
			require.Equal(t, 0, code, errs)
			require.True(t, bytes.Equal(data, []byte(out)), "read returns what was written")

			// Unaligned offset and length on read.
			code, out, errs = ctl(t, nil, nil, "read", url, "--offset", fmt.Sprint(off+3), "--length", "10")
			require.Equal(t, 0, code, errs)
			assert.Equal(t, data[3:13], []byte(out))
		}
	})

	t.Run("chap-from-environment", func(t *testing.T) {
		env := map[string]string{"LIBISCSI_CHAP_USERNAME": f.MutualCHAP.User, "LIBISCSI_CHAP_PASSWORD": f.MutualCHAP.Secret,
			"LIBISCSI_CHAP_TARGET_USERNAME": f.MutualCHAP.TargetUser, "LIBISCSI_CHAP_TARGET_PASSWORD": f.MutualCHAP.TargetSecret}
		url := lunURL(f, f.MutualCHAP, f.MutualCHAP.LUNs[0].LUN)
		code, out, errs := ctl(t, env, nil, "read", url, "--length", "4096")
		require.Equal(t, 0, code, errs)
		assert.Len(t, out, 4096)

		env["LIBISCSI_CHAP_PASSWORD"] = "wrong-secret-wrong"
		code, _, errs = ctl(t, env, nil, "read", url, "--length", "4096")
		assert.Equal(t, 1, code)
		assert.Contains(t, errs, "authentication")
		assert.Equal(t, 1, strings.Count(strings.TrimSpace(errs), "\n")+1, "one line on stderr: %q", errs)
		assert.NotContains(t, errs, "wrong-secret-wrong")
		assert.NotContains(t, errs, f.MutualCHAP.TargetSecret)
	})

	t.Run("copy-lun-to-file-to-lun", func(t *testing.T) {
		dir := t.TempDir()
		src := filepath.Join(dir, "src.bin")
		data := make([]byte, 5*1024*1024+512)
		rand.Read(data)
		require.NoError(t, os.WriteFile(src, data, 0o644))
		l := f.Plain.LUNs[0]
		url := lunURL(f, f.Plain, l.LUN)
		code, _, errs := ctl(t, nil, nil, "copy", src, url)
		require.Equal(t, 0, code, errs)
		backing, err := os.ReadFile(l.Path)
		require.NoError(t, err)
		require.True(t, bytes.Equal(data, backing[:len(data)]))

		back := filepath.Join(dir, "back.bin")
		code, _, errs = ctl(t, nil, nil, "copy", url, back)
		require.Equal(t, 0, code, errs)
		got, err := os.ReadFile(back)
		require.NoError(t, err)
		require.Equal(t, l.Size, int64(len(got)))
		require.True(t, bytes.Equal(backing, got), "LUN copied to a file equals the backing file")

		// A file that ends inside a block goes the ReadAt/WriteAt way
		// (the tail is merged with the LUN's block); aligned ones above
		// went through initiator.Queue.
		odd := filepath.Join(dir, "odd.bin")
		data2 := make([]byte, 3*1024*1024+100)
		rand.Read(data2)
		require.NoError(t, os.WriteFile(odd, data2, 0o644))
		code, _, errs = ctl(t, nil, nil, "copy", odd, url, "--chunk", "64k", "--jobs", "8")
		require.Equal(t, 0, code, errs)
		backing2, err := os.ReadFile(l.Path)
		require.NoError(t, err)
		require.True(t, bytes.Equal(data2, backing2[:len(data2)]))
		require.True(t, bytes.Equal(data[len(data2):], backing2[len(data2):len(data)]), "the rest of the tail block is kept")
	})

	t.Run("bench-json", func(t *testing.T) {
		url := lunURL(f, f.Plain, f.Plain.LUNs[0].LUN)
		for _, tc := range []struct{ rw, engine, bs, want, reapMin string }{
			{"randread", "queue", "4k", "queue", "1"}, {"write", "queue", "4k", "queue", "3"},
			{"randread", "sync", "4k", "sync", "1"}, {"write", "queue", "16M", "sync", "1"}, // 16 MiB is several commands
		} {
			rw := tc.rw
			code, out, errs := ctl(t, nil, nil, "bench", url, "--rw", rw, "--bs", tc.bs, "--qd", "4", "--reap-min", tc.reapMin, "--duration", "300ms", "--engine", tc.engine, "--json")
			require.Equal(t, 0, code, errs)
			var r benchResult
			require.NoError(t, json.Unmarshal([]byte(out), &r))
			assert.Equal(t, rw, r.RW)
			assert.Equal(t, tc.want, r.Engine)
			assert.Positive(t, r.IOs)
			assert.Positive(t, r.IOPS)
			assert.Positive(t, r.Latency.P50)
			assert.LessOrEqual(t, r.Latency.P50, r.Latency.Max)
		}
	})

	t.Run("errors", func(t *testing.T) {
		code, _, errs := ctl(t, nil, nil, "read", fmt.Sprintf("iscsi://%s/iqn.2026-11.org.gosan.test:nosuch/1", f.Portal))
		assert.Equal(t, 1, code)
		assert.Contains(t, errs, "login to iqn.2026-11.org.gosan.test:nosuch")
		code, _, _ = ctl(t, nil, nil, "read", "http://x")
		assert.Equal(t, 2, code)
		code, _, _ = ctl(t, nil, nil, "frobnicate")
		assert.Equal(t, 2, code)
		code, _, errs = ctl(t, nil, nil, "bench", lunURL(f, f.Plain, 1), "--rw", "sideways")
		assert.Equal(t, 2, code)
		assert.Contains(t, errs, "--rw")
		code, _, errs = ctl(t, nil, nil, "bench", lunURL(f, f.Plain, 1), "--qd", "4", "--reap-min", "5")
		assert.Equal(t, 2, code)
		assert.Contains(t, errs, "--reap-min")
	})
}
