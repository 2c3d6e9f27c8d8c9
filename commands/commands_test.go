package commands_test

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/commands"
)

func loadFleet(tb testing.TB) *nixdeploy.Config {
	tb.Helper()
	cfg, err := nixdeploy.LoadConfig("../examples/fleet/nixdeploy.toml")
	if err != nil {
		tb.Fatalf("load example fleet: %v", err)
	}
	return cfg
}

var rk1 = []string{"rk1-node1", "rk1-node2", "rk1-node3", "rk1-node4"}

func TestParse(t *testing.T) {
	cfg := loadFleet(t)
	deploy := func(a nixdeploy.Action, hosts []string, sels ...string) commands.Command {
		return commands.Command{Kind: commands.KindDeploy, Action: a, Hosts: hosts, Selectors: sels}
	}
	lock := func(d time.Duration, reason string, hosts []string, sels ...string) commands.Command {
		return commands.Command{Kind: commands.KindLock, Hosts: hosts, Selectors: sels, Duration: d, Reason: reason}
	}
	guarded := func(c commands.Command) commands.Command { c.Guard = true; return c }
	history := func(n int, hosts []string, sels ...string) commands.Command {
		return commands.Command{Kind: commands.KindHistory, N: n, Hosts: hosts, Selectors: sels}
	}
	tests := []struct {
		name string
		text string
		want commands.Command
		str  string // want.String(); empty means text itself
	}{
		{"empty is help", "", commands.Command{Kind: commands.KindHelp}, "help"},
		{"blank is help", " \t  ", commands.Command{Kind: commands.KindHelp}, "help"},
		{"prefix only is help", "/nixdeploy", commands.Command{Kind: commands.KindHelp}, "help"},
		{"bare host", "rk1-node3", deploy(nixdeploy.ActionSwitch, []string{"rk1-node3"}, "rk1-node3"), "switch rk1-node3"},
		{"bare host with prefix", "/nixdeploy rk1-node3", deploy(nixdeploy.ActionSwitch, []string{"rk1-node3"}, "rk1-node3"), "switch rk1-node3"},
		{"bare host capitalised by a phone", "Rk1-node3", deploy(nixdeploy.ActionSwitch, []string{"rk1-node3"}, "rk1-node3"), "switch rk1-node3"},
		{"bare tag", "@rk1", deploy(nixdeploy.ActionSwitch, rk1, "@rk1"), "switch @rk1"},
		{"bare glob", "rk1-*", deploy(nixdeploy.ActionSwitch, rk1, "rk1-*"), "switch rk1-*"},
		{"bare host list", "ganon rk1-node1", deploy(nixdeploy.ActionSwitch, []string{"ganon", "rk1-node1"}, "ganon", "rk1-node1"), "switch ganon rk1-node1"},
		{"switch in fleet order", "switch rk1-node3 ganon", deploy(nixdeploy.ActionSwitch, []string{"ganon", "rk1-node3"}, "rk1-node3", "ganon"), ""},
		{"switch tag", "switch @rk1", deploy(nixdeploy.ActionSwitch, rk1, "@rk1"), ""},
		{"switch range", "switch rk1-node[2-3]", deploy(nixdeploy.ActionSwitch, []string{"rk1-node2", "rk1-node3"}, "rk1-node[2-3]"), ""},
		{"switch glob", "switch rk1-*", deploy(nixdeploy.ActionSwitch, rk1, "rk1-*"), ""},
		{"switch star is the fleet", "switch *", deploy(nixdeploy.ActionSwitch, append([]string{"ganon"}, rk1...), "*"), ""},
		{"switch dedupes", "switch rk1-node2 @rk1 rk1-node2 rk1-node[1-2]", deploy(nixdeploy.ActionSwitch, rk1, "rk1-node2", "@rk1", "rk1-node2", "rk1-node[1-2]"), ""},
		{"switch commas", "switch ganon,rk1-node1", deploy(nixdeploy.ActionSwitch, []string{"ganon", "rk1-node1"}, "ganon", "rk1-node1"), "switch ganon rk1-node1"},
		{"switch comma space", "switch ganon, rk1-node1", deploy(nixdeploy.ActionSwitch, []string{"ganon", "rk1-node1"}, "ganon", "rk1-node1"), "switch ganon rk1-node1"},
		{"spaces and tabs", "  switch\t\trk1-node1    ganon\t", deploy(nixdeploy.ActionSwitch, []string{"ganon", "rk1-node1"}, "rk1-node1", "ganon"), "switch rk1-node1 ganon"},
		{"upper-case command", "SWITCH GANON", deploy(nixdeploy.ActionSwitch, []string{"ganon"}, "ganon"), "switch ganon"},
		{"boot", "boot ganon", deploy(nixdeploy.ActionBoot, []string{"ganon"}, "ganon"), ""},
		{"test", "test rk1-node1", deploy(nixdeploy.ActionTest, []string{"rk1-node1"}, "rk1-node1"), ""},
		{"dry-run", "dry-run ganon", deploy(nixdeploy.ActionDryActivate, []string{"ganon"}, "ganon"), "dry-activate ganon"},
		{"dry-activate", "dry-activate ganon", deploy(nixdeploy.ActionDryActivate, []string{"ganon"}, "ganon"), ""},
		{"rollback", "rollback @rk1", deploy(nixdeploy.ActionRollback, rk1, "@rk1"), ""},
		{"install", "install rk1-node4", deploy(nixdeploy.ActionInstall, []string{"rk1-node4"}, "rk1-node4"), ""},
		{"install with prefix", "/nixdeploy install ganon", deploy(nixdeploy.ActionInstall, []string{"ganon"}, "ganon"), "install ganon"},
		{"bare host guarded", "/nixdeploy rk1-node3 --guard", guarded(deploy(nixdeploy.ActionSwitch, []string{"rk1-node3"}, "rk1-node3")), "switch rk1-node3 --guard"},
		{"guard before the hosts", "test --GUARD @rk1", guarded(deploy(nixdeploy.ActionTest, rk1, "@rk1")), "test @rk1 --guard"},

		{"status", "status", commands.Command{Kind: commands.KindStatus}, ""},
		{"status host", "status rk1-node3", commands.Command{Kind: commands.KindStatus, Hosts: []string{"rk1-node3"}, Selectors: []string{"rk1-node3"}}, ""},
		{"status tag", "status @rk1 ganon", commands.Command{Kind: commands.KindStatus, Hosts: append([]string{"ganon"}, rk1...), Selectors: []string{"@rk1", "ganon"}}, ""},

		{"history", "history", history(10, nil), "history 10"},
		{"history count", "history 20", history(20, nil), ""},
		{"history max", "history 100", history(100, nil), ""},
		{"history host", "history rk1-node3", history(10, []string{"rk1-node3"}, "rk1-node3"), "history rk1-node3 10"},
		{"history host count", "history rk1-node3 1", history(1, []string{"rk1-node3"}, "rk1-node3"), ""},
		{"history tag count", "history @rk1 5", history(5, rk1, "@rk1"), ""},
		{"history leading zero", "history 007", history(7, nil), "history 7"},

		{"cancel", "cancel 42", commands.Command{Kind: commands.KindCancel, ID: 42}, ""},
		{"cancel hash", "cancel #42", commands.Command{Kind: commands.KindCancel, ID: 42}, "cancel 42"},

		{"lock default", "lock ganon", lock(time.Hour, "", []string{"ganon"}, "ganon"), "lock ganon 1h"},
		{"lock duration", "lock ganon 2h", lock(2*time.Hour, "", []string{"ganon"}, "ganon"), ""},
		{"lock minutes", "lock ganon 90m", lock(90*time.Minute, "", []string{"ganon"}, "ganon"), "lock ganon 1h30m"},
		{"lock min", "lock ganon 1m", lock(time.Minute, "", []string{"ganon"}, "ganon"), ""},
		{"lock days", "lock ganon 7d", lock(7*24*time.Hour, "", []string{"ganon"}, "ganon"), ""},
		{"lock hours as days", "lock ganon 48H", lock(48*time.Hour, "", []string{"ganon"}, "ganon"), "lock ganon 2d"},
		{"lock reason", "lock ganon 3d GPU   swap", lock(3*24*time.Hour, "GPU swap", []string{"ganon"}, "ganon"), "lock ganon 3d GPU swap"},
		{"lock reason without duration", "lock rk1-node2 fan is loud", lock(time.Hour, "fan is loud", []string{"rk1-node2"}, "rk1-node2"), "lock rk1-node2 1h fan is loud"},
		{"lock tag with punctuation", "lock @rk1 30m firmware (v2), see #12!", lock(30*time.Minute, "firmware (v2), see #12!", rk1, "@rk1"), ""},
		{"lock comma list", "lock ganon,rk1-node1 10m", lock(10*time.Minute, "", []string{"ganon", "rk1-node1"}, "ganon", "rk1-node1"), ""},
		{"unlock", "unlock ganon", commands.Command{Kind: commands.KindUnlock, Hosts: []string{"ganon"}, Selectors: []string{"ganon"}}, ""},
		{"unlock glob", "unlock rk1-node[3-4]", commands.Command{Kind: commands.KindUnlock, Hosts: []string{"rk1-node3", "rk1-node4"}, Selectors: []string{"rk1-node[3-4]"}}, ""},

		{"schedules", "schedules", commands.Command{Kind: commands.KindSchedules}, ""},
		{"schedule pause", "schedule pause nightly-rk1", commands.Command{Kind: commands.KindSchedule, ScheduleOp: "pause", Schedule: "nightly-rk1"}, ""},
		{"schedule resume", "schedule resume nightly-rk1", commands.Command{Kind: commands.KindSchedule, ScheduleOp: "resume", Schedule: "nightly-rk1"}, ""},
		{"schedule run", "Schedule RUN Nightly-RK1", commands.Command{Kind: commands.KindSchedule, ScheduleOp: "run", Schedule: "nightly-rk1"}, "schedule run nightly-rk1"},

		{"keys check", "keys check", commands.Command{Kind: commands.KindKeysCheck}, ""},
		{"keys check hosts", "keys check rk1-node1 ganon", commands.Command{Kind: commands.KindKeysCheck, Hosts: []string{"ganon", "rk1-node1"}, Selectors: []string{"rk1-node1", "ganon"}}, ""},

		{"help", "help", commands.Command{Kind: commands.KindHelp}, ""},
		{"help topic", "help lock", commands.Command{Kind: commands.KindHelp, Topic: "lock"}, ""},
		{"help alias", "help dry-run", commands.Command{Kind: commands.KindHelp, Topic: "dry-activate"}, "help dry-activate"},
		{"help two words", "help keys check", commands.Command{Kind: commands.KindHelp, Topic: "keys"}, "help keys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := commands.Parse(cfg, tt.text)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.text, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Parse(%q)\n got %#v\nwant %#v", tt.text, got, tt.want)
			}
			wantStr := tt.str
			if wantStr == "" {
				wantStr = tt.text
			}
			if s := got.String(); s != wantStr {
				t.Errorf("String() = %q, want %q", s, wantStr)
			}
			again, err := commands.Parse(cfg, got.String())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("String() %q does not parse back: %#v, %v", got.String(), again, err)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	cfg := loadFleet(t)
	tests := []struct {
		name string
		text string
		is   error
		want []string // substrings of the message
	}{
		{"unknown host", "switch rk1-nod3", nixdeploy.ErrUnknownHost,
			[]string{`"rk1-nod3"`, "closest hosts: rk1-node3, rk1-node1, rk1-node2", "try /nixdeploy help"}},
		{"unknown host later in the list", "status ganon rk1-node9", nixdeploy.ErrUnknownHost, []string{`"rk1-node9"`, "closest hosts: rk1-node1"}},
		{"unknown tag", "switch @rk2", nixdeploy.ErrUnknownHost, []string{`"rk2"`, "closest tags: rk1"}},
		{"glob matches nothing", "boot rk2-*", nixdeploy.ErrUnknownHost, []string{`"rk2-*"`, "closest hosts"}},
		{"bad glob", "switch rk1-node[", nixdeploy.ErrInvalidInput, []string{"bad pattern", `"rk1-node["`}},
		{"bare unknown host", "rk1-nod3", nixdeploy.ErrUnknownHost, []string{`unknown command or host "rk1-nod3" (closest: rk1-node3`}},
		{"bare unknown host later", "ganon rk1-nod3", nixdeploy.ErrUnknownHost, []string{`"rk1-nod3"`, "closest hosts: rk1-node3"}},
		{"misspelt command", "stauts", nixdeploy.ErrUnknownHost, []string{`unknown command or host "stauts" (closest: status`}},
		{"misspelt action", "swtich ganon", nixdeploy.ErrUnknownHost, []string{`"swtich"`, "closest: switch"}},
		{"not an action", "deploy ganon", nixdeploy.ErrUnknownHost, []string{`unknown command or host "deploy"`}},
		{"lone comma", ", ganon", nixdeploy.ErrUnknownHost, []string{`unknown command or host ","`}},

		{"guard on boot", "boot ganon --guard", commands.ErrUsage, []string{"--guard guards an activation, so it works with switch and test, not boot"}},
		{"guard on install", "install ganon --guard", commands.ErrUsage, []string{"not install"}},
		{"unknown option", "switch ganon --force", commands.ErrUsage, []string{`switch knows no option "--force"; the only one is --guard`}},
		{"guard alone", "switch --guard", commands.ErrUsage, []string{"switch needs at least one host"}},
		{"switch without host", "switch", commands.ErrUsage, []string{"switch needs at least one host", "usage: /nixdeploy switch HOST…"}},
		{"install without host", "install", commands.ErrUsage, []string{"install needs at least one host"}},
		{"switch only commas", "switch , ,", commands.ErrUsage, []string{"needs at least one host"}},
		{"status only commas", "status ,", commands.ErrUsage, []string{"no host"}},
		{"cancel without id", "cancel", commands.ErrUsage, []string{"exactly one deployment ID", "usage: /nixdeploy cancel ID"}},
		{"cancel two ids", "cancel 1 2", commands.ErrUsage, []string{"exactly one deployment ID"}},
		{"cancel zero", "cancel 0", commands.ErrUsage, []string{`deployment ID "0" must be a positive whole number`}},
		{"cancel negative", "cancel -1", commands.ErrUsage, []string{`"-1"`}},
		{"cancel word", "cancel ganon", commands.ErrUsage, []string{`"ganon"`}},
		{"cancel overflow", "cancel 99999999999999999999", commands.ErrUsage, []string{"positive whole number"}},
		{"cancel plus", "cancel +4", commands.ErrUsage, []string{`"+4"`}},
		{"history zero", "history 0", commands.ErrUsage, []string{`history count "0" must be a whole number from 1 to 100`}},
		{"history too many", "history 101", commands.ErrUsage, []string{`"101"`}},
		{"history overflow", "history 99999999999999999999", commands.ErrUsage, []string{"from 1 to 100"}},
		{"history word count", "history ganon ten", commands.ErrUsage, []string{`"ten"`}},
		{"history negative", "history ganon -5", commands.ErrUsage, []string{`"-5"`}},
		{"history extra", "history ganon 10 more", commands.ErrUsage, []string{"at most a host and a count"}},
		{"history unknown host", "history gannon", nixdeploy.ErrUnknownHost, []string{`"gannon"`, "closest hosts: ganon"}},
		{"lock without host", "lock", commands.ErrUsage, []string{"lock needs a host", "usage: /nixdeploy lock HOST [DURATION] [REASON…]"}},
		{"lock zero", "lock ganon 0s", commands.ErrUsage, []string{`lock duration "0s" must be from 1m to 7d`}},
		{"lock too short", "lock ganon 30s", commands.ErrUsage, []string{`"30s"`}},
		{"lock too long", "lock ganon 8d", commands.ErrUsage, []string{`"8d"`}},
		{"lock too many hours", "lock ganon 169h", commands.ErrUsage, []string{`"169h"`}},
		{"lock huge days", "lock ganon 99999999999999999999d", commands.ErrUsage, []string{"must be from"}},
		{"lock misspelt unit", "lock ganon 2hr fan", commands.ErrUsage, []string{`"2hr"`, "written like 30m, 2h or 3d"}},
		{"lock mixed days", "lock ganon 1d12h", commands.ErrUsage, []string{`"1d12h"`}},
		{"lock negative", "lock ganon -1h", commands.ErrUsage, []string{`"-1h"`}},
		{"lock long reason", "lock ganon 1h " + strings.Repeat("x", 201), commands.ErrUsage, []string{"201 characters", "shorten it"}},
		{"lock unknown host", "lock ganno 1h", nixdeploy.ErrUnknownHost, []string{`"ganno"`}},
		{"unlock without host", "unlock", commands.ErrUsage, []string{"exactly one host"}},
		{"unlock two hosts", "unlock ganon rk1-node1", commands.ErrUsage, []string{"exactly one host", "not 2 words"}},
		{"schedules extra", "schedules now", commands.ErrUsage, []string{"schedules takes no arguments"}},
		{"schedule nothing", "schedule", commands.ErrUsage, []string{"an operation and a schedule name", "usage: /nixdeploy schedule pause|resume|run NAME"}},
		{"schedule no name", "schedule pause", commands.ErrUsage, []string{"not 1 words"}},
		{"schedule extra", "schedule pause nightly-rk1 now", commands.ErrUsage, []string{"not 3 words"}},
		{"schedule bad op", "schedule stop nightly-rk1", commands.ErrUsage, []string{`"stop" must be one of pause, resume, run`}},
		{"schedule unknown", "schedule run nightly", nixdeploy.ErrNotFound, []string{`unknown schedule "nightly" (closest schedules: nightly-rk1)`, "try /nixdeploy schedules"}},
		{"keys alone", "keys", commands.ErrUsage, []string{`keys needs "check"`}},
		{"keys host", "keys ganon", commands.ErrUsage, []string{`keys needs "check"`}},
		{"keys unknown host", "keys check gnon", nixdeploy.ErrUnknownHost, []string{`"gnon"`}},
		{"help unknown topic", "help lcok", commands.ErrUsage, []string{`no help topic "lcok" (closest: lock`}},
		{"help two topics", "help lock unlock", commands.ErrUsage, []string{"one topic"}},
		{"too many words", "status" + strings.Repeat(" ganon", 64), commands.ErrUsage, []string{"65 words", "more than the 64 allowed"}},
		{"too long", "status" + strings.Repeat(" ", 990) + "ganon", commands.ErrUsage, []string{"1001 bytes", "1000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := commands.Parse(cfg, tt.text)
			if err == nil {
				t.Fatalf("Parse(%q) = %#v, want an error", tt.text, c)
			}
			checkErr(t, err, tt.is, tt.want)
			if errors.Is(err, commands.ErrUnsafe) {
				t.Errorf("Parse(%q) = %v, which is no unsafe text", tt.text, err)
			}
		})
	}
}

func TestParseRejectsUnsafe(t *testing.T) {
	cfg := loadFleet(t)
	tests := []struct {
		name string
		text string
		want []string
	}{
		{"semicolon", "switch ganon; rm -rf /", []string{`";" is not allowed`, "separates shell commands"}},
		{"ampersand", "switch ganon && reboot", []string{`"&" is not allowed`}},
		{"background", "switch ganon &", []string{`"&"`}},
		{"pipe", "status | tee /tmp/x", []string{`"|" is not allowed`, "pipes"}},
		{"dollar", "switch $HOST", []string{`"$" is not allowed`, "expands"}},
		{"command substitution", "switch $(hostname)", []string{`"$(" is not allowed`}},
		{"backtick", "switch `hostname`", []string{"\"`\" is not allowed", "runs shell commands"}},
		{"single quote", "switch 'ganon'", []string{`"'" is not allowed`, "quoting"}},
		{"double quote", `switch "ganon"`, []string{`"\"" is not allowed`, "quoting"}},
		{"backslash", `switch gan\on`, []string{`"\\" is not allowed`, "escape"}},
		{"redirect out", "status > /tmp/x", []string{`">" is not allowed`, "redirects"}},
		{"redirect in", "status < /etc/passwd", []string{`"<" is not allowed`, "redirects"}},
		{"newline", "switch ganon\nswitch rk1-node1", []string{"line break", "one command per message"}},
		{"carriage return", "switch ganon\r", []string{"line break"}},
		{"trailing newline", "status\n", []string{"line break"}},
		{"nul", "switch ganon\x00", []string{"control character U+0000"}},
		{"escape sequence", "switch \x1b[31mganon", []string{"control character U+001B", `"\x1b[31mganon"`}},
		{"delete", "switch ganon\x7f", []string{"U+007F"}},
		{"vertical tab", "switch\vganon", []string{"U+000B"}},
		{"slack amp", "switch ganon &amp;&amp; reboot", []string{`"&amp;"`, "how Slack sends"}},
		{"slack lt", "status &lt; x", []string{`"&lt;"`}},
		{"slack gt", "status &gt; x", []string{`"&gt;"`}},
		{"slack mention", "lock ganon 1h for <@U0ALICE01|alice>", []string{`a Slack link or mention "<@U0ALICE01|alice>"`}},
		{"slack link", "switch <http://ganon.lan|ganon>", []string{`"<http://ganon.lan|ganon>"`, "plain text"}},
		{"slack channel", "status <#C0FLEET01>", []string{"Slack link or mention"}},
		{"hyphen", "rk1\u2010node3", []string{"U+2010", "hyphen", `looks like "-"`, `"rk1\u2010node3"`}},
		{"non-breaking hyphen", "switch rk1\u2011node3", []string{"U+2011"}},
		{"figure dash", "switch rk1\u2012node3", []string{"U+2012", "figure dash"}},
		{"en dash", "switch rk1\u2013node3", []string{"U+2013", "en dash"}},
		{"em dash", "switch rk1\u2014node3", []string{"U+2014", "em dash"}},
		{"horizontal bar", "switch rk1\u2015node3", []string{"U+2015"}},
		{"minus sign", "switch rk1\u2212node3", []string{"U+2212", "minus sign"}},
		{"fullwidth letters", "switch \uff52\uff4b1-node3", []string{"U+FF52", `fullwidth 'r'`}},
		{"fullwidth semicolon", "switch ganon\uff1b", []string{"U+FF1B", `fullwidth ';'`}},
		{"zero-width space", "switch rk1-\u200bnode3", []string{"U+200B", "zero-width space", "looks like nothing at all"}},
		{"zero-width joiner", "\u200dstatus", []string{"U+200D"}},
		{"byte order mark", "\ufeffstatus", []string{"U+FEFF"}},
		{"no-break space", "switch\u00a0ganon", []string{"U+00A0", "no-break space", `looks like " "`}},
		{"smart quotes", "lock ganon 1h \u201cGPU\u201d", []string{"U+201C", "double quote"}},
		{"accented letter", "lock ganon 1h caf\u00e9", []string{"U+00E9", "plain ASCII"}},
		{"cyrillic a", "switch g\u0430non", []string{"U+0430"}},
		{"emoji", "switch ganon \U0001F680", []string{"U+1F680"}},
		{"invalid utf-8", "switch gan\xffon", []string{"0xFF", "not valid UTF-8"}},
		{"unsafe beats length", strings.Repeat("x", 2000) + ";", []string{`";"`}},
		{"unsafe beats unknown host", "nosuchhost;", []string{`";"`}},
		{"unsafe in the lock reason", "lock ganon 1h fixing it; brb", []string{`";"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := commands.Parse(cfg, tt.text)
			if err == nil {
				t.Fatalf("Parse(%q) = %#v, want an error", tt.text, c)
			}
			checkErr(t, err, commands.ErrUnsafe, tt.want)
		})
	}
}

// checkErr asserts err matches is and the usual sentinels, contains every
// want, and reads as one sentence a user can be shown as is.
func checkErr(t *testing.T, err, is error, want []string) {
	t.Helper()
	for _, sentinel := range []error{is, commands.ErrUsage} {
		if !errors.Is(err, sentinel) {
			t.Errorf("error %q does not match %v", err, sentinel)
		}
	}
	msg := err.Error()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not contain %q", msg, w)
		}
	}
	if msg == "" || strings.ToLower(msg[:1]) != msg[:1] || strings.HasSuffix(msg, ".") || strings.ContainsAny(msg, "\r\n") {
		t.Errorf("error %q is not one lower-case sentence without a final period", msg)
	}
}

func TestTable(t *testing.T) {
	cfg := loadFleet(t)
	help := commands.Help()
	var actions []nixdeploy.Action
	for _, e := range commands.Table() {
		t.Run(e.Words, func(t *testing.T) {
			if !strings.Contains(help, e.Synopsis) {
				t.Errorf("Help() lacks %q", e.Synopsis)
			}
			for _, a := range e.Aliases {
				if !strings.Contains(commands.HelpTopic(e.Words), a) {
					t.Errorf("HelpTopic(%q) lacks alias %q", e.Words, a)
				}
			}
			topic := commands.HelpTopic(e.Words)
			if !strings.Contains(topic, e.Synopsis) || !strings.Contains(topic, e.Example) {
				t.Errorf("HelpTopic(%q) = %q, want its synopsis and example", e.Words, topic)
			}
			c, err := commands.Parse(cfg, e.Example)
			if err != nil {
				t.Fatalf("example %q: %v", e.Example, err)
			}
			if c.Kind != e.Kind {
				t.Errorf("example %q parsed as %s, want %s", e.Example, c.Kind, e.Kind)
			}
			if c.Kind == commands.KindDeploy {
				actions = append(actions, c.Action)
			}
			h, err := commands.Parse(cfg, "help "+e.Words)
			if err != nil || h.Kind != commands.KindHelp || h.Topic == "" {
				t.Errorf("help %s = %#v, %v", e.Words, h, err)
			}
		})
	}
	for _, a := range nixdeploy.Actions {
		if !slices.Contains(actions, a) {
			t.Errorf("no command in the table deploys action %q", a)
		}
	}
	if got := commands.HelpTopic(""); got != help {
		t.Errorf("HelpTopic(\"\") is not Help()")
	}
}

func TestParseNilConfig(t *testing.T) {
	for _, text := range []string{"", "help lock", "schedules", "cancel 3", "history"} {
		if _, err := commands.Parse(nil, text); err != nil {
			t.Errorf("Parse(nil, %q): %v", text, err)
		}
	}
	for _, text := range []string{"switch ganon", "ganon", "schedule run nightly-rk1", "status ganon"} {
		_, err := commands.Parse(nil, text)
		if !errors.Is(err, commands.ErrUsage) {
			t.Errorf("Parse(nil, %q) = %v, want a usage error", text, err)
		}
	}
}

func TestStringOfBuiltCommand(t *testing.T) {
	// Callers that build a Command by hand (the scheduler, tests) still get
	// an echo that parses.
	cfg := loadFleet(t)
	for _, c := range []commands.Command{
		{Kind: commands.KindDeploy, Action: nixdeploy.ActionDryActivate, Hosts: []string{"ganon"}},
		{Kind: commands.KindHistory},
		{Kind: commands.KindLock, Hosts: []string{"rk1-node1", "rk1-node2"}},
	} {
		if _, err := commands.Parse(cfg, c.String()); err != nil {
			t.Errorf("String() %q: %v", c.String(), err)
		}
	}
}

// TestCommandWordsAreReserved keeps the config's reserved host names in step
// with the command table: a host named like a command would be ambiguous.
func TestCommandWordsAreReserved(t *testing.T) {
	for _, w := range commands.CommandWords() {
		if !slices.Contains(nixdeploy.ReservedNames, w) {
			t.Errorf("command word %q is not in nixdeploy.ReservedNames", w)
		}
	}
}

func TestCommandRequest(t *testing.T) {
	cfg, err := nixdeploy.LoadConfig("../examples/fleet/nixdeploy.toml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := commands.Parse(cfg, "install @rk1")
	if err != nil {
		t.Fatal(err)
	}
	got := c.Request("U0ALICE01", nixdeploy.SourceSlack)
	want := nixdeploy.Request{Action: nixdeploy.ActionInstall, Hosts: []string{"rk1-node1", "rk1-node2", "rk1-node3", "rk1-node4"},
		Requester: "U0ALICE01", Source: nixdeploy.SourceSlack}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("request = %+v, want %+v", got, want)
	}
	got.Hosts[0] = "changed"
	if c.Hosts[0] != "rk1-node1" {
		t.Fatal("Request shares its host slice with the command")
	}
}
