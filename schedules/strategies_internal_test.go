package schedules

import (
	"maps"
	"slices"
	"testing"

	"github.com/nixdeploy/nixdeploy"
)

// The config accepts exactly the strategies the scheduler has.
func TestStrategiesTableMatchesConfig(t *testing.T) {
	got := slices.Sorted(maps.Keys(strategies))
	want := slices.Sorted(slices.Values(nixdeploy.Strategies))
	if !slices.Equal(got, want) {
		t.Fatalf("schedules has strategies %v, the config accepts %v", got, want)
	}
}
