package ops_test

import (
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/internal/ops"
)

func TestDriftGauges(t *testing.T) {
	m := ops.NewMetrics(ops.MetricsOptions{Store: openDB(t)})
	if body := scrape(t, m); strings.Contains(body, "nixdeploy_host_drift{") {
		t.Errorf("gauges before any reading:\n%s", body)
	}
	m.HostsRead([]nixdeploy.HostReading{
		{Host: "a", Running: "/s1", Booted: "/s1", Expected: "/s1", Drift: nixdeploy.DriftNo},
		{Host: "b", Running: "/s1", Booted: "/s0", Expected: "/s2", Drift: nixdeploy.DriftYes, RebootPending: true},
		{Host: "c", Drift: nixdeploy.DriftUnknown, Why: "unreachable"},
	})
	body := scrape(t, m)
	for _, want := range []string{
		`nixdeploy_host_drift{host="a"} 0`, `nixdeploy_host_drift{host="b"} 1`, `nixdeploy_host_drift{host="c"} -1`,
		`nixdeploy_host_reboot_pending{host="a"} 0`, `nixdeploy_host_reboot_pending{host="b"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(body, `nixdeploy_host_reboot_pending{host="c"}`) {
		t.Error("reboot pending exported for a host that could not be read")
	}
	// The next reading replaces the values: b was fixed, then lost.
	m.HostsRead([]nixdeploy.HostReading{{Host: "b", Drift: nixdeploy.DriftUnknown}})
	body = scrape(t, m)
	if !strings.Contains(body, `nixdeploy_host_drift{host="b"} -1`) || strings.Contains(body, `nixdeploy_host_reboot_pending{host="b"}`) {
		t.Errorf("after b became unknown:\n%s", body)
	}
}
