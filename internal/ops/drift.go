package ops

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nixdeploy/nixdeploy"
)

// The drift board's gauges, set from each reading of hosts (the bot hands
// every board it reads to its Observer's HostsRead), not at scrape time:
// reading a fleet over SSH is too slow for a scrape.
//
//	nixdeploy_host_drift{host}: 1 the host runs something other than the
//	  flake's current revision, 0 it runs exactly that, -1 unknown (the
//	  host or the flake could not be read; the board says why). Absent
//	  until the host was first read since the process started.
//	nixdeploy_host_reboot_pending{host}: 1 /run/booted-system differs from
//	  /run/current-system, 0 not, absent while unknown.
//
// An alert on "nixdeploy_host_drift == 1" fires on drift only; one on
// "== -1" on hosts that cannot be read.

// driftValue is a reading's nixdeploy_host_drift value.
func driftValue(d nixdeploy.Drift) float64 {
	switch d {
	case nixdeploy.DriftYes:
		return 1
	case nixdeploy.DriftNo:
		return 0
	}
	return -1
}

func newDriftGauges() (drift, reboot *prometheus.GaugeVec) {
	drift = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "nixdeploy_host_drift",
		Help: "1 when the host runs something other than the system the flake's current revision evaluates to (drift), 0 when it runs exactly that, -1 when unknown; set at each reading of the drift board.",
	}, []string{"host"})
	reboot = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "nixdeploy_host_reboot_pending",
		Help: "Whether the host's booted system differs from its running one (1) or not (0); absent while unknown; set at each reading of the drift board.",
	}, []string{"host"})
	return drift, reboot
}

// HostsRead sets the drift gauges from a reading of hosts. It implements
// bot.ReadingObserver.
func (m *Metrics) HostsRead(readings []nixdeploy.HostReading) {
	for _, r := range readings {
		m.drift.WithLabelValues(r.Host).Set(driftValue(r.Drift))
		if r.Running == "" || r.Booted == "" {
			m.reboot.DeleteLabelValues(r.Host)
			continue
		}
		v := 0.0
		if r.RebootPending {
			v = 1
		}
		m.reboot.WithLabelValues(r.Host).Set(v)
	}
}
