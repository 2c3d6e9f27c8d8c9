package main

import (
	"crypto/rand"
	"fmt"
	"strings"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/bmc"
	"github.com/nixdeploy/nixdeploy/internal/bmcfake"
	"github.com/nixdeploy/nixdeploy/internal/simfleet"
)

// The demo's Turing Pi board: a fake BMC (the same strict one the tests
// use: authentication, expiring tokens, slots 1-4, bmcd's answers) on
// loopback, with the four RK1 nodes in its slots. Its reset power-cycles
// the simulated node, so the nightly run can recover rk1-node1, which
// hangs after its switch.

// demoHang is the node that hangs after the nightly switch.
const demoHang = "rk1-node1"

// demoBoard is the fake BMC and the client fleet the bot and the
// deployer drive it with.
type demoBoard struct {
	fake     *bmcfake.BMC
	password string
	slots    map[int]string // slot → host
	fleet    *simfleet.Fleet
}

// startDemoBoard starts the fake BMC; attach the simulated fleet before
// anything resets a node.
func startDemoBoard() *demoBoard {
	d := &demoBoard{password: rand.Text(), slots: map[int]string{}}
	for _, h := range demoHosts {
		if h.tag == "rk1" {
			d.slots[len(d.slots)+1] = h.name
		}
	}
	d.fake = bmcfake.New(bmcfake.Options{User: "root", Password: d.password, Power: [4]bool{true, true, true, true}, OnReset: d.reset})
	for slot, host := range d.slots {
		d.fake.WriteUART(slot, "U-Boot SPL 2024.07 (Jun 12 2026 - 03:00:00 +0000)\r\n<<< NixOS Stage 2 >>>\r\n\x1b[0;32m[  OK  ]\x1b[0m Reached target Multi-User System.\r\n\r\n"+host+" login: ")
	}
	return d
}

func (d *demoBoard) close() { d.fake.Close() }

// hung writes what a stalled RK1 prints on its console.
func (d *demoBoard) hung(host string) {
	for slot, h := range d.slots {
		if h == host {
			d.fake.WriteUART(slot, "\r\n[ 8123.402911] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:\r\n[ 8123.403007] rcu:     2-...0: (1 GPs behind) idle=6d4/1/0x4000000000000000\r\n[ 8144.422316] watchdog: BUG: soft lockup - CPU#2 stuck for 22s! [systemd:1]\r\n")
		}
	}
}

// reset is the fake BMC's reset of slot: the simulated node reboots.
func (d *demoBoard) reset(slot int) {
	host := d.slots[slot]
	d.fake.WriteUART(slot, "\r\nU-Boot SPL 2024.07 (Jun 12 2026 - 03:00:00 +0000)\r\nTrying to boot from MMC1\r\n<<< NixOS Stage 1 >>>\r\n<<< NixOS Stage 2 >>>\r\n\x1b[0;32m[  OK  ]\x1b[0m Reached target Multi-User System.\r\n\r\n"+host+" login: ")
	if d.fleet != nil {
		d.fleet.PowerReset(host)
	}
}

// config is the [[bmcs]] table of the demo's fleet config.
func (d *demoBoard) config() string {
	return fmt.Sprintf("\n[[bmcs]]\nname = \"turingpi\"\naddress = %q\nuser = \"root\"\ncert_sha256 = %q\n", d.fake.Address(), nixdeploy.FormatFingerprint(d.fake.Fingerprint()))
}

// hostConfig is the bmc keys of host, if it sits on the board.
func (d *demoBoard) hostConfig(host string) string {
	for slot, h := range d.slots {
		if h == host {
			return fmt.Sprintf("bmc = \"turingpi\"\nbmc_node = %d\n", slot)
		}
	}
	return ""
}

// client is the board as the bot and the deployer reach it, with the
// password a real one would read from NIXDEPLOY_BMC_PASSWORD_TURINGPI.
func (d *demoBoard) client(cfg *nixdeploy.Config) (*bmc.Fleet, error) {
	return bmc.NewFleet(cfg, bmc.FleetOptions{
		Getenv: func(string) string { return d.password },
		Redact: func(s string) string { return strings.ReplaceAll(s, d.password, "[REDACTED]") },
	})
}
