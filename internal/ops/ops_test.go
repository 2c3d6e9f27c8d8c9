package ops_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/internal/ops"
)

func openDB(t *testing.T) *db.DB {
	t.Helper()
	store, _, err := db.Open(t.Context(), filepath.Join(t.TempDir(), "nixdeploy.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

func get(t *testing.T, h http.HandlerFunc) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h(rec, httptest.NewRequest("GET", "/", nil))
	return rec.Code, rec.Body.String()
}

// TestReadyz: not ready until every step is done and the database
// answers; not ready again once the database is closed or shutdown began.
// Liveness stays 200 throughout.
func TestReadyz(t *testing.T) {
	store := openDB(t)
	h := ops.NewHealth("database", "slack", "schedules")
	if code, body := get(t, h.Readyz); code != 503 || !strings.Contains(body, "slack: not ready yet") {
		t.Errorf("before start: %d %q", code, body)
	}
	h.Probe("database", store.Ping)
	h.Ready("slack")
	if code, body := get(t, h.Readyz); code != 503 || !strings.Contains(body, "schedules: not ready yet") || !strings.Contains(body, "database: ok") {
		t.Errorf("schedules not loaded: %d %q", code, body)
	}
	h.Ready("schedules")
	if code, body := get(t, h.Readyz); code != 200 || body != "database: ok\nslack: ok\nschedules: ok\n" {
		t.Errorf("ready: %d %q", code, body)
	}
	store.Close()
	if code, body := get(t, h.Readyz); code != 503 || !strings.Contains(body, "database: failing") {
		t.Errorf("database closed: %d %q", code, body)
	}
	h.Probe("database", func(context.Context) error { return nil })
	h.Stopping()
	if code, body := get(t, h.Readyz); code != 503 || !strings.Contains(body, "shutting down") {
		t.Errorf("stopping: %d %q", code, body)
	}
	if code, body := get(t, h.Livez); code != 200 || body != "ok\n" {
		t.Errorf("livez: %d %q", code, body)
	}
}

// TestMetrics: the named series, in the Prometheus text format, after
// deployments, an approval still pending and scheduled runs.
func TestMetrics(t *testing.T) {
	store := openDB(t)
	ctx := t.Context()
	m := ops.NewMetrics(ops.MetricsOptions{Store: store, Schedules: []string{"nightly-rk1"}})

	switchDep := nixdeploy.Deployment{ID: 1, Hosts: []string{"rk1-node3"}, Action: nixdeploy.ActionSwitch}
	m.DeploymentEnded(switchDep, nixdeploy.StateSucceeded, 42*time.Second)
	m.DeploymentEnded(switchDep, nixdeploy.StateFailed, 3*time.Second)
	m.DeploymentEnded(nixdeploy.Deployment{ID: 2, Hosts: []string{"ganon"}, Action: nixdeploy.ActionInstall}, nixdeploy.StateRejected, 0)

	pending := nixdeploy.Deployment{Hosts: []string{"ganon"}, Action: nixdeploy.ActionInstall, Requester: "U1", Source: nixdeploy.SourceSlack, State: nixdeploy.StateAwaiting}
	if err := store.CreateDeployment(ctx, &pending); err != nil {
		t.Fatal(err)
	}
	if err := store.CreateApproval(ctx, &nixdeploy.Approval{DeploymentID: pending.ID, Fingerprint: "f", Requester: "U1", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// Two runs: rk1-node1 succeeded in the older one only, rk1-node2
	// failed in both.
	old, recent := time.Unix(1_700_000_000, 0), time.Unix(1_700_086_400, 0)
	for _, run := range []struct {
		at    time.Time
		hosts map[string]string
	}{
		{old, map[string]string{"rk1-node1": "succeeded", "rk1-node2": "failed"}},
		{recent, map[string]string{"rk1-node1": "untouched", "rk1-node2": "failed", "rk1-node3": "succeeded"}},
	} {
		r := nixdeploy.ScheduleRun{Schedule: "nightly-rk1", Trigger: "cron", StartedAt: run.at}
		if err := store.StartScheduleRun(ctx, &r); err != nil {
			t.Fatal(err)
		}
		for h, o := range run.hosts {
			if err := store.RecordRunHost(ctx, r.ID, nixdeploy.ScheduleRunHost{Host: h, Outcome: nixdeploy.Outcome(o)}); err != nil {
				t.Fatal(err)
			}
		}
		store.Now = func() time.Time { return run.at.Add(time.Minute) }
		if err := store.FinishScheduleRun(ctx, r.ID, "failed", ""); err != nil {
			t.Fatal(err)
		}
	}

	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		`nixdeploy_deployments_total{action="switch",outcome="succeeded"} 1`,
		`nixdeploy_deployments_total{action="switch",outcome="failed"} 1`,
		`nixdeploy_deployments_total{action="install",outcome="rejected"} 1`,
		`nixdeploy_deployment_duration_seconds_count{action="switch"} 2`,
		`nixdeploy_deployment_duration_seconds_bucket{action="switch",le="60"} 2`,
		`nixdeploy_deployment_duration_seconds_bucket{action="switch",le="30"} 1`,
		`nixdeploy_pending_approvals 1`,
		`nixdeploy_schedule_last_success_timestamp_seconds{host="rk1-node1",schedule="nightly-rk1"} 1.70000006e+09`,
		`nixdeploy_schedule_last_success_timestamp_seconds{host="rk1-node3",schedule="nightly-rk1"} 1.70008646e+09`,
		`# TYPE nixdeploy_deployments_total counter`,
		`# TYPE nixdeploy_deployment_duration_seconds histogram`,
		`go_goroutines`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(text, `host="rk1-node2"`) || strings.Contains(text, `duration_seconds_count{action="install"}`) {
		t.Errorf("a host that never succeeded, or a deployment that never ran, shows up:\n%s", text)
	}
	if resp.Header.Get("Content-Type") == "" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("content type %q", resp.Header.Get("Content-Type"))
	}
}
