package main

import (
	"bytes"
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
