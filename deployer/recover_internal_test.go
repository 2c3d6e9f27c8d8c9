package deployer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/nixdeploy/nixdeploy"
)

// The run's budget is one reset per host, whoever asks again.
func TestOneResetPerHostPerRun(t *testing.T) {
	var r resets
	if !r.take("rk1-node3") {
		t.Fatal("the first reset was refused")
	}
	if r.take("rk1-node3") {
		t.Error("a second reset of the same host in one run was allowed")
	}
	if !r.take("rk1-node2") {
		t.Error("another host's reset was refused")
	}
}

// Only a host that did not answer is reset: one that answered wrongly is
// not hung.
func TestUnreachableKinds(t *testing.T) {
	refused := fmt.Errorf("connect to rk1-node3 (192.0.2.3:22): %w", &net.OpError{Op: "dial", Err: errors.New("connection refused")})
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"refused", refused, true},
		{"lost", fmt.Errorf("%w: connection to rk1-node3 closed", nixdeploy.ErrConnectionLost), true},
		{"timeout", fmt.Errorf("%w after 15m: %v", nixdeploy.ErrStepTimeout, context.DeadlineExceeded), true},
		{"handshake", errors.New("connect to rk1-node3 (192.0.2.3:22): no SSH handshake within 10s"), true},
		{"verification", &VerifyError{Host: "rk1-node3", Problems: []string{"degraded"}}, false},
		{"exit status", fmt.Errorf("read /run/current-system on rk1-node3: %w", &ExitError{Code: 1}), false},
		{"host key", &HostKeyError{Host: "rk1-node3"}, false},
		{"key refused", fmt.Errorf("%w: refused", nixdeploy.ErrAuth), false},
		{"cancelled", fmt.Errorf("cancelled: %w", nixdeploy.ErrCancelled), false},
		{"shutdown", fmt.Errorf("cancelled: %w", nixdeploy.ErrShutdown), false},
	} {
		if got := unreachable(c.err); got != c.want {
			t.Errorf("%s: unreachable(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
