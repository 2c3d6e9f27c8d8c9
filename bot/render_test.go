package bot

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nixdeploy/nixdeploy"
)

func TestHuman(t *testing.T) {
	for d, want := range map[time.Duration]string{
		850 * time.Millisecond:          "850ms",
		10 * time.Second:                "10s",
		4*time.Minute + 12*time.Second:  "4m12s",
		15 * time.Minute:                "15m",
		time.Hour + 3*time.Minute:       "1h3m",
		2 * time.Hour:                   "2h",
		2*time.Hour + 20*time.Second:    "2h",
		59*time.Minute + 59*time.Second: "59m59s",
	} {
		if got := human(d); got != want {
			t.Errorf("human(%s) = %q, want %q", d, got, want)
		}
	}
}

// TestLimits: whatever the input, a message stays inside Slack's limits
// and a code block is never broken by the text it shows.
func TestLimits(t *testing.T) {
	long := strings.Repeat("x", 10000)
	tail := []string{long, "```; <@U123> & <!channel>", strings.Repeat("é", 3000)}
	s := snapshot{dep: nixdeploy.Deployment{ID: 1, Hosts: []string{"ganon"}, Action: nixdeploy.ActionSwitch, Requester: "U1"},
		step: long, host: "ganon", marker: long, phase: 2, lines: 3, tail: tail}
	for _, m := range []Message{runningMessage(s), finalMessage(s, Result{State: nixdeploy.StateFailed, Step: long, Err: UserError(long, nil)}, "")} {
		for i, sec := range m.Sections {
			if len(clip(sec, MaxSection)) > MaxSection {
				t.Errorf("section %d is %d bytes after clipping", i, len(sec))
			}
		}
		block := codeBlock(tail, MaxSection)
		if len(block) > MaxSection || strings.Count(block, "```") != 2 {
			t.Errorf("code block: %d bytes, %d fences", len(block), strings.Count(block, "```"))
		}
		if strings.Contains(block, "<@U123>") || strings.Contains(block, "<!channel>") {
			t.Error("log text can mention users or the channel")
		}
	}
	for n := 4; n < 12; n++ {
		if got := clip(strings.Repeat("é", 10), n); !utf8.ValidString(got) || len(got) > n {
			t.Errorf("clip(…, %d) = %q", n, got)
		}
	}
}

// TestPhaseOf: nixos-anywhere's markers, in the order it prints them,
// never move the phase backwards; the wait after kexec is not the final
// reboot.
func TestPhaseOf(t *testing.T) {
	for marker, want := range map[string]int{
		"Uploading install SSH keys":                                  -1,
		"Gathering machine facts":                                     -1,
		"Switching system into kexec":                                 0,
		"Waiting for the machine to become unreachable due to reboot": 0,
		"Formatting hard drive with disko":                            1,
		"Uploading the system closure":                                -1,
		"Installing NixOS":                                            2,
		"Rebooting":                                                   3,
		"Done!":                                                       4,
	} {
		if got := phaseOf(marker); got != want {
			t.Errorf("phaseOf(%q) = %d, want %d", marker, got, want)
		}
	}
}
