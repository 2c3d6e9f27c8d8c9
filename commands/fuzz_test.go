package commands_test

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/commands"
)

// FuzzParse checks what must hold for any text Slack could send: Parse never
// panics, every error is a one-line usage error, an accepted command names
// only configured hosts in fleet order, and its echo parses back to it.
func FuzzParse(f *testing.F) {
	cfg := loadFleet(f)
	for _, s := range []string{
		"", "/nixdeploy", "rk1-node3", "/nixdeploy rk1-node3", "@rk1", "rk1-*", "*",
		"switch rk1-node3 ganon", "switch rk1-node[2-3]", "boot ganon,rk1-node1", "dry-run ganon",
		"dry-activate @rk1", "install rk1-node4", "rollback rk1-node[^1]", "test rk1-node?",
		"status", "status @rk1", "history", "history 20", "history rk1-node3 5", "history 007",
		"cancel #42", "cancel 9223372036854775807", "lock ganon", "lock ganon 90m fan swap",
		"lock @rk1 7d", "lock ganon .5h", "lock ganon 1h - reason", "unlock rk1-node[3-4]",
		"schedules", "schedule run nightly-rk1", "keys check", "keys check ganon",
		"help", "help keys check", "HELP Dry-Activate",
		"rk1-nod3", "switch rk1-node[", "switch @", "switch ,", "history 0", "lock ganon 2hr",
		"cancel 99999999999999999999", "schedule stop nightly-rk1",
		"switch ganon; reboot", "switch $(id)", "status `id`", "status &amp;", "<@U1|a>",
		"switch ganon\nstatus", "rk1\u2010node3", "\uff52k1-node3", "rk1-\u200bnode3", "gan\xffon",
		"switch\u00a0ganon", "status\x00",
		"flash rk1-node3 /srv/images/rk1.img", "flash rk1-node3 /srv/../x", "flash rk1-node3 /A+b_c-1.img.xz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		c, err := commands.Parse(cfg, text)
		if err != nil {
			if !errors.Is(err, commands.ErrUsage) {
				t.Fatalf("Parse(%q) error %v does not match ErrUsage", text, err)
			}
			if msg := err.Error(); msg == "" || strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("Parse(%q) error %q is not one line", text, msg)
			}
			return
		}
		for i := 0; i < len(text); i++ {
			if b := text[i]; (b < 0x20 && b != '\t') || b >= 0x7f || strings.IndexByte(";&|$`'\"\\<>", b) >= 0 {
				t.Fatalf("Parse(%q) accepted byte 0x%02x", text, b)
			}
		}
		for _, h := range c.Hosts {
			if _, ok := cfg.Host(h); !ok {
				t.Fatalf("Parse(%q) named host %q, which is not in the config", text, h)
			}
		}
		order := func(name string) int {
			return slices.IndexFunc(cfg.Hosts, func(h nixdeploy.Host) bool { return h.Name == name })
		}
		for i := 1; i < len(c.Hosts); i++ {
			if order(c.Hosts[i-1]) >= order(c.Hosts[i]) {
				t.Fatalf("Parse(%q) hosts %v are not in fleet order without duplicates", text, c.Hosts)
			}
		}
		echo := c.String()
		again, err := commands.Parse(cfg, echo)
		if err != nil {
			t.Fatalf("Parse(%q) = %#v, whose String() %q does not parse: %v", text, c, echo, err)
		}
		if !reflect.DeepEqual(again, c) {
			t.Fatalf("Parse(%q) = %#v\nString() %q parses to %#v", text, c, echo, again)
		}
	})
}
