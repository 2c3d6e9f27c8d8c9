package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy/internal/sshlab"
)

// TestStatusCommand prints the board of the lab as a plain aligned table:
// node1 in sync, node2 drifted with a reboot pending, node3 unreachable.
func TestStatusCommand(t *testing.T) {
	lab := sshlab.New(t, sshlab.Options{Hosts: []string{"node1", "node2", "node3"}})
	lab.Config("")
	t.Setenv("NIXDEPLOY_DB", filepath.Join(t.TempDir(), "nixdeploy.db"))
	t.Setenv("NIXDEPLOY_CONFIG", lab.ConfigPath)
	t.Setenv("NIXDEPLOY_AGE_IDENTITY", "")
	key, err := os.ReadFile(lab.ClientKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NIXDEPLOY_SSH_KEY", string(key))
	lab.SetExpected("node1", lab.CurrentSystem("node1"))
	lab.SetBooted("node2", lab.Dir+"/store/nixos-system-node2-older")
	lab.Target("node3").Kill()

	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"status"}, strings.NewReader(""), &out, &errb); err != nil {
		t.Fatalf("status: %v\n%s", err, errb.String())
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("want a header, 3 rows and a headline:\n%s", out.String())
	}
	if !strings.HasPrefix(lines[0], "host   running") || !strings.Contains(lines[0], "  drift  ") {
		t.Errorf("header %q", lines[0])
	}
	// Columns line up: each row's running system starts where the header's does.
	col := strings.Index(lines[0], "running")
	for _, l := range lines[1:4] {
		if len(l) <= col || l[col-2:col] != "  " || l[col] == ' ' {
			t.Errorf("row not aligned at column %d: %q", col, l)
		}
	}
	for host, want := range map[string][]string{
		"node1": {"  no  ", "never", "free"},
		"node2": {"nixos-system-node2-older (reboot pending)", "  yes  "},
		"node3": {"unknown: node3 (" + lab.Target("node3").Addr + ") is unreachable: connection refused"},
	} {
		var row string
		for _, l := range lines {
			if strings.HasPrefix(l, host+" ") {
				row = l
			}
		}
		for _, w := range want {
			if !strings.Contains(row, w) {
				t.Errorf("%s row lacks %q:\n%s", host, w, row)
			}
		}
	}
	if lines[4] != "Drift board: 1 drifted, 1 unknown, 1 reboot pending of 3 hosts (flake at 0123456789ab)" {
		t.Errorf("headline %q", lines[4])
	}

	// One host by name.
	out.Reset()
	if err := run(t.Context(), []string{"status", "node1"}, strings.NewReader(""), &out, &errb); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n != 3 || !strings.Contains(out.String(), "Drift board: node1 runs the expected system") {
		t.Errorf("status node1:\n%s", out.String())
	}
}
