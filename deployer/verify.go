package deployer

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nixdeploy/nixdeploy"
)

// ErrVerify is a deployment whose commands succeeded but whose result is
// wrong: a degraded system, or /run/current-system not as the action
// implies. Exit codes alone are never trusted (deploy-rs #214).
var ErrVerify = nixdeploy.ErrVerify

// VerifyError says what verification found.
type VerifyError struct {
	Host string
	// State is what systemctl is-system-running printed.
	State string
	// FailedUnits lists systemctl --failed, when the system is degraded.
	FailedUnits   []string
	Before, After string
	Problems      []string
}

func (e *VerifyError) Error() string {
	return strings.Join(e.Problems, "; ")
}

// Is makes errors.Is(err, ErrVerify) work.
func (e *VerifyError) Is(target error) bool { return target == ErrVerify }

// verify reads /run/current-system and the systemd state on the target and
// checks them against the plan's expectation. Choices: for switch and test
// an unchanged system is a warning, not a failure (rebuilding an unchanged
// flake yields the same path and the deployer cannot tell whether the flake
// changed); rollback must change it; boot and dry-activate must not.
func (h *hostRun) verify(ctx context.Context) error {
	name := h.host.Name
	path := h.d.opts.CurrentSystemPath
	run := func(argv ...string) (string, error) {
		var buf capBuffer
		err := h.command(ctx, Step{Name: "verify", Where: WhereTarget, Argv: argv}, &buf)
		return buf.String(), err
	}
	out, err := run("readlink", path)
	if err != nil {
		return fmt.Errorf("read %s on %s: %w", path, name, err)
	}
	h.after = strings.TrimSpace(out)
	ve := &VerifyError{Host: name, Before: h.before, After: h.after}
	if h.after == "" {
		ve.Problems = append(ve.Problems, fmt.Sprintf("%s has no %s", name, path))
	}

	out, err = run("systemctl", "is-system-running", "--wait")
	var ee *ExitError
	if err != nil && !errors.As(err, &ee) {
		return fmt.Errorf("ask systemd on %s: %w", name, err)
	}
	ve.State = firstLine(out)
	if ve.State != "running" {
		if ve.State == "degraded" {
			out, err := run("systemctl", "--failed", "--no-legend", "--plain")
			if err != nil {
				return fmt.Errorf("list failed units on %s: %w", name, err)
			}
			for _, l := range strings.Split(out, "\n") {
				if f := strings.Fields(l); len(f) > 0 {
					ve.FailedUnits = append(ve.FailedUnits, f[0])
				}
			}
		}
		p := fmt.Sprintf("%s is %s after %s", name, orUnknown(ve.State), h.plan.Action)
		if len(ve.FailedUnits) > 0 {
			p += "; failed units: " + strings.Join(ve.FailedUnits, ", ")
		}
		ve.Problems = append(ve.Problems, p)
	}

	changed := h.before != h.after
	switch h.plan.Expect {
	case ExpectChange:
		if !changed {
			ve.Problems = append(ve.Problems, fmt.Sprintf("%s did not change the running system of %s (still %s)", h.plan.Action, name, h.after))
		}
	case ExpectSame:
		if changed {
			ve.Problems = append(ve.Problems, fmt.Sprintf("%s changed the running system of %s from %s to %s, which it must not do", h.plan.Action, name, h.before, h.after))
		}
	case ExpectChangeOrWarn:
		if !changed && h.after != "" {
			w := fmt.Sprintf("system unchanged: %s still runs %s", name, h.after)
			h.warnings = append(h.warnings, w)
			h.em.event(name, "verify", "warning: %s", w)
		}
	}
	if len(ve.Problems) > 0 {
		return ve
	}
	h.em.event(name, "verify", "%s is running %s", name, h.after)
	return nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(l)
}

func orUnknown(s string) string {
	if s == "" {
		return "in an unknown state"
	}
	return s
}
