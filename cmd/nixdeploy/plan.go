package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/deployer"
)

const planUsage = `plan [--config FILE] [--action A] [--guard] [--json] HOST...

Prints what a deployment would do to each host, without connecting
anywhere: every step, where it runs (bot, runner, target) and its argv as
the remote shell receives it. <tmp> stands for the run directory that
mktemp -d creates on the runner, <flake> and <installer> for the flakes
at the revision resolved on the runner when the deployment starts (or
when an install is approved). --guard shows a switch or test with the
rollback guard, as schedules and /nixdeploy HOST --guard run it; <id>
stands for the deployment. --json prints the argv as arrays.`

// planJSON is one host's plan for --json.
type planJSON struct {
	Host   string     `json:"host"`
	Action string     `json:"action"`
	Steps  []stepJSON `json:"steps"`
	Notes  []string   `json:"notes,omitempty"`
}

type stepJSON struct {
	Name   string   `json:"name"`
	Where  string   `json:"where"`
	Argv   []string `json:"argv,omitempty"`
	Stdin  string   `json:"stdin,omitempty"`
	Always bool     `json:"always,omitempty"`
}

func cmdPlan(ctx context.Context, s stdio, args []string) error {
	fs := newFlags(s, "plan", planUsage)
	path := fs.String("config", defaultConfig(), "fleet config `file` (env NIXDEPLOY_CONFIG)")
	actionFlag := fs.String("action", string(nixdeploy.ActionSwitch), "the `action`: install, switch, boot, test, dry-activate or rollback")
	asJSON := fs.Bool("json", false, "print the plans as JSON, argv as arrays")
	guard := fs.Bool("guard", false, "plan a switch or test with the rollback guard")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageErrorf("plan: name at least one host")
	}
	action, err := nixdeploy.ParseAction(*actionFlag)
	if err != nil {
		return usageErrorf("plan: %v", err)
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	var plans []*deployer.Plan
	for _, h := range fs.Args() {
		p, err := deployer.PlanRun(cfg, h, action, *guard)
		if err != nil {
			return &exitError{code: 1, msg: "plan: " + err.Error()}
		}
		plans = append(plans, p)
	}
	if !*asJSON {
		for i, p := range plans {
			if i > 0 {
				fmt.Fprintln(s.out)
			}
			fmt.Fprint(s.out, p.String())
		}
		return nil
	}
	out := make([]planJSON, 0, len(plans))
	for _, p := range plans {
		pj := planJSON{Host: p.Host.Name, Action: string(p.Action), Notes: p.Notes}
		for _, st := range p.Steps {
			pj.Steps = append(pj.Steps, stepJSON{Name: st.Name, Where: string(st.Where), Argv: p.Argv(st), Stdin: string(st.Stdin), Always: st.Cleanup})
		}
		out = append(out, pj)
	}
	enc := json.NewEncoder(s.out)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(out)
}
