package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/internal/bmcfake"
)

func TestBMCFingerprint(t *testing.T) {
	f := bmcfake.New(bmcfake.Options{User: "root", Password: "pw"})
	defer f.Close()
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"bmc", "fingerprint", f.Address()}, nil, &out, &errb); err != nil {
		t.Fatalf("run: %v\n%s", err, errb.String())
	}
	line := strings.TrimSpace(out.String())
	want := `cert_sha256 = "` + nixdeploy.FormatFingerprint(f.Fingerprint()) + `"`
	if line != want {
		t.Errorf("stdout %q, want %q", line, want)
	}
	// What it prints is what the config accepts.
	v := strings.Trim(strings.TrimPrefix(line, "cert_sha256 = "), `"`)
	if sum, err := nixdeploy.ParseFingerprint(v); err != nil || sum != f.Fingerprint() {
		t.Errorf("ParseFingerprint(%q) = %x, %v", v, sum, err)
	}
	if !strings.Contains(errb.String(), "Compare it out of band") {
		t.Errorf("stderr lacks the out-of-band warning:\n%s", errb.String())
	}
	if n := len(f.Requests()); n != 0 {
		t.Errorf("fingerprint sent %d HTTP requests", n)
	}
}

func TestBMCFingerprintUsage(t *testing.T) {
	for _, args := range [][]string{{"bmc"}, {"bmc", "fingerprint"}, {"bmc", "fingerprint", "a", "b"}, {"bmc", "frob", "a"}} {
		var out, errb bytes.Buffer
		err := run(t.Context(), args, nil, &out, &errb)
		if code := exitCode(err, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%v)", args, code, err)
		}
	}
}

func boardConfig(t *testing.T, f *bmcfake.BMC) *nixdeploy.Config {
	t.Helper()
	toml := `flake = "/f"
installer_flake = "/f/i"
[[hosts]]
name = "rk1-node3"
address = "192.0.2.13"
system = "aarch64-linux"
disk = "/dev/mmcblk0"
bmc = "turing-pi"
bmc_node = 3
[[bmcs]]
name = "turing-pi"
address = "` + f.Address() + `"
user = "root"
cert_sha256 = "` + nixdeploy.FormatFingerprint(f.Fingerprint()) + `"
`
	cfg, err := nixdeploy.ParseConfig(t.TempDir()+"/nixdeploy.toml", []byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestOpenBoards(t *testing.T) {
	f := bmcfake.New(bmcfake.Options{User: "root", Password: "pw-turing"})
	defer f.Close()
	cfg := boardConfig(t, f)
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))

	t.Setenv("NIXDEPLOY_BMC_PASSWORD_TURING_PI", "")
	d := &botDeps{boards: openBoards(cfg, logger)}
	if d.bmcBot() != nil {
		t.Fatal("boards wired without a password")
	}
	if !strings.Contains(logs.String(), "NIXDEPLOY_BMC_PASSWORD_TURING_PI is not set") {
		t.Errorf("the warning does not name the variable:\n%s", logs.String())
	}

	t.Setenv("NIXDEPLOY_BMC_PASSWORD_TURING_PI", "pw-turing")
	d = &botDeps{boards: openBoards(cfg, logger)}
	b := d.bmcBot()
	if b == nil {
		t.Fatal("boards not wired")
	}
	f.WriteUART(3, "boot\nAGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ\nlogin:\n")
	lines, err := b.UART(t.Context(), "rk1-node3", 10)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(lines, "\n")
	if strings.Contains(text, "AGE-SECRET-KEY-1QQ") || !strings.Contains(text, "login:") {
		t.Errorf("console text %q is not redacted like a log", text)
	}
	st, err := b.Power(t.Context(), "rk1-node3", nixdeploy.PowerOn)
	if err != nil || st != nixdeploy.PowerStateOn || !f.Power(3) {
		t.Errorf("power on: %s, %v; slot 3 on %v", st, err, f.Power(3))
	}
}
