package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/internal/nixfleet"
	"github.com/nixdeploy/nixdeploy/keys"
)

// defaultConfig is used when --config is not given.
func defaultConfig() string {
	if p := os.Getenv("NIXDEPLOY_CONFIG"); p != "" {
		return p
	}
	return "nixdeploy.toml"
}

func cmdCheck(ctx context.Context, s stdio, args []string) error {
	fs := newFlags(s, "check", "check [--config FILE]\n\nValidates the fleet config and prints every problem, one per line.")
	path := fs.String("config", defaultConfig(), "fleet config `file` (env NIXDEPLOY_CONFIG)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("check: unexpected argument %q", fs.Arg(0))
	}
	cfg, err := nixdeploy.LoadConfig(*path)
	var ce *nixdeploy.ConfigError
	if errors.As(err, &ce) {
		for _, p := range ce.Problems {
			fmt.Fprintf(s.err, "%s: %s\n", *path, p)
		}
		return &exitError{code: 1, msg: fmt.Sprintf("%s: %d problem(s)", *path, len(ce.Problems))}
	}
	if err == nil {
		err = checkLocalRunnerOnPath(cfg)
	}
	if err != nil {
		return err
	}
	if probs := keys.ConfigProblems(cfg); len(probs) > 0 {
		for _, p := range probs {
			fmt.Fprintf(s.err, "%s: %s\n", *path, p)
		}
		return &exitError{code: 1, msg: fmt.Sprintf("%s: %s", *path, plural(len(probs), "problem"))}
	}
	// The nix tree must build what the config says: same disks, ports and
	// LUKS unlock. Compared only where this machine can see the tree.
	problems, note, err := nixfleet.Check(ctx, cfg)
	if err != nil {
		return &exitError{code: 1, msg: fmt.Sprintf("%s: %v", *path, err)}
	}
	for _, p := range problems {
		fmt.Fprintf(s.err, "%s: %s\n", *path, p)
	}
	if len(problems) > 0 {
		return &exitError{code: 1, msg: fmt.Sprintf("%s: %s with the nix tree", *path, plural(len(problems), "mismatch"))}
	}
	fmt.Fprintf(s.out, "%s: %s\n", *path, note)
	fmt.Fprintf(s.out, "%s: ok: %s, %s\n", *path, plural(len(cfg.Hosts), "host"), plural(len(cfg.Schedules), "schedule"))
	return nil
}

// loadConfig loads the config named by a --config flag value.
func loadConfig(path string) (*nixdeploy.Config, error) {
	cfg, err := nixdeploy.LoadConfig(path)
	var ce *nixdeploy.ConfigError
	if errors.As(err, &ce) {
		return nil, &exitError{code: 1, msg: ce.Error()}
	}
	return cfg, err
}
