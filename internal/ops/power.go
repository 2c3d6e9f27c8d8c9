package ops

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nixdeploy/nixdeploy"
)

// PowerReader reads the power state of every host on a Turing Pi board;
// *bmc.Fleet satisfies it.
type PowerReader interface {
	PowerStates(ctx context.Context) (map[string]nixdeploy.PowerState, error)
}

var powerDesc = prometheus.NewDesc("nixdeploy_node_power_on",
	"Whether a host's slot on its Turing Pi board is powered (1) or not (0), read from the BMC at scrape time; absent while the BMC cannot tell.",
	[]string{"host"}, nil)

// powerCollector asks the BMCs at scrape time, so the gauge is what the
// board says now, not what nixdeploy last did to it.
type powerCollector struct {
	power PowerReader
}

func (c *powerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- powerDesc }

func (c *powerCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	states, err := c.power.PowerStates(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(powerDesc, fmt.Errorf("read power states: %w", err))
		return
	}
	for host, st := range states {
		switch st {
		case nixdeploy.PowerStateOn:
			ch <- prometheus.MustNewConstMetric(powerDesc, prometheus.GaugeValue, 1, host)
		case nixdeploy.PowerStateOff:
			ch <- prometheus.MustNewConstMetric(powerDesc, prometheus.GaugeValue, 0, host)
		}
	}
}
