package driver

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"

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
	m.reg.MustRegister(m.connFailed, m.recovered, m.calls, sessionCollector{sys: blockdev.Sysfs{Root: sysfsRoot}},
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

// sessionCollector reads the sessions from sysfs at each scrape.
type sessionCollector struct{ sys blockdev.Sysfs }

func (c sessionCollector) Describe(ch chan<- *prometheus.Desc) { ch <- sessionDesc }

func (c sessionCollector) Collect(ch chan<- prometheus.Metric) {
	ss, err := c.sys.Sessions()
	if err != nil {
		return
	}
	for _, s := range ss {
		up := 0.0
		if s.State == "LOGGED_IN" {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(sessionDesc, prometheus.GaugeValue, up,
			s.TargetName, s.Portal, s.Iface, strconv.FormatUint(uint64(s.SID), 10), s.State)
	}
}
