package schedules_test

import (
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy/schedules"
)

// TestSummaryShowsRevision: each host's line says which commit it got.
func TestSummaryShowsRevision(t *testing.T) {
	s := schedules.Summary{Schedule: "nightly-rk1", Action: "switch", Outcome: schedules.OutcomeSucceeded, Hosts: []schedules.HostSummary{
		{Host: "rk1-node1", Outcome: schedules.OutcomeSucceeded, DeploymentID: 3, Revision: "5f3c9a1e7b2d4c6e8a0b1d3f5e7c9a2b4d6f8e01"},
		{Host: "rk1-node2", Outcome: schedules.OutcomeUntouched, Detail: "halted"},
	}}
	text := s.Text()
	if !strings.Contains(text, "✅ rk1-node1 0s deployment #3 at `5f3c9a1e7b2d`") {
		t.Errorf("summary:\n%s", text)
	}
}
