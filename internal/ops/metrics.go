// Package ops is what an operator of nixdeploy watches: Prometheus metrics
// on a private registry (never the global default, so tests and several
// bots in one process do not collide) and the liveness and readiness
// handlers. It reads the database only through the small Store interface.
package ops

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/schedules"
)

// Store is what the metrics read at scrape time; *db.DB satisfies it.
// Reading the database, rather than counting in memory, keeps the pending
// approvals and the last nightly successes right across restarts.
type Store interface {
	PendingApprovals(ctx context.Context) ([]nixdeploy.Approval, error)
	ScheduleRuns(ctx context.Context, schedule string, limit int) ([]nixdeploy.ScheduleRun, error)
}

// MetricsOptions configure NewMetrics. Store is required.
type MetricsOptions struct {
	Store Store
	// Schedules are the configured schedule names.
	Schedules []string
	// Logger gets scrape errors; default slog.Default().
	Logger *slog.Logger
	// Power, optional, reads the Turing Pi slots' power (power.go).
	Power PowerReader
}

// scrapeTimeout bounds the database reads of one scrape.
const scrapeTimeout = 5 * time.Second

// scheduleRunsScanned is how many of a schedule's newest runs are searched
// for each host's last success.
const scheduleRunsScanned = 50

// Metrics are nixdeploy's Prometheus metrics.
type Metrics struct {
	reg         *prometheus.Registry
	log         *slog.Logger
	deployments *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	// drift and reboot are the drift board's gauges (drift.go).
	drift, reboot *prometheus.GaugeVec
}

// NewMetrics registers every metric on a new private registry.
func NewMetrics(o MetricsOptions) *Metrics {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		log: o.Logger,
		deployments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nixdeploy_deployments_total",
			Help: "Deployments that reached a final state, by action and outcome (succeeded, failed, cancelled, interrupted, rejected, expired).",
		}, []string{"action", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "nixdeploy_deployment_duration_seconds",
			Help: "How long deployments ran, by action; an install takes many minutes, a switch one or two.",
			// From a quick no-op switch to a slow install on an RK1.
			Buckets: []float64{5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200},
		}, []string{"action"}),
	}
	m.drift, m.reboot = newDriftGauges()
	m.reg.MustRegister(m.deployments, m.duration, m.drift, m.reboot,
		&storeCollector{store: o.Store, schedules: o.Schedules, log: o.Logger},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if o.Power != nil {
		m.reg.MustRegister(&powerCollector{power: o.Power})
	}
	return m
}

// DeploymentEnded counts a deployment by its outcome and, when it ran,
// observes how long. It implements bot.Observer.
func (m *Metrics) DeploymentEnded(dep nixdeploy.Deployment, state nixdeploy.State, took time.Duration) {
	m.deployments.WithLabelValues(string(dep.Action), string(state)).Inc()
	if took > 0 {
		m.duration.WithLabelValues(string(dep.Action)).Observe(took.Seconds())
	}
}

// Handler serves the metrics in the Prometheus text format. A failed
// database read leaves out its series and is logged; the rest is served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slogPrinter{m.log},
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg,
	})
}

// slogPrinter adapts promhttp's error log to slog.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Warn("metrics", "err", fmt.Sprint(v...)) }

var (
	pendingDesc = prometheus.NewDesc("nixdeploy_pending_approvals",
		"Destructive requests waiting for an approver's reaction.", nil, nil)
	lastSuccessDesc = prometheus.NewDesc("nixdeploy_schedule_last_success_timestamp_seconds",
		"Unix time of the end of the newest schedule run in which the host succeeded (a nightly rebuild that stopped working shows as an old value).",
		[]string{"schedule", "host"}, nil)
)

// storeCollector reads the gauges from the database at scrape time.
type storeCollector struct {
	store     Store
	schedules []string
	log       *slog.Logger
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pendingDesc
	ch <- lastSuccessDesc
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	pending, err := c.store.PendingApprovals(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(pendingDesc, fmt.Errorf("read pending approvals: %w", err))
	} else {
		ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(len(pending)))
	}
	for _, name := range c.schedules {
		runs, err := c.store.ScheduleRuns(ctx, name, scheduleRunsScanned)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(lastSuccessDesc, fmt.Errorf("read runs of schedule %s: %w", name, err))
			continue
		}
		for host, at := range lastSuccesses(runs) {
			ch <- prometheus.MustNewConstMetric(lastSuccessDesc, prometheus.GaugeValue, float64(at.Unix()), name, host)
		}
	}
}

// lastSuccesses maps each host to the end of the newest run (runs come
// newest first) in which it succeeded; a run still going counts from its
// start.
func lastSuccesses(runs []nixdeploy.ScheduleRun) map[string]time.Time {
	out := map[string]time.Time{}
	for _, r := range runs {
		at := r.EndedAt
		if at.IsZero() {
			at = r.StartedAt
		}
		for _, h := range r.Hosts {
			if _, seen := out[h.Host]; !seen && h.Outcome == schedules.OutcomeSucceeded {
				out[h.Host] = at
			}
		}
	}
	return out
}
