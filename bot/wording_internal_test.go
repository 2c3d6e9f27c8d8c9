package bot

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy"
)

// TestDeployErrorForUsersConnection: a step that ended without an exit
// status (a refused connection) says what failed, not "exit code -1".
func TestDeployErrorForUsersConnection(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, dialErr := net.Dial("tcp", addr)
	if dialErr == nil {
		t.Skip("the closed port accepted a connection")
	}
	err = deployErrorForUsers(fmt.Errorf("connect: dial %s: %w", addr, dialErr), Result{Step: "connect", Host: "ganon", ExitCode: -1})
	got := UserMessage(err)
	want := "step connect on ganon could not reach " + addr + ": connection refused; check that it is up"
	if !strings.Contains(got, want) || strings.Contains(got, "-1") {
		t.Errorf("message %q, want it to contain %q and no exit code", got, want)
	}
	err = deployErrorForUsers(fmt.Errorf("step upload: %w", errors.New("session closed")), Result{Step: "upload", Host: "ganon", ExitCode: -1})
	if got := UserMessage(err); got != "step upload on ganon ended without an exit status: session closed" {
		t.Errorf("message %q", got)
	}
}

// TestDeployErrorForUsersRemoteUnknown: a step lost past the outage limit
// (it also wraps ErrConnectionLost) tells people it may still be running
// on the runner, not just that a connection was lost (issue 14).
func TestDeployErrorForUsersRemoteUnknown(t *testing.T) {
	err := fmt.Errorf("%w; the runner stayed unreachable for 10m0s, and nixos-rebuild may still be running there (%w)", nixdeploy.ErrConnectionLost, nixdeploy.ErrRemoteUnknown)
	got := UserMessage(deployErrorForUsers(err, Result{Step: "nixos-rebuild", Host: "rk1-node3", ExitCode: -1}))
	if !strings.Contains(got, "may still be running on the runner") || !strings.Contains(got, "nixos-rebuild on rk1-node3") {
		t.Errorf("message %q", got)
	}
}
