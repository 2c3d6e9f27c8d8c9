package deployer_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/runs"
)

// An approved install runs only the plan approved: with another
// fingerprint the deployer stops at the step that wipes the disk and never
// calls nixos-anywhere; with the plan's own fingerprint it installs.
func TestInstallRunsOnlyTheApprovedPlan(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{})
	dep := &nixdeploy.Deployment{Hosts: []string{"node1"}, Action: nixdeploy.ActionInstall, Requester: "test",
		Source: nixdeploy.SourceCLI, Fingerprint: "the fingerprint of some other plan"}
	rep, err := runs.New(e.db, e.d).Run(t.Context(), dep, e.sink)
	if !errors.Is(err, nixdeploy.ErrPlanChanged) {
		t.Fatalf("install with another plan's approval: err = %v, want ErrPlanChanged", err)
	}
	if rep == nil || rep.Hosts[0].Step != "nixos-anywhere" {
		t.Errorf("report = %+v, want a failure at nixos-anywhere", rep)
	}
	if calls := e.lab.CallsTo("nixos-anywhere"); len(calls) != 0 {
		t.Fatalf("nixos-anywhere ran with an unapproved plan: %q", calls)
	}
	if !strings.Contains(e.sink.text(), "nixos-anywhere not run") {
		t.Errorf("the log does not say the wipe was refused:\n%s", e.sink.text())
	}

	approved := nixdeploy.Deployment{Hosts: []string{"node1"}, Action: nixdeploy.ActionInstall, Requester: "test", Source: nixdeploy.SourceCLI}
	fp, err := e.d.Fingerprint(approved)
	if err != nil {
		t.Fatal(err)
	}
	approved.Fingerprint = fp
	if _, err := runs.New(e.db, e.d).Run(t.Context(), &approved, e.sink); err != nil {
		t.Fatalf("install with its own plan's approval: %v\n%s", err, e.sink.text())
	}
	if calls := e.lab.CallsTo("nixos-anywhere"); len(calls) != 1 {
		t.Errorf("nixos-anywhere calls = %q, want one", calls)
	}
}
