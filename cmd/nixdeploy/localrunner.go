package main

import (
	"fmt"
	"os/exec"
	"strings"

	"github.com/nixdeploy/nixdeploy"
)

// localRunnerTools are what a local runner runs itself: nixos-anywhere and
// nixos-rebuild, and nix under both.
var localRunnerTools = []string{"nix", "nixos-anywhere", "nixos-rebuild"}

// checkLocalRunner refuses runner = "local" when one of localRunnerTools
// is not on PATH, in one line naming what is missing: otherwise the first
// deployment would fail at its first step with "executable file not found"
// (issue 11, §7). lookPath is exec.LookPath outside tests.
func checkLocalRunner(cfg *nixdeploy.Config, lookPath func(string) (string, error)) error {
	if !cfg.Runner.IsLocal() {
		return nil
	}
	var missing []string
	for _, tool := range localRunnerTools {
		if _, err := lookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	verb := "are"
	if len(missing) == 1 {
		verb = "is"
	}
	return &exitError{code: 1, msg: fmt.Sprintf("runner = \"local\" needs %s on PATH, and %s %s not: install them on this machine, or set [runner] address to an SSH runner",
		strings.Join(localRunnerTools, ", "), strings.Join(missing, ", "), verb)}
}

// checkLocalRunnerOnPath is checkLocalRunner against this process's PATH.
func checkLocalRunnerOnPath(cfg *nixdeploy.Config) error {
	return checkLocalRunner(cfg, exec.LookPath)
}
