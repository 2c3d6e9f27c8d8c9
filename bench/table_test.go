package bench_test

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy/internal/testtool"
)

// minRuns is the fewest runs a row is summed up from.
const minRuns = 5

// dist is the median, minimum and maximum of one measure over the runs.
type dist struct{ med, min, max float64 }

func distOf(xs []float64) dist {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return dist{math.NaN(), math.NaN(), math.NaN()}
	}
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return dist{med: med, min: s[0], max: s[n-1]}
}

// String formats with up to three significant digits: "12.3 (11.9–13.0)".
func (d dist) String() string { return d.format(num) }

func (d dist) format(f func(float64) string) string {
	return fmt.Sprintf("%s (%s–%s)", f(d.med), f(d.min), f(d.max))
}

func num(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// samples collects the runs of a benchmark.
type samples map[string][]float64

func (s samples) add(name string, v float64) { s[name] = append(s[name], v) }

func (s samples) dist(name string) dist { return distOf(s[name]) }

// enough fails the benchmark when it ran fewer than minRuns times: a
// median of one or two runs says little.
func (s samples) enough(b *testing.B, name string) {
	b.Helper()
	if n := len(s[name]); n < minRuns {
		b.Fatalf("%d runs of %s; run with -benchtime=%dx or more", n, name, minRuns)
	}
}

func mark(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// row is one line of the table bench/run prints.
type row struct {
	n                    int
	what, ours, ref, res string
	goal, met            string
}

// write puts the row where bench/run collects it, and in the benchmark's
// log.
func (r row) write(b *testing.B) {
	b.Helper()
	cells := []string{fmt.Sprint(r.n), r.what, r.ours, r.ref, r.res, r.goal, r.met}
	for i, c := range cells {
		cells[i] = strings.ReplaceAll(c, "|", `\|`)
	}
	line := "| " + strings.Join(cells, " | ") + " |\n"
	b.Log(line)
	dir := os.Getenv(envOut)
	if dir == "" {
		return
	}
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("row%d.md", r.n)), []byte(line), 0o644); err != nil {
		b.Fatal(err)
	}
}

// The benchmark scripts are shell; shellcheck holds them to the same
// standard as the rest of the repository's scripts.
func TestScriptsShellcheck(t *testing.T) {
	testtool.Shellcheck(t, ".", "run", "paired")
}
