package nixdeploy_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	toml "github.com/pelletier/go-toml/v2"
	yaml "go.yaml.in/yaml/v3"
)

// TestFlyConfig checks the settings that keep the bot alive on Fly.io: one
// always-on machine (cron must fire; Socket Mode gets no traffic to wake a
// stopped machine), a volume for SQLite and a health check.
func TestFlyConfig(t *testing.T) {
	var fly struct {
		KillSignal  string            `toml:"kill_signal"`
		KillTimeout int               `toml:"kill_timeout"`
		Env         map[string]string `toml:"env"`
		Mounts      []struct {
			Source      string `toml:"source"`
			Destination string `toml:"destination"`
		} `toml:"mounts"`
		HTTPService struct {
			InternalPort       int    `toml:"internal_port"`
			AutoStopMachines   string `toml:"auto_stop_machines"`
			AutoStartMachines  *bool  `toml:"auto_start_machines"`
			MinMachinesRunning int    `toml:"min_machines_running"`
			Checks             []struct {
				Path string `toml:"path"`
			} `toml:"checks"`
		} `toml:"http_service"`
	}
	data, err := os.ReadFile("fly.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := toml.Unmarshal(data, &fly); err != nil {
		t.Fatalf("fly.toml: %v", err)
	}
	hs := fly.HTTPService
	if hs.AutoStopMachines != "off" || hs.AutoStartMachines == nil || *hs.AutoStartMachines || hs.MinMachinesRunning != 1 {
		t.Errorf("http_service must never stop the machine: %+v", hs)
	}
	// serve's default --shutdown-grace is 2m; Fly's default 5 s would kill
	// running deployments before they are even marked interrupted.
	if fly.KillSignal != "SIGTERM" || fly.KillTimeout < 150 || fly.KillTimeout > 300 {
		t.Errorf("kill_signal %q, kill_timeout %d: want SIGTERM and room for the 2m shutdown grace (at most 300 s)", fly.KillSignal, fly.KillTimeout)
	}
	if len(fly.Mounts) != 1 || fly.Mounts[0].Destination != "/data" {
		t.Errorf("mounts = %+v, want one on /data", fly.Mounts)
	}
	if len(hs.Checks) == 0 || hs.Checks[0].Path != "/healthz" {
		t.Errorf("health checks = %+v, want /healthz", hs.Checks)
	}
	if !strings.HasPrefix(fly.Env["NIXDEPLOY_DB"], "/data/") {
		t.Errorf("NIXDEPLOY_DB = %q, want it on the volume", fly.Env["NIXDEPLOY_DB"])
	}
	for k := range fly.Env {
		if regexp.MustCompile(`(?i)token|secret|key`).MatchString(k) {
			t.Errorf("[env] holds %s; secrets go in fly secrets", k)
		}
	}
	docker, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	port := regexp.MustCompile(`EXPOSE (\d+)`).FindSubmatch(docker)
	if port == nil || string(port[1]) != "8080" || hs.InternalPort != 8080 {
		t.Errorf("internal_port %d and Dockerfile EXPOSE %s disagree", hs.InternalPort, port)
	}
	for _, want := range []string{"RUN ./scripts/build", "USER nixdeploy", "NIXDEPLOY_DB=/data/"} {
		if !strings.Contains(string(docker), want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}

func TestSlackManifest(t *testing.T) {
	var m struct {
		Features struct {
			SlashCommands []struct {
				Command string `yaml:"command"`
				URL     string `yaml:"url"`
			} `yaml:"slash_commands"`
		} `yaml:"features"`
		OAuth struct {
			Scopes struct {
				Bot []string `yaml:"bot"`
			} `yaml:"scopes"`
		} `yaml:"oauth_config"`
		Settings struct {
			Events struct {
				RequestURL string   `yaml:"request_url"`
				BotEvents  []string `yaml:"bot_events"`
			} `yaml:"event_subscriptions"`
			SocketMode *bool `yaml:"socket_mode_enabled"`
		} `yaml:"settings"`
	}
	data, err := os.ReadFile("slack-app-manifest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	if len(m.Features.SlashCommands) != 1 || m.Features.SlashCommands[0].Command != "/nixdeploy" ||
		!strings.HasSuffix(m.Features.SlashCommands[0].URL, "/slack/commands") {
		t.Errorf("slash commands = %+v", m.Features.SlashCommands)
	}
	want := []string{"chat:write", "commands", "files:write", "reactions:read", "reactions:write"}
	got := slices.Sorted(slices.Values(m.OAuth.Scopes.Bot))
	if !slices.Equal(got, want) {
		t.Errorf("bot scopes = %v, want exactly %v", got, want)
	}
	if !slices.Equal(slices.Sorted(slices.Values(m.Settings.Events.BotEvents)), []string{"reaction_added", "reaction_removed"}) {
		t.Errorf("bot events = %v", m.Settings.Events.BotEvents)
	}
	if !strings.HasSuffix(m.Settings.Events.RequestURL, "/slack/events") || m.Settings.SocketMode == nil || *m.Settings.SocketMode {
		t.Errorf("HTTP mode settings wrong: %+v", m.Settings)
	}
	if !strings.Contains(string(data), "connections:write") {
		t.Error("manifest does not document the Socket Mode switch")
	}
}
