package bot_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/bot"
	"github.com/nixdeploy/nixdeploy/db"
	"github.com/nixdeploy/nixdeploy/internal/slackfake"
)

// boardRows reads the table block of the n-th ephemeral message to user:
// host → cells, after checking the header.
func boardRows(t *testing.T, h *harness, user string, n int) map[string][]string {
	t.Helper()
	var msgs []slackfake.Message
	for _, m := range h.slack.Messages() {
		if m.Ephemeral && m.User == user {
			msgs = append(msgs, m)
		}
	}
	if len(msgs) <= n {
		t.Fatalf("%d ephemerals to %s, want message %d", len(msgs), user, n)
	}
	return tableRows(t, msgs[n].Blocks)
}

func tableRows(t *testing.T, blocks string) map[string][]string {
	t.Helper()
	var bs []struct {
		Type string `json:"type"`
		Rows [][]struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"rows"`
	}
	if err := json.Unmarshal([]byte(blocks), &bs); err != nil {
		t.Fatalf("blocks: %v\n%s", err, blocks)
	}
	for _, b := range bs {
		if b.Type != "table" {
			continue
		}
		out := map[string][]string{}
		for i, r := range b.Rows {
			var cells []string
			for _, c := range r {
				if c.Type != "raw_text" {
					t.Fatalf("cell of type %s", c.Type)
				}
				cells = append(cells, c.Text)
			}
			if i == 0 {
				if strings.Join(cells, "|") != strings.Join(nixdeploy.BoardColumns, "|") {
					t.Fatalf("header %q", cells)
				}
				continue
			}
			out[cells[0]] = cells
		}
		return out
	}
	t.Fatalf("no table block in %s", blocks)
	return nil
}

// readingDeployer is the fake deployer that also reads hosts.
type readingDeployer struct {
	bot.Deployer
	read func(hosts []string) []nixdeploy.HostReading
}

func (r readingDeployer) ReadHosts(_ context.Context, hosts []string) ([]nixdeploy.HostReading, error) {
	return r.read(hosts), nil
}

// readingObserver counts the boards the bot read (the metrics' gauges).
type readingObserver struct{ boards atomic.Int32 }

func (*readingObserver) DeploymentEnded(nixdeploy.Deployment, nixdeploy.State, time.Duration) {}
func (o *readingObserver) HostsRead([]nixdeploy.HostReading)                                  { o.boards.Add(1) }

const (
	sysA = "/nix/store/0a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p-nixos-system-ganon-25.05"
	sysB = "/nix/store/9z8y7x6w5v4u3t2s1r0q9p8o7n6m5l4k-nixos-system-ganon-25.05"
)

// The board as Slack shows it: a table block with one row per host,
// running, booted with "reboot pending", expected, drift with why.
func TestStatusBoardTable(t *testing.T) {
	at := time.Date(2026, 11, 26, 22, 0, 5, 0, time.UTC)
	read := func(hosts []string) []nixdeploy.HostReading {
		var out []nixdeploy.HostReading
		for _, h := range hosts {
			rd := nixdeploy.HostReading{Host: h, Running: sysA, Booted: sysA, Expected: sysA, Drift: nixdeploy.DriftNo, At: at, Revision: "5f3c9a1e7b2d4c6e8a0b1d3f5e7c9a2b4d6f8e01"}
			switch h {
			case "ganon":
				rd.Expected, rd.Drift, rd.Why = sysB, nixdeploy.DriftYes, "ganon does not run the system of revision 5f3c9a1e7b2d"
				rd.Booted, rd.RebootPending = sysB, true
			case "rk1-node1":
				rd = nixdeploy.HostReading{Host: h, Drift: nixdeploy.DriftUnknown, Why: "rk1-node1 (192.0.2.12:22) is unreachable: connection refused", At: at}
			}
			out = append(out, rd)
		}
		return out
	}
	obs := &readingObserver{}
	h := newHarness(t, harnessOptions{observer: obs, deployer: func(d *db.DB) bot.Deployer {
		return readingDeployer{Deployer: &fakeDeployer{store: d, clock: newFakeClock()}, read: read}
	}})
	h.command(carol, "status")
	rows := boardRows(t, h, carol, 0)
	if len(rows) != len(h.cfg.Hosts) {
		t.Fatalf("%d rows for %d hosts", len(rows), len(h.cfg.Hosts))
	}
	want := map[string][]string{
		"ganon":     {"ganon", "0a1b2c3", "9z8y7x6 (reboot pending)", "9z8y7x6", "yes", "never", "free", "22:00:05"},
		"rk1-node1": {"rk1-node1", "-", "-", "-", "unknown: rk1-node1 (192.0.2.12:22) is unreachable: connection refused", "never", "free", "22:00:05"},
	}
	for host, cells := range want {
		if strings.Join(rows[host], "|") != strings.Join(cells, "|") {
			t.Errorf("%s row\n got %q\nwant %q", host, rows[host], cells)
		}
	}
	if obs.boards.Load() != 1 {
		t.Errorf("the observer heard %d readings, want 1", obs.boards.Load())
	}
	got := h.ephemerals(carol)[0]
	if !strings.Contains(got, "Drift board: 1 drifted, 1 unknown, 1 reboot pending of 2 hosts (flake at 5f3c9a1e7b2d)") {
		t.Errorf("headline missing:\n%s", got)
	}
	// The per-host status users rely on.
	h.command(carol, "status rk1-node1")
	if rows := boardRows(t, h, carol, 1); len(rows) != 1 || rows["rk1-node1"] == nil {
		t.Errorf("status rk1-node1: %q", rows)
	}
}

// A board longer than a table holds keeps Slack's limits (100 rows,
// 10,000 characters) and shows the hosts that need attention first.
func TestBoardMessageLimit(t *testing.T) {
	board := func(n int, why string) nixdeploy.Board {
		var b nixdeploy.Board
		for i := range n {
			r := nixdeploy.BoardRow{HostReading: nixdeploy.HostReading{Host: fmt.Sprintf("n%03d", i), Drift: nixdeploy.DriftNo,
				Running: sysA, Booted: sysA, Expected: sysA}}
			if i == n-10 {
				r.Drift, r.Expected = nixdeploy.DriftYes, sysB
			}
			if why != "" && i%2 == 0 {
				r.Drift, r.Why = nixdeploy.DriftUnknown, why
			}
			b.Rows = append(b.Rows, r)
		}
		return b
	}
	m := bot.BoardMessage(board(130, ""), "Fleet status")
	if len(m.Table) != bot.MaxTableRows {
		t.Fatalf("%d table rows, want %d", len(m.Table), bot.MaxTableRows)
	}
	if m.Table[1][0] != "n120" {
		t.Errorf("first row %q, want the drifted host first", m.Table[1])
	}
	if !strings.Contains(strings.Join(m.Sections, "\n"), "31 more hosts are not shown") {
		t.Errorf("sections %q", m.Sections)
	}
	// Long reasons: the characters run out before the rows do.
	m = bot.BoardMessage(board(90, strings.Repeat("the host is far away and does not answer ", 5)), "Fleet status")
	chars := 0
	for _, row := range m.Table {
		for _, c := range row {
			chars += max(1, len([]rune(c)))
		}
	}
	if chars > bot.MaxTableChars || len(m.Table) >= 91 || len(m.Table) < 40 {
		t.Errorf("%d rows, %d characters; want fewer than all 90 hosts within %d", len(m.Table)-1, chars, bot.MaxTableChars)
	}
	if !strings.Contains(strings.Join(m.Sections, "\n"), fmt.Sprintf("%d more hosts are not shown", 91-len(m.Table))) {
		t.Errorf("sections %q", m.Sections)
	}
	// A board that fits is shown whole, in config order.
	m = bot.BoardMessage(board(5, ""), "Fleet status")
	if len(m.Table) != 6 || m.Table[1][0] != "n000" || len(m.Sections) != 1 {
		t.Errorf("small board: %q %q", m.Table, m.Sections)
	}
}

// The report schedule's board goes to the fleet channel as a table.
func TestPostBoard(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	board := nixdeploy.Board{At: time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC), Rows: []nixdeploy.BoardRow{
		{HostReading: nixdeploy.HostReading{Host: "ganon", Running: sysA, Booted: sysA, Expected: sysB, Drift: nixdeploy.DriftYes, Why: "ganon does not run the system of revision 5f3c9a1e7b2d"}},
	}}
	if err := h.bot.PostBoard(t.Context(), "morning-board", board); err != nil {
		t.Fatal(err)
	}
	var posted []slackfake.Message
	for _, m := range h.slack.Messages() {
		if !m.Ephemeral && m.Channel == h.cfg.Slack.Channel {
			posted = append(posted, m)
		}
	}
	if len(posted) != 1 {
		t.Fatalf("%d channel messages, want 1", len(posted))
	}
	rows := tableRows(t, posted[0].Blocks)
	if rows["ganon"][4] != "yes" {
		t.Errorf("rows %q", rows)
	}
	if !strings.Contains(posted[0].Rendered(), "*Schedule morning-board* — Drift board: 1 drifted of 1 host") {
		t.Errorf("message:\n%s", posted[0].Rendered())
	}
}
