// Package gc sets the garbage collector's target for nixdeploy's
// processes. It is a package of its own, importing nothing but the
// runtime, so that the benchmark's stand-in for serve (bench/cmd/streambench)
// runs with the same setting without pulling in anything else.
package gc

import "runtime/debug"

// GCPercent is the garbage collector's target (GOGC) that nixdeploy's
// processes run with unless the GOGC environment variable sets another.
//
// A streamed build log is nearly all short-lived garbage: every SSH
// packet, every line's text and every stored chunk is allocated once and
// dropped, about twice the log's size in all, while the live heap stays
// near 10 MB. At Go's default of 100 the collector then runs every 10 MB
// or so. Raising the target trades peak RSS for CPU and throughput, about
// 3.5 MiB and 2% of bench row 1's throughput per 25 points (12 runs each
// at 100, 125, 150 and 175, one lab, alternating: 44.4, 48.2, 51.2 and
// 53.8 MiB). 125 keeps the row's peak RSS below what it was before the
// runner-side supervisor (issue 14) while its throughput is at least as
// high, with 15% less CPU; 140 bought no throughput over 125 in the same
// runs. bench/README.md has the runs. An idle bot's heap is a few MB, so
// its RSS hardly moves.
const GCPercent = 125

// Tune sets GCPercent unless getenv("GOGC") is set: an operator's GOGC
// wins.
func Tune(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(GCPercent)
	}
}
