package nixdeploy_test

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// A host gets the checks of every table whose selector matches it, once
// each, with its table's timeout and the longest settle time.
func TestChecksFor(t *testing.T) {
	cfg, err := nixdeploy.ParseConfig("fleet.toml", []byte(validConfig+`
[[health_checks]]
hosts = ["@rk1"]
units = ["k3s.service"]
commands = ["curl -fsS localhost:9100/metrics"]
settle = "20s"

[[health_checks]]
hosts = ["rk1-node2", "ganon"]
units = ["k3s.service", "sshd.service"]
settle = "5s"
timeout = "2m"
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Guard.Window.Duration != nixdeploy.DefaultGuardWindow {
		t.Errorf("guard window = %s, want the default %s", cfg.Guard.Window, nixdeploy.DefaultGuardWindow)
	}
	got := cfg.ChecksFor("rk1-node2")
	want := nixdeploy.HostChecks{Settle: 20 * time.Second, Checks: []nixdeploy.Check{
		{Unit: "k3s.service", Timeout: nixdeploy.DefaultCheckTimeout},
		{Command: "curl -fsS localhost:9100/metrics", Timeout: nixdeploy.DefaultCheckTimeout},
		{Unit: "sshd.service", Timeout: 2 * time.Minute},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rk1-node2: %+v, want %+v", got, want)
	}
	if got := cfg.ChecksFor("ganon"); got.Settle != 5*time.Second || len(got.Checks) != 2 {
		t.Errorf("ganon: %+v", got)
	}
	if got := cfg.ChecksFor("rk1-node1"); len(got.Checks) != 2 {
		t.Errorf("rk1-node1: %+v", got)
	}
}

// The TOML blocks of the guard's section in docs/operations.md are a
// config that validates.
func TestGuardDocsConfigValidates(t *testing.T) {
	doc, err := os.ReadFile("docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(doc), "## Canary nights and the rollback guard")
	if !ok {
		t.Fatal("docs/operations.md lacks the guard section")
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	blocks := regexp.MustCompile("(?s)```toml\n(.*?)```").FindAllStringSubmatch(sec, -1)
	if len(blocks) != 2 {
		t.Fatalf("%d toml blocks, want 2", len(blocks))
	}
	text := validConfig
	for _, b := range blocks {
		text += "\n" + b[1]
	}
	cfg, err := nixdeploy.ParseConfig("fleet.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Schedules[0].Canary != "rk1-node1" || len(cfg.ChecksFor("rk1-node1").Checks) != 3 {
		t.Errorf("schedules %+v, checks %+v", cfg.Schedules, cfg.ChecksFor("rk1-node1"))
	}
}
