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
// or so, and bench row 1 (a 200 MB log) spent a sixth of the process's CPU
// in it. 150 runs it a third less often: run by run against 100, the
// process used 16% less CPU for about 6 MiB more peak RSS (45 to 51 MiB,
// against a goal of 64 MB and the VM's 256 MB; bench/README.md has the
// runs). Its effect on the row's wall time was within this machine's
// drift. An idle bot's heap is a few MB, so its RSS hardly moves.
const GCPercent = 150

// Tune sets GCPercent unless getenv("GOGC") is set: an operator's GOGC
// wins.
func Tune(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(GCPercent)
	}
}
