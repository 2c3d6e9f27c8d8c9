package deployer_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/deployer"
	"github.com/nixdeploy/nixdeploy/internal/testtool"
)

// TestSweep: at start (and daily) the stale run directories on the runner
// go, each reported with whether it still held keys; young ones, ones with
// a live supervisor, and directories that are not the deployer's stay. A
// step of unknown end whose status is there is settled, which frees its
// host for other deployments.
func TestSweep(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{})
	tmp := e.lab.TmpDir()
	old := time.Now().Add(-2 * time.Hour)
	mk := func(dir string, files map[string]string, age time.Time) string {
		t.Helper()
		d := filepath.Join(tmp, dir)
		for name, text := range files {
			p := filepath.Join(d, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if !age.IsZero() {
			filepath.Walk(d, func(p string, _ os.FileInfo, _ error) error { return os.Chtimes(p, age, age) })
			os.Chtimes(d, age, age)
		}
		return d
	}
	keyed := mk("tmp.keyed", map[string]string{"known_hosts": "x", "extra-files/etc/ssh/ssh_host_ed25519_key": "secret", "disk.key": "pw"}, old)
	ended := mk("tmp.ended", map[string]string{"known_hosts": "x", "nixos-rebuild.out": "a\n", "nixos-rebuild.err": "", "nixos-rebuild.pid": "1", "nixos-rebuild.pgid": "2", "nixos-rebuild.status": "3\n"}, old)
	young := mk("tmp.young", map[string]string{"known_hosts": "x", "extra-files/etc/ssh/ssh_host_ed25519_key": "secret"}, time.Time{})
	foreign := mk("tmp.foreign", map[string]string{"known_hosts": "x", "notes.txt": "mine"}, old)
	live := mk("tmp.live", map[string]string{"known_hosts": "x", "nixos-anywhere.pid": strconv.Itoa(os.Getpid())}, old)
	other := mk("other", map[string]string{"known_hosts": "x"}, old)

	ctx := t.Context()
	dep := &nixdeploy.Deployment{Hosts: []string{"node1"}, Action: nixdeploy.ActionSwitch, Requester: "test", Source: nixdeploy.SourceCLI}
	if err := e.db.CreateDeployment(ctx, dep); err != nil {
		t.Fatal(err)
	}
	rs := &nixdeploy.RemoteStep{DeploymentID: dep.ID, Host: "node1", Step: "nixos-rebuild", Runner: e.cfg.Runner.Address,
		Dir: ended, Name: "nixos-rebuild", StartedAt: old, Timeout: time.Hour}
	if err := e.db.StartRemoteStep(ctx, rs); err != nil {
		t.Fatal(err)
	}
	if err := e.db.EndRemoteStep(ctx, rs.ID, nixdeploy.RemoteUnknown, -1); err != nil {
		t.Fatal(err)
	}
	if err := e.db.ClaimHosts(ctx, dep.ID+1, []string{"node1"}); !errors.Is(err, nixdeploy.ErrHostBusy) {
		t.Fatalf("claim beside a step of unknown end: %v, want busy", err)
	}

	swept, err := e.d.Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []deployer.SweptDir{{Dir: ended, Keys: false}, {Dir: keyed, Keys: true}}
	slices.SortFunc(swept, func(a, b deployer.SweptDir) int { return cmpString(a.Dir, b.Dir) })
	if !slices.Equal(swept, want) {
		t.Fatalf("swept %+v, want %+v", swept, want)
	}
	for _, d := range []string{keyed, ended} {
		if dirExists(d) {
			t.Errorf("%s is left", d)
		}
	}
	for _, d := range []string{young, foreign, live, other} {
		if !dirExists(d) {
			t.Errorf("%s was removed", d)
		}
	}
	steps, err := e.db.RemoteSteps(ctx, dep.ID, nixdeploy.RemoteEnded)
	if err != nil || len(steps) != 1 || steps[0].ExitCode != 3 {
		t.Fatalf("settled steps %+v, %v; want the one of unknown end, ended with status 3", steps, err)
	}
	if err := e.db.ClaimHosts(ctx, dep.ID+1, []string{"node1"}); err != nil {
		t.Errorf("claim once the step is known to have ended: %v", err)
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TestScriptsPassShellcheck: the scripts the deployer sends to the runner
// are POSIX sh.
func TestScriptsPassShellcheck(t *testing.T) {
	bin, err := exec.LookPath("shellcheck")
	if err != nil {
		testtool.Missing(t, "shellcheck is not installed")
	}
	for name, script := range map[string]string{"supervisor": deployer.SupervisorScript, "sweep": deployer.SweepScript} {
		p := filepath.Join(t.TempDir(), name+".sh")
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "-s", "sh", p).CombinedOutput(); err != nil {
			t.Errorf("shellcheck %s: %v\n%s", name, err, out)
		}
	}
}
