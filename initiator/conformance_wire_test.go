//go:build wirecheck && linux

// This file is compiled only with -tags wirecheck. scripts/wirecheck.sh
// builds it, captures the loopback traffic of TestWireCapture with dumpcap
// and checks the capture with tshark, an iSCSI decoder independent of ours.
// Plain `go test ./...` never sees it.

package initiator_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/gosan/iscsi/initiator"
	"github.com/gosan/iscsi/internal/testenv/tgtd"
	"github.com/stretchr/testify/require"
)

// WireCheckPortEnv names the environment variable that carries the TCP port
// tgtd must listen on (the port dumpcap captures).
const wireCheckPortEnv = "GOSAN_WIRECHECK_PORT"

// TestWireCapture drives one session through everything the wire check
// wants to see decoded: discovery (Text), login with header and data
// digests, REPORT LUNS, writes large enough for R2T/Data-Out sequences,
// reads large enough for multi-PDU Data-In, and logout.
func TestWireCapture(t *testing.T) {
	ps := os.Getenv(wireCheckPortEnv)
	require.NotEmpty(t, ps, "%s is not set: run this test through scripts/wirecheck.sh (it passes the captured port)", wireCheckPortEnv)
	port, err := strconv.Atoi(ps)
	require.NoError(t, err, "%s=%q", wireCheckPortEnv, ps)
	require.True(t, port > 0 && port < 65536, "%s=%d out of range", wireCheckPortEnv, port)

	srv, fix := tgtd.StartFixture(t, tgtd.WithOptions(tgtd.Options{Port: port}))
	require.Equal(t, port, srv.Port(), "tgtd must listen on the captured port")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, srv.SetParam(ctx, fix.Plain.TID, "HeaderDigest", "CRC32C"))
	require.NoError(t, srv.SetParam(ctx, fix.Plain.TID, "DataDigest", "CRC32C"))
	digests := []initiator.Option{
		initiator.WithHeaderDigest(initiator.DigestRequireCRC32C),
		initiator.WithDataDigest(initiator.DigestRequireCRC32C),
	}

	// tgtd's digest parameters default to None and it then answers None
	// even to an offer of CRC32C alone (measured; RFC 7143 wants Reject).
	// Discovery sessions have no target to set them on, so discovery offers
	// CRC32C,None; the normal session below requires CRC32C.
	targets, err := initiator.Discover(ctx, fix.Portal,
		initiator.WithHeaderDigest(initiator.DigestPreferCRC32C),
		initiator.WithDataDigest(initiator.DigestPreferCRC32C))
	require.NoError(t, err, "discovery")
	var names []string
	for _, tg := range targets {
		names = append(names, tg.TargetName)
	}
	require.Contains(t, names, fix.Plain.IQN)

	// A 64 KiB receive limit makes every 256 KiB Data-In burst four PDUs.
	opts := append(digests, initiator.WithMaxRecvDataSegmentLength(65536))
	s, err := initiator.Dial(ctx, fix.Portal, fix.Plain.IQN, opts...)
	require.NoError(t, err, "login with CRC32C header and data digests")
	neg := s.Negotiated()
	require.True(t, neg.HeaderDigest, "header digest not in force")
	require.True(t, neg.DataDigest, "data digest not in force")

	luns, err := s.ReportLUNs(ctx)
	require.NoError(t, err)
	require.Contains(t, luns, uint64(1))

	l, err := s.LUN(ctx, 1)
	require.NoError(t, err)
	bs := int64(l.BlockSize())

	// Sizes: below, at and above the target's 8 KiB receive limit and
	// FirstBurstLength (64 KiB), and several MaxBurstLengths (256 KiB).
	sizes := []int{4096, 8192 + 512, 65536 + 4096, 1 << 20, 3<<20 + 512}
	off := int64(0)
	for _, n := range sizes {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			data := make([]byte, n)
			_, _ = rand.Read(data)
			w, err := l.WriteAt(data, off)
			require.NoError(t, err)
			require.Equal(t, n, w)
			got := make([]byte, n)
			r, err := l.ReadAt(got, off)
			require.NoError(t, err)
			require.Equal(t, n, r)
			require.True(t, bytes.Equal(data, got), "read back differs")
		})
		off += (int64(n) + bs - 1) / bs * bs
	}
	require.NoError(t, s.Close(), "logout")
	require.NoError(t, srv.Close())
}
