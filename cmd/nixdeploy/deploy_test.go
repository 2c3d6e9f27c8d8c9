package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/internal/sshlab"
)

// TestDeploy drives `nixdeploy deploy` against the sshd lab: a switch
// streams its lines and exits 0; a failing step exits non-zero naming the
// step; an install asks for the host name and does nothing without it;
// --yes works only together with the wipe acknowledgement.
func TestDeploy(t *testing.T) {
	lab := sshlab.New(t, sshlab.Options{Hosts: []string{"node1", "node2"}})
	lab.Config("")
	dbPath := filepath.Join(t.TempDir(), "nixdeploy.db")
	t.Setenv("NIXDEPLOY_DB", dbPath)
	t.Setenv("NIXDEPLOY_CONFIG", lab.ConfigPath)
	t.Setenv("NIXDEPLOY_AGE_IDENTITY", "")
	key, err := os.ReadFile(lab.ClientKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NIXDEPLOY_SSH_KEY", string(key))

	deploy := func(stdin string, args ...string) (code int, stdout, stderr string) {
		t.Helper()
		var out, errb bytes.Buffer
		err := run(t.Context(), append([]string{"deploy"}, args...), strings.NewReader(stdin), &out, &errb)
		code = exitCode(err, &errb)
		return code, out.String(), errb.String()
	}
	lastState := func() nixdeploy.State {
		t.Helper()
		store, _, err := db.Open(context.Background(), dbPath)
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		deps, err := store.Deployments(t.Context(), "", 1)
		if err != nil || len(deps) == 0 {
			t.Fatalf("no deployment stored: %v", err)
		}
		return deps[0].State
	}

	t.Run("switch", func(t *testing.T) {
		code, out, errs := deploy("", "node1")
		if code != 0 {
			t.Fatalf("exit %d\n%s\n%s", code, out, errs)
		}
		for _, want := range []string{"[node1 nixos-rebuild] activating the configuration...", "[node1 verify] -- node1 is running ", "succeeded: node1"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "succeeded: succeeded:") {
			t.Errorf("the summary repeats itself:\n%s", out)
		}
		if s := lastState(); s != nixdeploy.StateSucceeded {
			t.Errorf("stored state %s", s)
		}
	})

	t.Run("failure names the step", func(t *testing.T) {
		lab.Set("nixos-rebuild.node2.exit", "4")
		defer os.Remove(filepath.Join(lab.ControlDir, "nixos-rebuild.node2.exit"))
		code, out, errs := deploy("", "--action", "test", "@lab")
		if code == 0 || !strings.Contains(errs, "failed at step nixos-rebuild on node2") || !strings.Contains(errs, "exited with status 4") {
			t.Fatalf("exit %d, stderr %q", code, errs)
		}
		if !strings.Contains(out, "[node1 verify]") {
			t.Errorf("node1 did not run first:\n%s", out)
		}
		if s := lastState(); s != nixdeploy.StateFailed {
			t.Errorf("stored state %s", s)
		}
	})

	t.Run("install not confirmed", func(t *testing.T) {
		calls := len(lab.Calls())
		code, _, errs := deploy("node2\n", "--action", "install", "node1")
		if code != 1 || !strings.Contains(errs, "Type node1 to confirm") || !strings.Contains(errs, "not confirmed; nothing was done") {
			t.Fatalf("exit %d, stderr %q", code, errs)
		}
		if len(lab.Calls()) != calls {
			t.Errorf("stubs ran: %q", lab.Calls()[calls:])
		}
	})

	t.Run("yes needs the acknowledgement", func(t *testing.T) {
		code, _, errs := deploy("", "--action", "install", "--yes", "node1")
		if code != 2 || !strings.Contains(errs, "go together") {
			t.Fatalf("exit %d, stderr %q", code, errs)
		}
		code, _, errs = deploy("", "--yes", "--i-understand-this-wipes-disks", "node1")
		if code != 2 || !strings.Contains(errs, "only for install") {
			t.Fatalf("exit %d, stderr %q", code, errs)
		}
	})

	t.Run("install confirmed", func(t *testing.T) {
		code, out, errs := deploy("node1\n", "--action", "install", "node1")
		if code != 0 {
			t.Fatalf("exit %d\n%s\n%s", code, out, errs)
		}
		if !strings.Contains(out, "[node1 nixos-anywhere] -- phase: Installing NixOS") {
			t.Errorf("no install phases:\n%s", out)
		}
	})

	t.Run("install with yes from a script", func(t *testing.T) {
		code, out, errs := deploy("", "--action", "install", "--yes", "--i-understand-this-wipes-disks", "node2")
		if code != 0 {
			t.Fatalf("exit %d\n%s\n%s", code, out, errs)
		}
	})

	t.Run("unknown host", func(t *testing.T) {
		code, _, errs := deploy("", "node9")
		if code != 1 || !strings.Contains(errs, `unknown host: "node9"`) {
			t.Fatalf("exit %d, stderr %q", code, errs)
		}
	})

	for _, c := range lab.Calls() {
		if strings.HasPrefix(c, "BAD ") {
			t.Errorf("stub rejected its input: %s", c)
		}
	}
}
