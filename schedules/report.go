package schedules

import (
	"context"
	"fmt"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// Reporter reads and posts the drift board for a report schedule (action
// = "report"); the bot satisfies it.
type Reporter interface {
	// Board reads the hosts' drift board.
	Board(ctx context.Context, hosts []string) (nixdeploy.Board, error)
	// PostBoard posts a schedule's board to the channel.
	PostBoard(ctx context.Context, schedule string, b nixdeploy.Board) error
}

// ReportStore keeps what a report schedule last posted; *db.DB satisfies
// it. Without it every run posts, as with always = true.
type ReportStore interface {
	LastReport(ctx context.Context, schedule string) (digest string, at time.Time, ok bool, err error)
	SetLastReport(ctx context.Context, schedule, digest string, at time.Time) error
}

// report reads the board of the schedule's hosts and posts it when it
// changed since the board this schedule last posted (nixdeploy.Board.Digest),
// or always when the schedule says so. It deploys nothing and records no
// hosts: the run's detail says whether it posted.
func (s *Scheduler) report(ctx context.Context, e *entry) (nixdeploy.Outcome, string) {
	name := e.cfg.Name
	board, err := s.reporter.Board(ctx, e.hosts)
	if err != nil {
		s.log.Error("report: read the board", "schedule", name, "err", err)
		return OutcomeFailed, "could not read the board: " + err.Error()
	}
	digest := board.Digest()
	rs, _ := s.store.(ReportStore)
	if rs != nil && !e.cfg.Always {
		last, at, ok, err := rs.LastReport(ctx, name)
		if err != nil {
			// Not knowing, post: a board too many beats a change unseen.
			s.log.Warn("report: read the last report", "schedule", name, "err", err)
		} else if ok && last == digest {
			return OutcomeSucceeded, "unchanged since the board posted " + at.UTC().Format(timeLayout) + "; not posted"
		}
	}
	if err := s.reporter.PostBoard(ctx, name, board); err != nil {
		s.log.Error("report: post the board", "schedule", name, "err", err)
		return OutcomeFailed, "could not post the board: " + err.Error()
	}
	if rs != nil {
		if err := rs.SetLastReport(ctx, name, digest, s.clock.Now()); err != nil {
			s.log.Error("report: record the posted board", "schedule", name, "err", err)
		}
	}
	return OutcomeSucceeded, fmt.Sprintf("posted: %s", board.Headline())
}

// executeReport runs a report schedule's run to its end: it records the
// outcome and, when the board could not be read or posted, posts the
// run's summary so the failure is seen. A posted board is its own message.
func (s *Scheduler) executeReport(e *entry, r nixdeploy.ScheduleRun, by string) {
	outcome, detail := s.report(s.ctx, e)
	// A posted board is its own message: only a failure posts a summary.
	s.endRun(s.ctx, e, r, by, outcome, detail, nil, outcome != OutcomeSucceeded)
}
