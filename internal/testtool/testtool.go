// Package testtool is how tests find the external tools they drive (sshd,
// ssh-keygen, age, nix-instantiate, shellcheck). A missing tool skips the
// test on a developer's machine; with CI=true it fails, because .ci/run
// installs every tool and a skip there would hide a lost test.
package testtool

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Missing skips t with msg, or fails it when CI=true.
func Missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI must install it before go test)")
	}
	t.Skip(msg + "; skipping")
}

// Require returns the path of the tool name, or ends the test as Missing.
func Require(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name+" is not installed")
	}
	return p
}

// Run runs the tool name with stdin and returns its stdout, failing the
// test with its stderr when it exits non-zero.
func Run(t testing.TB, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), Require(t, name), args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, errb.String())
	}
	return out.Bytes()
}

// Shellcheck runs shellcheck -x on each of files, relative to dir, in a
// subtest of its own, failing it with shellcheck's report.
func Shellcheck(t *testing.T, dir string, files ...string) {
	t.Helper()
	bin := Require(t, "shellcheck")
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), bin, "-x", f)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("shellcheck -x %s: %v\n%s", f, err, out)
			}
		})
	}
}
