package schedules_test

import (
	"slices"
	"testing"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/nixdeploy/nixdeploy/schedules"
)

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestNextRun checks next fire times: the first through List on the
// injected clock, the following ones through Spec.Next.
func TestNextRun(t *testing.T) {
	tests := []struct {
		name, spec, zone, now string
		want                  []string
	}{
		{"daily descriptor", "@daily", "UTC", "2026-05-13T10:00:00Z",
			[]string{"2026-05-14T00:00:00Z", "2026-05-15T00:00:00Z", "2026-05-16T00:00:00Z"}},
		{"nightly in Berlin", "0 3 * * *", "Europe/Berlin", "2026-05-13T10:00:00+02:00",
			[]string{"2026-05-14T03:00:00+02:00", "2026-05-15T03:00:00+02:00", "2026-05-16T03:00:00+02:00"}},
		{"nightly in Berlin, a second before", "0 3 * * *", "Europe/Berlin", "2026-05-13T02:59:59+02:00",
			[]string{"2026-05-13T03:00:00+02:00", "2026-05-14T03:00:00+02:00", "2026-05-15T03:00:00+02:00"}},
		{"nightly in New York across DST start", "0 3 * * *", "America/New_York", "2026-03-07T12:00:00-05:00",
			[]string{"2026-03-08T03:00:00-04:00", "2026-03-09T03:00:00-04:00", "2026-03-10T03:00:00-04:00"}},
		{"every quarter hour", "*/15 * * * *", "UTC", "2026-05-13T10:07:00Z",
			[]string{"2026-05-13T10:15:00Z", "2026-05-13T10:30:00Z", "2026-05-13T10:45:00Z"}},
		{"weekdays over a weekend", "0 3 * * 1-5", "Europe/Berlin", "2026-05-15T12:00:00+02:00",
			[]string{"2026-05-18T03:00:00+02:00", "2026-05-19T03:00:00+02:00", "2026-05-20T03:00:00+02:00"}},
		{"every 90 minutes", "@every 90m", "UTC", "2026-05-13T10:00:00Z",
			[]string{"2026-05-13T11:30:00Z", "2026-05-13T13:00:00Z", "2026-05-13T14:30:00Z"}},
		{"CRON_TZ prefix wins", "CRON_TZ=America/New_York 0 3 * * *", "UTC", "2026-05-13T12:00:00Z",
			[]string{"2026-05-14T03:00:00-04:00", "2026-05-15T03:00:00-04:00", "2026-05-16T03:00:00-04:00"}},
		{"quarter hours across the spring gap", "*/15 * * * *", "Europe/Berlin", "2026-03-29T01:40:00+01:00",
			[]string{"2026-03-29T01:45:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T03:15:00+02:00"}},
		{"half hours across the repeated hour", "*/30 * * * *", "Europe/Berlin", "2026-10-25T01:50:00+02:00",
			[]string{"2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-25T03:00:00+01:00"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			zone(t, tt.zone)
			sc := nightly()
			sc.Cron, sc.TimeZone = tt.spec, tt.zone
			r := newRig(t, mustTime(t, tt.now), fleet(sc))
			list, err := r.s.List(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			got := []string{list[0].Next.Format(time.RFC3339)}
			spec, err := schedules.ParseSpec(tt.spec, tt.zone)
			if err != nil {
				t.Fatal(err)
			}
			for next := list[0].Next; len(got) < len(tt.want); {
				next = spec.Next(next)
				got = append(got, next.Format(time.RFC3339))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("next runs from %s\n got %v\nwant %v", tt.now, got, tt.want)
			}
		})
	}
}

func TestParseSpecErrors(t *testing.T) {
	for _, tt := range []struct{ name, spec, zone string }{
		{"six fields", "0 0 3 * * *", "UTC"},
		{"bad descriptor", "@nightly", "UTC"},
		{"unknown zone", "0 3 * * *", "Europe/Atlantis"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := schedules.ParseSpec(tt.spec, tt.zone); err == nil {
				t.Fatalf("ParseSpec(%q, %q) accepted", tt.spec, tt.zone)
			}
		})
	}
}

// TestDSTOneRunPerDay walks a whole year in Europe/Berlin and requires one
// fire per local day, and the documented instant on both transition days.
func TestDSTOneRunPerDay(t *testing.T) {
	loc := berlin(t)
	tests := []struct {
		spec string
		want map[string]string // local date → fire time
	}{
		{"30 2 * * *", map[string]string{
			"2026-03-28": "2026-03-28T02:30:00+01:00",
			"2026-03-29": "2026-03-29T03:00:00+02:00", // 02:30 does not exist: first instant after the gap
			"2026-03-30": "2026-03-30T02:30:00+02:00",
			"2026-10-24": "2026-10-24T02:30:00+02:00",
			"2026-10-25": "2026-10-25T02:30:00+02:00", // 02:30 happens twice: the first (CEST) one
			"2026-10-26": "2026-10-26T02:30:00+01:00",
		}},
		{"0 3 * * *", map[string]string{
			"2026-03-29": "2026-03-29T03:00:00+02:00",
			"2026-10-25": "2026-10-25T03:00:00+01:00",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			spec, err := schedules.ParseSpec(tt.spec, "Europe/Berlin")
			if err != nil {
				t.Fatal(err)
			}
			perDay := map[string][]time.Time{}
			from, end := time.Date(2026, 1, 1, 0, 0, 0, 0, loc), time.Date(2027, 1, 1, 0, 0, 0, 0, loc)
			for next := spec.Next(from); next.Before(end); next = spec.Next(next) {
				day := next.In(loc).Format(time.DateOnly)
				perDay[day] = append(perDay[day], next)
			}
			for d := from; d.Before(end); d = d.AddDate(0, 0, 1) {
				if n := len(perDay[d.Format(time.DateOnly)]); n != 1 {
					t.Errorf("%s: %d runs %v, want exactly 1", d.Format(time.DateOnly), n, perDay[d.Format(time.DateOnly)])
				}
			}
			for day, want := range tt.want {
				if got := perDay[day]; len(got) != 1 || got[0].Format(time.RFC3339) != want {
					t.Errorf("%s: runs %v, want %s", day, got, want)
				}
			}
		})
	}
}

// TestRobfigDSTBehaviour pins down why Spec exists: robfig/cron's own Next
// skips "30 2 * * *" on the spring-forward day and fires it twice on the
// fall-back day. If this fails, robfig changed and Spec can be revisited.
func TestRobfigDSTBehaviour(t *testing.T) {
	loc := berlin(t)
	sched, err := cron.ParseStandard("CRON_TZ=Europe/Berlin 30 2 * * *")
	if err != nil {
		t.Fatal(err)
	}
	count := func(from time.Time, day string) int {
		n := 0
		for next, i := sched.Next(from), 0; i < 4; next, i = sched.Next(next), i+1 {
			if next.In(loc).Format(time.DateOnly) == day {
				n++
			}
		}
		return n
	}
	if n := count(time.Date(2026, 3, 28, 12, 0, 0, 0, loc), "2026-03-29"); n != 0 {
		t.Errorf("robfig/cron now fires %d times on the spring-forward day", n)
	}
	if n := count(time.Date(2026, 10, 24, 12, 0, 0, 0, loc), "2026-10-25"); n != 2 {
		t.Errorf("robfig/cron now fires %d times on the fall-back day", n)
	}
}

// TestDSTSchedulerLoop drives the real timer loop minute by minute across
// both transition nights: each schedule runs exactly once per night.
func TestDSTSchedulerLoop(t *testing.T) {
	loc := berlin(t)
	tests := []struct {
		name       string
		start, end time.Time
		want       map[string][]string
	}{
		{"spring forward", time.Date(2026, 3, 28, 0, 0, 0, 0, loc), time.Date(2026, 3, 31, 0, 0, 0, 0, loc), map[string][]string{
			"half-past-two": {"2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"},
			"nightly-rk1":   {"2026-03-28T03:00:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T03:00:00+02:00"},
		}},
		{"fall back", time.Date(2026, 10, 24, 0, 0, 0, 0, loc), time.Date(2026, 10, 27, 0, 0, 0, 0, loc), map[string][]string{
			"half-past-two": {"2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"},
			"nightly-rk1":   {"2026-10-24T03:00:00+02:00", "2026-10-25T03:00:00+01:00", "2026-10-26T03:00:00+01:00"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			half := nightly()
			half.Name, half.Cron = "half-past-two", "30 2 * * *"
			r := newRig(t, tt.start, fleet(nightly(), half))
			r.start(t)
			for r.clk.Now().Before(tt.end) {
				r.clk.AdvanceToNext()
				blockUntil(t, r.clk, 1)
				r.s.Wait()
			}
			for name, want := range tt.want {
				var got []string
				for _, run := range slices.Backward(r.runs(t, name)) {
					if run.Trigger != schedules.TriggerCron || run.Outcome != schedules.OutcomeSucceeded {
						t.Errorf("%s: run %+v, want a succeeded cron run", name, run)
					}
					got = append(got, run.ScheduledAt.In(loc).Format(time.RFC3339))
				}
				if !slices.Equal(got, want) {
					t.Errorf("%s ran at\n %v\nwant\n %v", name, got, want)
				}
			}
			if got, want := len(r.dep.hosts()), 2*3*len(rk1); got != want {
				t.Errorf("%d deploys, want %d", got, want)
			}
		})
	}
}
