package driver

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/gosan/iscsi/blockdev"
)

// TestMetrics: the supervisor's log records become counters, sessions in
// sysfs become gauges, and the kernel's counters are read for logged-in
// sessions (the guest harness checks them against a real session).
func TestMetrics(t *testing.T) {
	m := NewMetrics(t.TempDir())
	m.sessions = func() ([]blockdev.SessionInfo, error) {
		return []blockdev.SessionInfo{
			{SID: 7, TargetName: "iqn.2024-01.x:a", Portal: "10.0.0.1:3260", Iface: "default", State: "LOGGED_IN"},
			{SID: 8, TargetName: "iqn.2024-01.x:b", Portal: "10.0.0.1:3260", Iface: "default", State: "FAILED"},
		}, nil
	}
	var asked []uint32
	m.SetConnStats(func(ctx context.Context, sid uint32) (*blockdev.ConnStats, error) {
		asked = append(asked, sid)
		return &blockdev.ConnStats{TxDataOctets: 4096, DigestErr: 2}, nil
	})
	log := slog.New(m.LogHandler(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError})))
	log.Warn(msgConnFailed, "sid", 7)
	log.Info(msgRecovered, "sid", 7)
	log.Info(msgRecovered, "sid", 7)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	assert.Contains(t, body, "gosan_iscsi_connection_failures_total 1", "counted although the level filters the record")
	assert.Contains(t, body, "gosan_iscsi_reconnects_total 2")
	assert.Contains(t, body, `gosan_iscsi_session_up{iface="default",portal="10.0.0.1:3260",sid="7",state="LOGGED_IN",target="iqn.2024-01.x:a"} 1`)
	assert.Contains(t, body, `gosan_iscsi_conn_tx_bytes_total{portal="10.0.0.1:3260",sid="7",target="iqn.2024-01.x:a"} 4096`)
	assert.Contains(t, body, `gosan_iscsi_conn_digest_errors_total{portal="10.0.0.1:3260",sid="7",target="iqn.2024-01.x:a"} 2`)
	assert.Contains(t, body, `gosan_iscsi_session_up{iface="default",portal="10.0.0.1:3260",sid="8",state="FAILED",target="iqn.2024-01.x:b"} 0`)
	assert.Equal(t, []uint32{7}, asked, "counters only of logged-in sessions")
}
