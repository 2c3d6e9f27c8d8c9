package ops

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// probeTimeout bounds one live check of /readyz.
const probeTimeout = 3 * time.Second

// Health answers /healthz and /readyz. Liveness says only that the process
// serves HTTP, so a slow database or Slack never gets the machine restarted
// in a loop; readiness says whether every named check passes: a startup
// step marked Ready (Slack's auth.test, the schedules loaded) or a live
// probe run on each request (the database ping).
type Health struct {
	mu       sync.Mutex
	names    []string
	ready    map[string]bool
	probes   map[string]func(context.Context) error
	stopping bool
}

// NewHealth returns a Health whose readiness needs every named check.
func NewHealth(checks ...string) *Health {
	return &Health{names: checks, ready: map[string]bool{}, probes: map[string]func(context.Context) error{}}
}

// Ready marks the startup step name as done.
func (h *Health) Ready(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ready[name] = true
}

// Probe makes name a live check: fn runs on every /readyz request.
func (h *Health) Probe(name string, fn func(context.Context) error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.probes[name] = fn
}

// Stopping makes /readyz fail from now on: the process is shutting down.
func (h *Health) Stopping() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopping = true
}

// Livez serves /healthz.
func (h *Health) Livez(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok\n")
}

// Readyz serves /readyz: 200 and one "name: ok" line per check when all
// pass, else 503 saying which do not.
func (h *Health) Readyz(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	names := append([]string(nil), h.names...)
	ready := make(map[string]bool, len(h.ready))
	for k, v := range h.ready {
		ready[k] = v
	}
	probes := make(map[string]func(context.Context) error, len(h.probes))
	for k, v := range h.probes {
		probes[k] = v
	}
	stopping := h.stopping
	h.mu.Unlock()

	var b strings.Builder
	ok := !stopping
	if stopping {
		b.WriteString("nixdeploy is shutting down\n")
	}
	for _, n := range names {
		status := "ok"
		if fn := probes[n]; fn != nil {
			ctx, cancel := context.WithTimeout(r.Context(), probeTimeout)
			if err := fn(ctx); err != nil {
				// The check's name says what failed; the error text may
				// hold paths, so it stays in the log, not the answer.
				status = "failing"
			}
			cancel()
		} else if !ready[n] {
			status = "not ready yet"
		}
		if status != "ok" {
			ok = false
		}
		fmt.Fprintf(&b, "%s: %s\n", n, status)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	io.WriteString(w, b.String())
}
