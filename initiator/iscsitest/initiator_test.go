package iscsitest_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/gosan/iscsi/initiator"
	"github.com/gosan/iscsi/initiator/iscsitest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The real initiator against the test target: writes through immediate
// data and R2T sequences, reads back, and the target saw no violations.
func TestWithInitiator(t *testing.T) {
	const iqn = "iqn.2024-01.test:rw"
	for _, tc := range []struct {
		name string
		neg  iscsitest.Negotiation
		bs   int
	}{
		{"tgtd defaults", iscsitest.Negotiation{}, 512},
		{"unsolicited, 2 R2Ts, 4K", iscsitest.Negotiation{InitialR2T: iscsitest.Bool(false), MaxOutstandingR2T: 2, MaxBurstLength: 32768, DeclareMaxRecvDataSegmentLength: true, MaxRecvDataSegmentLength: 16384}, 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := iscsitest.NewTestServer(t, iscsitest.Config{
				Targets:     []iscsitest.Target{{Name: iqn, LUNs: []iscsitest.LUN{{Number: 1, Blocks: 4096 * 512 / uint64(tc.bs), BlockSize: tc.bs}}}},
				Negotiation: tc.neg,
			})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			sess, err := initiator.Dial(ctx, srv.Addr(), iqn)
			require.NoError(t, err)
			defer sess.Close()
			lun, err := sess.LUN(ctx, 1)
			require.NoError(t, err)
			p := make([]byte, 192<<10)
			for i := range p {
				p[i] = byte(i / 512)
			}
			_, err = lun.WriteAt(p, 64<<10)
			require.NoError(t, err)
			got := make([]byte, len(p))
			_, err = lun.ReadAt(got, 64<<10)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(p, got))
			data, err := srv.LUNData(iqn, 1)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(p, data[64<<10:64<<10+len(p)]))
			assert.Empty(t, srv.Violations())
		})
	}
}
