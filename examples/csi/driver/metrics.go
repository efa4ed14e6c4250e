package driver

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gosan/iscsi/blockdev"
)

// Metrics is the plugin's Prometheus registry: the state of every iSCSI
// session on the node (read from sysfs at each scrape), the Supervisor's
// connection failures and recoveries, and the CSI calls by method and code.
type Metrics struct {
	reg        *prometheus.Registry
	connFailed prometheus.Counter
	recovered  prometheus.Counter
	calls      *prometheus.CounterVec
	// connStats reads the kernel's per-connection counters (set once,
	// before the metrics are served).
	connStats func(ctx context.Context, sid uint32) (*blockdev.ConnStats, error)
	// sessions lists the node's sessions (sysfs; tests replace it).
	sessions func() ([]blockdev.SessionInfo, error)
}

// SetConnStats gives the collector the kernel's per-connection counters
// (blockdev.Kernel.ConnStats). Call it before serving Handler.
func (m *Metrics) SetConnStats(f func(ctx context.Context, sid uint32) (*blockdev.ConnStats, error)) {
	m.connStats = f
}

// NewMetrics returns the registry for a node whose sysfs is at sysfsRoot.
func NewMetrics(sysfsRoot string) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		connFailed: prometheus.NewCounter(prometheus.CounterOpts{Name: "gosan_iscsi_connection_failures_total",
			Help: "Connections the kernel reported failed (ISCSI_KEVENT_CONN_ERROR) that the supervisor started to recover."}),
		recovered: prometheus.NewCounter(prometheus.CounterOpts{Name: "gosan_iscsi_reconnects_total",
			Help: "Sessions the supervisor logged in again after a connection failure."}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gosan_csi_operations_total",
			Help: "CSI calls by method and gRPC code."}, []string{"method", "code"}),
	}
	m.sessions = blockdev.Sysfs{Root: sysfsRoot}.Sessions
	m.reg.MustRegister(m.connFailed, m.recovered, m.calls, sessionCollector{m: m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// LogHandler wraps h and counts the supervisor's recovery events, which
// package blockdev reports as log records.
func (m *Metrics) LogHandler(h slog.Handler) slog.Handler { return countingHandler{h, m} }

type countingHandler struct {
	slog.Handler
	m *Metrics
}

// The messages of blockdev's supervisor (supervisor_linux.go).
const (
	msgConnFailed = "blockdev: connection failed, recovering"
	msgRecovered  = "blockdev: session recovered"
)

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	switch r.Message {
	case msgConnFailed:
		h.m.connFailed.Inc()
	case msgRecovered:
		h.m.recovered.Inc()
	}
	return h.Handler.Handle(ctx, r)
}

// Enabled counts even when the level filters the record out.
func (h countingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.Handler.Enabled(ctx, l)
}

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return countingHandler{h.Handler.WithAttrs(as), h.m}
}

func (h countingHandler) WithGroup(name string) slog.Handler {
	return countingHandler{h.Handler.WithGroup(name), h.m}
}

var sessionDesc = prometheus.NewDesc("gosan_iscsi_session_up",
	"1 when the kernel session is LOGGED_IN, 0 when FAILED (recovering) or FREE.",
	[]string{"target", "portal", "iface", "sid", "state"}, nil)

// connCounters are the kernel's per-connection counters (GET_STATS).
var connCounters = []struct {
	desc *prometheus.Desc
	get  func(*blockdev.ConnStats) float64
}{
	{connDesc("tx_bytes_total", "Data bytes sent."), func(s *blockdev.ConnStats) float64 { return float64(s.TxDataOctets) }},
	{connDesc("rx_bytes_total", "Data bytes received."), func(s *blockdev.ConnStats) float64 { return float64(s.RxDataOctets) }},
	{connDesc("scsi_commands_total", "SCSI Command PDUs sent."), func(s *blockdev.ConnStats) float64 { return float64(s.SCSICmd) }},
	{connDesc("scsi_responses_total", "SCSI Response PDUs received."), func(s *blockdev.ConnStats) float64 { return float64(s.SCSIRsp) }},
	{connDesc("data_out_pdus_total", "Data-Out PDUs sent."), func(s *blockdev.ConnStats) float64 { return float64(s.DataOut) }},
	{connDesc("data_in_pdus_total", "Data-In PDUs received."), func(s *blockdev.ConnStats) float64 { return float64(s.DataIn) }},
	{connDesc("r2t_pdus_total", "R2T PDUs received."), func(s *blockdev.ConnStats) float64 { return float64(s.R2T) }},
	{connDesc("nop_out_pdus_total", "NOP-Out PDUs sent."), func(s *blockdev.ConnStats) float64 { return float64(s.NOPOut) }},
	{connDesc("nop_in_pdus_total", "NOP-In PDUs received."), func(s *blockdev.ConnStats) float64 { return float64(s.NOPIn) }},
	{connDesc("tmf_pdus_total", "Task management requests sent."), func(s *blockdev.ConnStats) float64 { return float64(s.TMFCmd) }},
	{connDesc("reject_pdus_total", "Reject PDUs received."), func(s *blockdev.ConnStats) float64 { return float64(s.Reject) }},
	{connDesc("async_pdus_total", "Asynchronous Message PDUs received."), func(s *blockdev.ConnStats) float64 { return float64(s.Async) }},
	{connDesc("digest_errors_total", "Data digest errors."), func(s *blockdev.ConnStats) float64 { return float64(s.DigestErr) }},
	{connDesc("timeout_errors_total", "Command timeouts."), func(s *blockdev.ConnStats) float64 { return float64(s.TimeoutErr) }},
}

func connDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("gosan_iscsi_conn_"+name, help+" (the kernel's connection counters, ISCSI_UEVENT_GET_STATS; reset when a session is made)",
		[]string{"target", "portal", "sid"}, nil)
}

// sessionCollector reads the sessions from sysfs at each scrape, and
// their connection counters from the kernel.
type sessionCollector struct{ m *Metrics }

func (c sessionCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- sessionDesc
	for _, cc := range connCounters {
		ch <- cc.desc
	}
}

func (c sessionCollector) Collect(ch chan<- prometheus.Metric) {
	ss, err := c.m.sessions()
	if err != nil {
		return
	}
	for _, s := range ss {
		up := 0.0
		if s.State == "LOGGED_IN" {
			up = 1
		}
		sid := strconv.FormatUint(uint64(s.SID), 10)
		ch <- prometheus.MustNewConstMetric(sessionDesc, prometheus.GaugeValue, up, s.TargetName, s.Portal, s.Iface, sid, s.State)
		if c.m.connStats == nil || s.State != "LOGGED_IN" {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := c.m.connStats(ctx, s.SID)
		cancel()
		if err != nil {
			continue
		}
		for _, cc := range connCounters {
			ch <- prometheus.MustNewConstMetric(cc.desc, prometheus.CounterValue, cc.get(st), s.TargetName, s.Portal, sid)
		}
	}
}
