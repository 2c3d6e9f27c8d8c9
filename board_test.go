package nixdeploy_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

func TestBoardDigestIgnoresTimeOnly(t *testing.T) {
	row := func(at time.Time) nixdeploy.BoardRow {
		return nixdeploy.BoardRow{HostReading: nixdeploy.HostReading{Host: "a", Running: "/s1", Booted: "/s1", Expected: "/s1", Drift: nixdeploy.DriftNo, At: at}, LastID: 3, LastState: nixdeploy.StateSucceeded}
	}
	b1 := nixdeploy.Board{Rows: []nixdeploy.BoardRow{row(time.Unix(1, 0))}, At: time.Unix(1, 0)}
	b2 := nixdeploy.Board{Rows: []nixdeploy.BoardRow{row(time.Unix(99, 0))}, At: time.Unix(99, 0)}
	if b1.Digest() != b2.Digest() {
		t.Error("boards that differ only in the time of reading have different digests")
	}
	for name, edit := range map[string]func(*nixdeploy.BoardRow){
		"running":  func(r *nixdeploy.BoardRow) { r.Running = "/s2" },
		"booted":   func(r *nixdeploy.BoardRow) { r.Booted = "/s0"; r.RebootPending = true },
		"expected": func(r *nixdeploy.BoardRow) { r.Expected = "/s2"; r.Drift = nixdeploy.DriftYes },
		"why":      func(r *nixdeploy.BoardRow) { r.Drift, r.Why = nixdeploy.DriftUnknown, "gone" },
		"last":     func(r *nixdeploy.BoardRow) { r.LastID = 4 },
		"locks":    func(r *nixdeploy.BoardRow) { r.Locks = []string{"locked by @U until …"} },
	} {
		r := row(time.Unix(1, 0))
		edit(&r)
		if (nixdeploy.Board{Rows: []nixdeploy.BoardRow{r}}).Digest() == b1.Digest() {
			t.Errorf("a change of %s keeps the digest", name)
		}
	}
}

func TestShortSystem(t *testing.T) {
	for in, want := range map[string]string{
		"/nix/store/0a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p-nixos-system-rk1-node1-25.05.20250612.1c2a5e8": "0a1b2c3",
		"/tmp/lab/store/nixos-system-node1-initial":                                                 "nixos-system-node1-initial",
		"": "-",
	} {
		if got := nixdeploy.ShortSystem(in); got != want {
			t.Errorf("ShortSystem(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAlignColumns(t *testing.T) {
	got := nixdeploy.AlignColumns([][]string{{"host", "drift"}, {"rk1-node1", "no"}, {"a", "unknown: é"}})
	want := "host       drift\nrk1-node1  no\na          unknown: é\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// action = "report" is a schedule of its own kind; always belongs to it.
func TestReportScheduleConfig(t *testing.T) {
	if _, err := nixdeploy.ParseConfig("f.toml", []byte(validConfig+schedule(`action = "report"`)+"always = true\n")); err != nil {
		t.Errorf("report schedule refused: %v", err)
	}
	_, err := nixdeploy.ParseConfig("f.toml", []byte(validConfig+schedule(`always = true`)))
	var ce *nixdeploy.ConfigError
	if !errors.As(err, &ce) || !strings.Contains(strings.Join(ce.Problems, "\n"), `always applies only to action "report"`) {
		t.Errorf("always on a switch schedule: %v", err)
	}
	if _, err := nixdeploy.ParseAction("report"); err == nil {
		t.Error("report must not be an action of chat or CLI requests")
	}
}

func TestBoardConfig(t *testing.T) {
	cfg, err := nixdeploy.ParseConfig("f.toml", []byte(validConfig))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Board.Parallel != 16 || cfg.Board.ReadTimeout.Duration != 20*time.Second {
		t.Errorf("defaults: %+v", cfg.Board)
	}
	cfg, err = nixdeploy.ParseConfig("f.toml", []byte(validConfig+"[board]\nparallel = 4\nread_timeout = \"5s\"\n"))
	if err != nil || cfg.Board.Parallel != 4 || cfg.Board.ReadTimeout.Duration != 5*time.Second {
		t.Errorf("set: %+v, %v", cfg.Board, err)
	}
	for text, want := range map[string]string{
		"[board]\nparallel = 300\n":          "board: parallel must be between 1 and 256",
		"[board]\nparallel = -1\n":           "board: parallel must be between 1 and 256",
		"[board]\nread_timeout = \"10ms\"\n": "board: read_timeout must be at least 1s",
	} {
		_, err := nixdeploy.ParseConfig("f.toml", []byte(validConfig+text))
		var ce *nixdeploy.ConfigError
		if !errors.As(err, &ce) || !strings.Contains(strings.Join(ce.Problems, "\n"), want) {
			t.Errorf("%q: %v, want %q", text, err, want)
		}
	}
}
