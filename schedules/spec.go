package schedules

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
)

// Spec is a cron spec bound to a time zone. robfig/cron parses it, but Spec
// computes the fire times itself, because robfig's SpecSchedule.Next walks
// real instants in the zone and so, in Europe/Berlin, skips "30 2 * * *" on
// the spring-forward day and fires it twice on the fall-back day (see
// robfig/cron#541 and TestRobfigDSTBehaviour).
//
// The rule Spec implements, for every spec and zone: each local wall-clock
// time the spec matches fires exactly once.
//   - A wall-clock time that does not exist (the spring-forward gap) fires at
//     the first instant after the gap. Several such times collapse into one
//     fire, so "*/15 * * * *" fires once at 03:00 for 02:00-02:45 and 03:00.
//   - A wall-clock time that happens twice (the fall-back hour) fires at its
//     first occurrence only. An hourly spec therefore leaves a two-hour gap
//     across the fall-back hour rather than running a rebuild twice.
//
// This is ISC cron's behaviour for fixed times and what an operator expects
// from "nightly at 02:30": one run per night, never zero, never two.
type Spec struct {
	text string
	loc  *time.Location
	// wall is the spec evaluated on naive wall-clock labels: UTC stands in
	// for a zone without transitions, so every label exists exactly once.
	wall *cron.SpecSchedule
	// every is set instead of wall for "@every D", which is a fixed
	// interval between instants and has no wall-clock times to map.
	every cron.Schedule
}

// ParseSpec parses a standard 5-field cron spec or descriptor (@daily,
// @every 1h, ...) for the zone named zone. A CRON_TZ= prefix in the spec
// overrides zone.
func ParseSpec(spec, zone string) (*Spec, error) {
	loc, err := time.LoadLocation(zone)
	if err != nil {
		return nil, fmt.Errorf("time zone %q: %w", zone, err)
	}
	parsed, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("cron spec %q: %w", spec, err)
	}
	s := &Spec{text: spec, loc: loc}
	ss, ok := parsed.(*cron.SpecSchedule)
	if !ok {
		s.every = parsed
		return s, nil
	}
	if ss.Location != time.Local {
		s.loc = ss.Location
	}
	w := *ss
	w.Location = time.UTC
	s.wall = &w
	return s, nil
}

// String returns the spec as written.
func (s *Spec) String() string { return s.text }

// Location is the zone the spec is evaluated in.
func (s *Spec) Location() *time.Location { return s.loc }

// Next returns the first fire time strictly after after, in the spec's zone,
// or the zero time if the spec never fires again.
func (s *Spec) Next(after time.Time) time.Time {
	if s.every != nil {
		return s.every.Next(after).In(s.loc)
	}
	// Near a transition, labels a little before after's own wall-clock time
	// can map to instants after it (and vice versa), so start the label
	// walk early enough to see them; monotonicity of instant() makes the
	// first label past after the answer.
	label := wallLabel(after.In(s.loc))
	if s.transitionNear(after) {
		label = label.Add(-3 * time.Hour)
	}
	for range maxLabels {
		label = s.wall.Next(label)
		if label.IsZero() {
			return time.Time{}
		}
		if t := s.instant(label); t.After(after) {
			return t
		}
	}
	return time.Time{}
}

// maxLabels bounds the label walk; three hours of minute labels is 180.
const maxLabels = 1000

// transitionNear reports whether the zone's offset changes within a day of t.
func (s *Spec) transitionNear(t time.Time) bool {
	_, before := t.Add(-26 * time.Hour).In(s.loc).Zone()
	_, after := t.Add(26 * time.Hour).In(s.loc).Zone()
	return before != after
}

// wallLabel is t's local wall-clock reading as a naive UTC time.
func wallLabel(t time.Time) time.Time {
	y, mo, d := t.Date()
	h, mi, sec := t.Clock()
	return time.Date(y, mo, d, h, mi, sec, t.Nanosecond(), time.UTC)
}

// instant maps a wall-clock label to the instant it fires at: its first
// occurrence, or the end of the gap if the label falls into one. Zones
// change offset at most once in any 52 hours, so the offsets a day either
// side are the only candidates.
func (s *Spec) instant(label time.Time) time.Time {
	var first time.Time
	for _, probe := range []time.Time{label.Add(-26 * time.Hour), label.Add(26 * time.Hour)} {
		_, off := probe.In(s.loc).Zone()
		t := label.Add(-time.Duration(off) * time.Second).In(s.loc)
		if wallLabel(t).Equal(label) && (first.IsZero() || t.Before(first)) {
			first = t
		}
	}
	if !first.IsZero() {
		return first
	}
	// Read with the offset from before the gap, the label lands just after
	// the gap, inside the zone period the transition opened.
	_, off := label.Add(-26 * time.Hour).In(s.loc).Zone()
	start, _ := label.Add(-time.Duration(off) * time.Second).In(s.loc).ZoneBounds()
	return start
}
