package ops_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/internal/ops"
)

type powerStates struct {
	states map[string]nixdeploy.PowerState
	err    error
}

func (p powerStates) PowerStates(context.Context) (map[string]nixdeploy.PowerState, error) {
	return p.states, p.err
}

func scrape(t *testing.T, m *ops.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

func TestPowerMetric(t *testing.T) {
	store := openDB(t)
	m := ops.NewMetrics(ops.MetricsOptions{Store: store, Power: powerStates{states: map[string]nixdeploy.PowerState{
		"rk1-node1": nixdeploy.PowerStateOn, "rk1-node2": nixdeploy.PowerStateOff, "rk1-node3": nixdeploy.PowerStateUnknown,
	}}})
	body := scrape(t, m)
	for _, want := range []string{`nixdeploy_node_power_on{host="rk1-node1"} 1`, `nixdeploy_node_power_on{host="rk1-node2"} 0`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(body, `host="rk1-node3"`) {
		t.Error("an unknown state was exported as a value")
	}
	// A BMC that does not answer leaves the series out; the rest stays.
	m = ops.NewMetrics(ops.MetricsOptions{Store: store, Power: powerStates{err: errors.New("bmc down")}})
	body = scrape(t, m)
	if strings.Contains(body, "nixdeploy_node_power_on{") || !strings.Contains(body, "nixdeploy_pending_approvals") {
		t.Errorf("with the BMC down:\n%s", body)
	}
}
