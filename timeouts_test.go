package nixdeploy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// TestTimeoutsOutage: [timeouts] outage defaults to DefaultOutage, takes a
// duration, and refuses a negative one.
func TestTimeoutsOutage(t *testing.T) {
	cfg, err := nixdeploy.ParseConfig("f.toml", []byte(validConfig))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Timeouts.Outage.Duration != nixdeploy.DefaultOutage {
		t.Errorf("default outage %s", cfg.Timeouts.Outage)
	}
	cfg, err = nixdeploy.ParseConfig("f.toml", []byte(validConfig+"[timeouts]\noutage = \"90s\"\n"))
	if err != nil || cfg.Timeouts.Outage.Duration != 90*time.Second {
		t.Fatalf("outage %v, %v", cfg, err)
	}
	_, err = nixdeploy.ParseConfig("f.toml", []byte(validConfig+"[timeouts]\noutage = \"-1m\"\n"))
	if err == nil || !strings.Contains(err.Error(), "timeouts.outage: must be positive") {
		t.Fatalf("err = %v, want the negative outage refused", err)
	}
}
