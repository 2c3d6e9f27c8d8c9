package bmc

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/nixdeploy/nixdeploy"
)

// FleetOptions configure NewFleet.
type FleetOptions struct {
	// Getenv reads the boards' passwords; os.Getenv in production.
	Getenv func(string) string
	// Redact, when set, cleans a serial console buffer of secrets the way
	// deployment logs are cleaned; the board's own password is always
	// redacted, whatever Redact does.
	Redact func(string) string
	// Client holds the per-board client settings (timeouts); Board,
	// Address, User, Password and CertSHA256 come from the config.
	Client Options
}

// Fleet reaches hosts through the boards the fleet config puts them on:
// "power rk1-node3 reset" becomes a reset of slot 3 of board turingpi. It
// is what the bot's BMC interface calls.
type Fleet struct {
	cfg *nixdeploy.Config
	o   FleetOptions

	mu      sync.Mutex
	clients map[string]*Client
}

// NewFleet checks that every board of cfg has a password in the
// environment; a board without one is an error naming its variable.
func NewFleet(cfg *nixdeploy.Config, o FleetOptions) (*Fleet, error) {
	for _, b := range cfg.BMCs {
		if o.Getenv(b.PasswordEnv()) == "" {
			return nil, fmt.Errorf("bmc %s: %s is not set; the board's password comes from the environment only", b.Name, b.PasswordEnv())
		}
	}
	return &Fleet{cfg: cfg, o: o, clients: map[string]*Client{}}, nil
}

// slot finds host's board client and slot.
func (f *Fleet) slot(host string) (*Client, int, error) {
	h, ok := f.cfg.Host(host)
	if !ok {
		return nil, 0, fmt.Errorf("%w: %s", nixdeploy.ErrUnknownHost, host)
	}
	if h.BMC == "" {
		return nil, 0, fmt.Errorf("%w: %s has no bmc in the fleet config", nixdeploy.ErrInvalidInput, host)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.clients[h.BMC]; c != nil {
		return c, h.BMCNode, nil
	}
	b, ok := f.cfg.BMC(h.BMC)
	if !ok {
		return nil, 0, fmt.Errorf("%w: bmc %s of %s is not configured", nixdeploy.ErrInvalidInput, h.BMC, host)
	}
	pin, err := nixdeploy.ParseFingerprint(b.CertSHA256)
	if err != nil {
		return nil, 0, err
	}
	o := f.o.Client
	o.Board, o.Address, o.User, o.Password, o.CertSHA256 = b.Name, b.HostPort(), b.User, f.o.Getenv(b.PasswordEnv()), pin
	c, err := New(o)
	if err != nil {
		return nil, 0, err
	}
	f.clients[h.BMC] = c
	return c, h.BMCNode, nil
}

// Power applies op to host's slot and returns the slot's state afterwards.
func (f *Fleet) Power(ctx context.Context, host string, op nixdeploy.PowerOp) (nixdeploy.PowerState, error) {
	c, node, err := f.slot(host)
	if err != nil {
		return "", err
	}
	switch op {
	case nixdeploy.PowerOn, nixdeploy.PowerOff:
		err = c.SetPower(ctx, node, op == nixdeploy.PowerOn)
	case nixdeploy.PowerReset:
		err = c.Reset(ctx, node)
	case nixdeploy.PowerStatus:
	default:
		return "", fmt.Errorf("%w: power operation %q", nixdeploy.ErrInvalidInput, op)
	}
	if err != nil {
		return "", err
	}
	st, err := c.PowerStatus(ctx)
	if err != nil {
		return "", err
	}
	return st[node-1], nil
}

// PowerStates reads every board's slots, by host, for metrics.
func (f *Fleet) PowerStates(ctx context.Context) (map[string]nixdeploy.PowerState, error) {
	out := map[string]nixdeploy.PowerState{}
	boards := map[string][nixdeploy.BMCSlots]nixdeploy.PowerState{}
	for _, h := range f.cfg.Hosts {
		if h.BMC == "" {
			continue
		}
		st, ok := boards[h.BMC]
		if !ok {
			c, _, err := f.slot(h.Name)
			if err != nil {
				return out, err
			}
			if st, err = c.PowerStatus(ctx); err != nil {
				return out, err
			}
			boards[h.BMC] = st
		}
		out[h.Name] = st[h.BMCNode-1]
	}
	return out, nil
}

// UART returns the last n printable lines of host's serial console,
// redacted.
func (f *Fleet) UART(ctx context.Context, host string, n int) ([]string, error) {
	c, node, err := f.slot(host)
	if err != nil {
		return nil, err
	}
	raw, err := c.UART(ctx, node)
	if err != nil {
		return nil, err
	}
	// Printable first, then redacted: an escape sequence inside a
	// secret must not hide it from the redaction.
	text := strings.Join(ConsoleLines(raw, n), "\n")
	if p := c.o.Password; len(p) >= 4 {
		text = strings.ReplaceAll(text, p, "[REDACTED]")
	}
	if f.o.Redact != nil {
		text = f.o.Redact(text)
	}
	if text == "" {
		return nil, nil
	}
	return strings.Split(text, "\n"), nil
}

// Client returns the client of host's board and the host's slot, for
// calls the Fleet does not wrap (flash).
func (f *Fleet) Client(host string) (*Client, int, error) { return f.slot(host) }
