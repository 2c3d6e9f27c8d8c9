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
// or so. Raising the target trades peak RSS for CPU and throughput: in
// bench row 1 (a 200 MB log) each 25 points cost about 3.5 MiB of peak RSS
// and gave 1–2% of throughput and a tenth less CPU (8 runs each at 100,
// 125 and 150, one lab, alternating: 44.4, 48.2 and 51.2 MiB).
// At 150, with SQLite's page cache bounded (db.cacheKiB), the row's peak
// RSS is still below what it was before the runner-side supervisor
// (issue 14), at Go's default, and its throughput at least as high.
// bench/README.md has the runs. An idle bot's heap is a few MB, so its RSS
// hardly moves.
const GCPercent = 150

// Tune sets GCPercent unless getenv("GOGC") is set: an operator's GOGC
// wins.
func Tune(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(GCPercent)
	}
}
