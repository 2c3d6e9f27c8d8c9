package bot

import (
	"context"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/commands"
)

// The drift board ("/nixdeploy status"): one row per host with what it
// runs, what it booted, what the flake's current revision expects, drift,
// its last deployment, its locks and when it was read.

// Slack's table block (https://docs.slack.dev/reference/block-kit/blocks/table-block):
// "rows: … Maximum 100 rows. Each row object is an array with a max of 20
// table cells. Table cells can have a type of raw_text or rich_text." Two
// more rules are not in that page's field list but are what Slack enforces,
// as clients that hit them report: at most 10,000 characters over all
// cells of a table, an empty cell counting as its one padding space
// (getnao/nao#1178, vellum-ai/vellum-assistant#36219), and one table per
// message (vercel/chat#194, openclaw/openclaw#57717).
const (
	MaxTableRows  = 100
	MaxTableCells = 20
	MaxTableChars = 10000
)

// maxCell bounds one cell's text, so one long reason cannot use up the
// table's characters; the whole sentence is in the terminal's table.
const maxCell = 160

// Board reads hosts (every host when none are named) and adds what the
// database knows: each host's last deployment and its locks. Without a
// deployer that reads hosts, the systems show as unknown.
func (b *Bot) Board(ctx context.Context, hosts []string) (nixdeploy.Board, error) {
	hosts = b.hostsOrAll(hosts)
	board := nixdeploy.Board{At: b.clock.Now().UTC()}
	var readings []nixdeploy.HostReading
	if r, ok := b.deployer.(HostReader); ok {
		var err error
		if readings, err = r.ReadHosts(ctx, hosts); err != nil {
			return board, fmt.Errorf("read hosts: %w", err)
		}
		b.observeReadings(readings)
	} else {
		for _, h := range hosts {
			readings = append(readings, nixdeploy.HostReading{Host: h, Drift: nixdeploy.DriftUnknown, Why: "this nixdeploy cannot read hosts"})
		}
	}
	for _, rd := range readings {
		row := nixdeploy.BoardRow{HostReading: rd}
		deps, err := b.store.Deployments(ctx, rd.Host, 1)
		if err != nil {
			return board, fmt.Errorf("board: deployments of %s: %w", rd.Host, err)
		}
		if len(deps) > 0 {
			d := deps[0]
			row.LastID, row.LastAction, row.LastState, row.LastRevision = d.ID, d.Action, d.State, d.Revision
		}
		mine := int64(0)
		if r, ok := b.life.Running(rd.Host); ok {
			mine = r.ID
			row.Locks = append(row.Locks, fmt.Sprintf("#%d %s running", r.ID, r.Action))
		}
		if cs, ok := b.store.(hostClaims); ok {
			// A deployment of another process on the same database.
			id, _, ok, err := cs.HostClaim(ctx, rd.Host)
			if err != nil {
				return board, fmt.Errorf("board: claim on %s: %w", rd.Host, err)
			}
			if ok && id != mine {
				row.Locks = append(row.Locks, fmt.Sprintf("#%d running", id))
			}
		}
		if b.locks != nil {
			l, ok, err := b.locks.HostLockOf(ctx, rd.Host)
			if err != nil {
				return board, fmt.Errorf("board: lock of %s: %w", rd.Host, err)
			}
			if ok {
				row.Locks = append(row.Locks, fmt.Sprintf("locked by %s until %s", plainUser(l.Holder), utc(l.ExpiresAt)))
			}
		}
		board.Rows = append(board.Rows, row)
	}
	return board, nil
}

// hostClaims is what a Store may offer when several processes share it
// (*db.DB does): the live claim on a host, by any process.
type hostClaims interface {
	HostClaim(ctx context.Context, host string) (id int64, owner string, ok bool, err error)
}

// plainUser names a user in a raw_text cell, where mentions do not render.
func plainUser(u string) string {
	if u == "" {
		return "nobody"
	}
	return "@" + u
}

// severity orders rows for a board too long for one table: drift first,
// then unknown, then reboot pending.
func severity(r nixdeploy.BoardRow) int {
	switch {
	case r.Drift == nixdeploy.DriftYes:
		return 0
	case r.Drift == nixdeploy.DriftUnknown:
		return 1
	case r.RebootPending:
		return 2
	}
	return 3
}

// BoardMessage renders a board: a headline section and a table, in
// config order. A board that does not fit one table (100 rows, 10,000
// characters) shows the drifted, unknown and reboot-pending hosts first
// and says how many hosts were left out.
func BoardMessage(board nixdeploy.Board, head string) Message {
	rows := slices.Clone(board.Rows)
	table := [][]string{nixdeploy.BoardColumns}
	used := cellChars(nixdeploy.BoardColumns)
	var cells [][]string
	fits := len(rows) <= MaxTableRows-1
	for _, r := range rows {
		c := r.Cells()
		for i := range c {
			c[i] = clip(c[i], maxCell)
		}
		cells = append(cells, c)
		used += cellChars(c)
	}
	if fits && used <= MaxTableChars {
		table = append(table, cells...)
	} else {
		order := make([]int, len(rows))
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(a, b int) int { return severity(rows[a]) - severity(rows[b]) })
		used = cellChars(nixdeploy.BoardColumns)
		for _, i := range order {
			if len(table) == MaxTableRows || used+cellChars(cells[i]) > MaxTableChars {
				break
			}
			used += cellChars(cells[i])
			table = append(table, cells[i])
		}
	}
	left := len(rows) - (len(table) - 1)
	summary := board.Summary()
	sections := []string{"*" + escape(head) + "* — " + escape(summary) + " (read " + utc(board.At) + ")"}
	if left > 0 {
		sections = append(sections, fmt.Sprintf("_%d more hosts are not shown (a Slack table holds %d rows of %d characters in all); ask for them by name: /nixdeploy status HOST_", left, MaxTableRows-1, MaxTableChars))
	}
	return Message{Kind: KindReply, Text: summary, Sections: sections, Table: table}
}

// cellChars counts a row as Slack does: an empty cell is sent as one space.
func cellChars(row []string) int {
	n := 0
	for _, c := range row {
		n += max(1, utf8.RuneCountInString(c))
	}
	return n
}

// tableBlock renders rows (the first is the header) as a Block Kit table
// of raw_text cells, within Slack's limits.
func tableBlock(rows [][]string) *slack.TableBlock {
	t := slack.NewTableBlock("")
	for i, row := range rows {
		if i == MaxTableRows {
			break
		}
		cells := make([]slack.TableCell, 0, min(len(row), MaxTableCells))
		for j, c := range row {
			if j == MaxTableCells {
				break
			}
			if c == "" {
				c = " "
			}
			cells = append(cells, slack.NewTableRawTextCell(c))
		}
		t.AddRow(cells...)
	}
	return t
}

// status shows the drift board of the named hosts, or of every host, and
// any approvals still waiting.
func (b *Bot) status(ctx context.Context, inv Invocation, cmd commands.Command) error {
	board, err := b.Board(ctx, cmd.Hosts)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	m := BoardMessage(board, "Fleet status")
	if pending, err := b.store.PendingApprovals(ctx); err == nil && len(pending) > 0 {
		m.Sections = append(m.Sections, "_"+approvalsSummary(pending)+"_")
	}
	return b.tell(ctx, inv, m)
}

// PostBoard posts a report schedule's board to the fleet channel; with
// Board it makes the bot the scheduler's Reporter.
func (b *Bot) PostBoard(ctx context.Context, schedule string, board nixdeploy.Board) error {
	m := BoardMessage(board, "Schedule "+schedule)
	m.Kind = KindNotice
	if _, err := b.chat.Post(ctx, b.Config().Slack.Channel, m); err != nil {
		return fmt.Errorf("post the board of %s: %w", schedule, err)
	}
	return nil
}
