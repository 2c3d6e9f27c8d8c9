package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy/internal/testtool"
)

// runTool is the shared internal/testtool helper.
var runTool = testtool.Run

// runCLI runs nixdeploy in-process and returns its output and exit
// status as the binary would.
func runCLI(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(t.Context(), args, strings.NewReader(stdin), &out, &errb)
	code = exitCode(err, &errb)
	return out.String(), errb.String(), code
}

// TestKeysAgeCLIInterop: what age-recipient and age-identity print for a
// real ssh-keygen key works with the age CLI in both directions.
func TestKeysAgeCLIInterop(t *testing.T) {
	t.Setenv("NIXDEPLOY_AGE_IDENTITY", "")
	dir := t.TempDir()
	key := filepath.Join(dir, "host_key")
	runTool(t, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)

	out, errOut, code := runCLI(t, "", "keys", "age-recipient", key+".pub")
	if code != 0 {
		t.Fatalf("age-recipient: exit %d: %s", code, errOut)
	}
	recipient := strings.TrimSpace(out)
	out, errOut, code = runCLI(t, "", "keys", "age-identity", key)
	if code != 0 {
		t.Fatalf("age-identity: exit %d: %s", code, errOut)
	}
	idFile := filepath.Join(dir, "identity.txt")
	if err := os.WriteFile(idFile, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}

	secret := []byte("sealed for the host\n")
	ct := runTool(t, secret, "age", "-r", recipient)
	if pt := runTool(t, ct, "age", "-d", "-i", idFile); !bytes.Equal(pt, secret) {
		t.Errorf("age -d = %q, want %q", pt, secret)
	}
	if got := strings.TrimSpace(string(runTool(t, nil, "age-keygen", "-y", idFile))); got != recipient {
		t.Errorf("age-keygen -y = %s, age-recipient = %s", got, recipient)
	}

	// The same key sealed with the age CLI gives the same identity.
	bot := strings.TrimSpace(string(runTool(t, nil, "age-keygen")))
	botPub := strings.TrimSpace(string(runTool(t, []byte(bot), "age-keygen", "-y")))
	runTool(t, nil, "age", "-r", botPub, "-o", key+".age", key)
	t.Setenv("NIXDEPLOY_AGE_IDENTITY", bot)
	sealedOut, errOut, code := runCLI(t, "", "keys", "age-identity", key+".age")
	if code != 0 {
		t.Fatalf("age-identity on .age: exit %d: %s", code, errOut)
	}
	if sealedOut != out {
		t.Error("age-identity of the sealed key differs from the plaintext's")
	}
}

func TestKeysAgeIdentityPassphrase(t *testing.T) {
	key := filepath.Join(t.TempDir(), "host_key")
	runTool(t, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "hunter2", "-f", key)
	out, errOut, code := runCLI(t, "", "keys", "age-identity", key)
	if code != 1 || out != "" {
		t.Fatalf("exit %d, stdout %q; want 1 and nothing", code, out)
	}
	if !strings.Contains(errOut, "protected by a passphrase") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("stderr = %q, want one line about the passphrase", errOut)
	}
	body := strings.Split(string(mustRead(t, key)), "\n")[1]
	if strings.Contains(errOut, body[:20]) {
		t.Error("error quotes the key")
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKeysUsageErrors pins the exit status, which testscript cannot see:
// 2 and one line for a bad invocation, 0 for -h.
func TestKeysUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no subcommand", []string{"keys"}, 2, "nixdeploy: keys: no subcommand given\n"},
		{"unknown subcommand", []string{"keys", "frob"}, 2, "nixdeploy: keys: unknown subcommand \"frob\" (run nixdeploy keys -h for the list)\n"},
		{"unknown flag", []string{"keys", "init", "--bogus"}, 2, "nixdeploy: keys init: flag provided but not defined: -bogus\n"},
		{"extra argument", []string{"keys", "sops-config", "x"}, 2, "nixdeploy: keys sops-config: unexpected argument \"x\"\n"},
		{"age-identity without file", []string{"keys", "age-identity"}, 2, "nixdeploy: keys age-identity: want exactly one FILE\n"},
		{"seal without hosts", []string{"keys", "seal"}, 2, "nixdeploy: keys seal: name the hosts to seal (names, @tags or globs)\n"},
		{"bad recipient", []string{"keys", "seal", "--recipient", "nope", "ganon"}, 2, "nixdeploy: keys seal: invalid value \"nope\" for flag -recipient: not an age recipient\n"},
		{"bad user", []string{"keys", "secrets-template", "--user", "Bad User"}, 2, "nixdeploy: keys secrets-template: --user \"Bad User\" is not a valid user name\n"},
		{"help", []string{"keys", "-h"}, 0, ""},
		{"subcommand help", []string{"keys", "check", "-h"}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := runCLI(t, "", tt.args...)
			if code != tt.code || errOut != tt.want {
				t.Errorf("exit %d, stderr %q; want %d, %q", code, errOut, tt.code, tt.want)
			}
		})
	}
}

// TestSecretsTemplateWarning: piped into sops, secrets-template is quiet;
// into a file it warns, naming the command that should have been used.
func TestSecretsTemplateWarning(t *testing.T) {
	t.Setenv("NIXDEPLOY_AGE_IDENTITY", "")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "fleet.toml")
	os.WriteFile(cfg, []byte(`flake = "/srv/dots"
installer_flake = "/srv/dots/nixos-installer"
[secrets]
sops_config = "secrets/.sops.yaml"
file = "secrets/secrets.yaml"
[[hosts]]
name = "ganon"
address = "192.0.2.10"
system = "x86_64-linux"
disk = "/dev/nvme0n1"
`), 0o644)
	if _, errOut, code := runCLI(t, "", "keys", "init", "--config", cfg); code != 0 {
		t.Fatal(errOut)
	}
	template := func(out *os.File) string {
		var errb bytes.Buffer
		err := run(t.Context(), []string{"keys", "secrets-template", "--config", cfg}, strings.NewReader(""), out, &errb)
		if code := exitCode(err, &errb); code != 0 {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		return errb.String()
	}

	f, err := os.Create(filepath.Join(dir, "plain.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := template(f); !strings.Contains(got, "warning: the output contains secret keys and is going into a file: delete it, and pipe it into sops --config ") ||
		!strings.Contains(got, "encrypt --filename-override ") {
		t.Errorf("into a file: stderr %q, want a warning", got)
	}

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _, _ = bytes.NewBuffer(nil).ReadFrom(r) }()
	got := template(w)
	w.Close()
	<-done
	if got != "" {
		t.Errorf("into a pipe: stderr %q, want nothing", got)
	}
}
