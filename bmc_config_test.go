package nixdeploy_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy"
)

const testFingerprint = "0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9"

const goodBoard = `
[[bmcs]]
name = "turingpi"
address = "10.0.0.10"
user = "root"
cert_sha256 = "` + testFingerprint + `"
`

func TestExampleFleetBMC(t *testing.T) {
	cfg, err := nixdeploy.LoadConfig("examples/fleet/nixdeploy.toml")
	if err != nil {
		t.Fatal(err)
	}
	b, ok := cfg.BMC("turingpi")
	if !ok {
		t.Fatal("no turingpi board")
	}
	if b.HostPort() != "192.168.1.10:443" || b.PasswordEnv() != "NIXDEPLOY_BMC_PASSWORD_TURINGPI" {
		t.Errorf("board %+v: host:port %s, env %s", b, b.HostPort(), b.PasswordEnv())
	}
	slots := map[int]string{}
	for _, h := range cfg.Hosts {
		if h.BMC == "" {
			continue
		}
		if h.BMC != "turingpi" {
			t.Errorf("%s: bmc %q", h.Name, h.BMC)
		}
		slots[h.BMCNode] = h.Name
	}
	if s := cfg.Schedules[0]; s.Name != "nightly-rk1" || s.Recover != nixdeploy.RecoverPowerReset {
		t.Errorf("schedule %s recovers with %q, want power-reset", s.Name, s.Recover)
	}
	want := map[int]string{1: "rk1-node1", 2: "rk1-node2", 3: "rk1-node3", 4: "rk1-node4"}
	if len(slots) != 4 {
		t.Fatalf("slots %v, want %v", slots, want)
	}
	for n, h := range want {
		if slots[n] != h {
			t.Errorf("slot %d holds %q, want %q", n, slots[n], h)
		}
	}
}

func TestBMCConfigValid(t *testing.T) {
	data := strings.Replace(validConfig, `name = "rk1-node1"`, `name = "rk1-node1"
bmc = "turingpi"
bmc_node = 1`, 1)
	data = strings.Replace(data, `name = "rk1-node2"`, `name = "rk1-node2"
bmc = "turingpi"
bmc_node = 4`, 1) + goodBoard
	cfg, err := nixdeploy.ParseConfig("t.toml", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	h, _ := cfg.Host("rk1-node2")
	if h.BMC != "turingpi" || h.BMCNode != 4 {
		t.Errorf("host %+v", h)
	}
	if b, _ := cfg.BMC("turingpi"); b.HostPort() != "10.0.0.10:443" {
		t.Errorf("host:port %q", b.HostPort())
	}
}

func TestBMCConfigProblems(t *testing.T) {
	slot := func(host string, node int) string {
		return "name = \"" + host + "\"\nbmc = \"turingpi\"\nbmc_node = " + string(rune('0'+node))
	}
	withSlots := func(a, b int) string {
		d := strings.Replace(validConfig, `name = "rk1-node1"`, slot("rk1-node1", a), 1)
		return strings.Replace(d, `name = "rk1-node2"`, slot("rk1-node2", b), 1)
	}
	board := func(fields string) string { return "\n[[bmcs]]\n" + fields + "\n" }
	cases := []struct {
		name, data, want string
	}{
		{"slot zero", withSlots(0, 2) + goodBoard, "bmc_node 0 must be a slot from 1 to 4"},
		{"slot five", withSlots(1, 5) + goodBoard, "bmc_node 5 must be a slot from 1 to 4"},
		{"slot twice", withSlots(3, 3) + goodBoard, `slot 3 is also host "rk1-node1"'s`},
		{"unknown board", withSlots(1, 2), `bmc "turingpi" is not a [[bmcs]] board`},
		{"node without board", strings.Replace(validConfig, `name = "rk1-node1"`, "name = \"rk1-node1\"\nbmc_node = 2", 1), "bmc_node is set but bmc is not"},
		{"short fingerprint", withSlots(1, 2) + board(`name = "turingpi"
address = "10.0.0.10"
user = "root"
cert_sha256 = "AB:CD"`), "has 4 hex digits"},
		{"not hex", withSlots(1, 2) + board(`name = "turingpi"
address = "10.0.0.10"
user = "root"
cert_sha256 = "`+strings.Repeat("zz", 32)+`"`), "is not hexadecimal"},
		{"ragged colons", withSlots(1, 2) + board(`name = "turingpi"
address = "10.0.0.10"
user = "root"
cert_sha256 = "`+strings.Replace(testFingerprint, "0A:1B", "0A1:B", 1)+`"`), "colon-separated hex bytes"},
		{"missing fingerprint", withSlots(1, 2) + board(`name = "turingpi"
address = "10.0.0.10"
user = "root"`), "cert_sha256 is missing"},
		{"factory certificate", withSlots(1, 2) + board(`name = "turingpi"
address = "10.0.0.10"
user = "root"
cert_sha256 = "`+strings.ToLower(nixdeploy.FactoryBMCCertSHA256)+`"`), "private key is public"},
		{"bad port", withSlots(1, 2) + board(`name = "turingpi"
address = "10.0.0.10:99999"
user = "root"
cert_sha256 = "`+testFingerprint+`"`), "port from 1 to 65535"},
		{"no user", withSlots(1, 2) + board(`name = "turingpi"
address = "10.0.0.10"
cert_sha256 = "`+testFingerprint+`"`), "user is missing"},
		{"duplicate board", withSlots(1, 2) + goodBoard + goodBoard, "duplicate bmc name"},
		{"bad board name", withSlots(1, 2) + board(`name = "Turing Pi"
address = "10.0.0.10"
user = "root"
cert_sha256 = "`+testFingerprint+`"`), "name must match"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := nixdeploy.ParseConfig("t.toml", []byte(tc.data))
			var ce *nixdeploy.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a ConfigError", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("problems:\n%v\nwant one containing %q", err, tc.want)
			}
		})
	}
}

func TestParseFingerprint(t *testing.T) {
	want, err := nixdeploy.ParseFingerprint(testFingerprint)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		strings.ToLower(testFingerprint),
		strings.ReplaceAll(testFingerprint, ":", ""),
		"sha256 Fingerprint=" + testFingerprint,
		"SHA256:" + strings.ReplaceAll(testFingerprint, ":", ""),
	} {
		got, err := nixdeploy.ParseFingerprint(s)
		if err != nil || got != want {
			t.Errorf("ParseFingerprint(%q) = %x, %v; want %x", s, got, err, want)
		}
	}
	if got := nixdeploy.FormatFingerprint(want); got != testFingerprint {
		t.Errorf("FormatFingerprint = %s, want %s", got, testFingerprint)
	}
}

func TestReservedBMCWords(t *testing.T) {
	for _, w := range []string{"power", "uart"} {
		data := strings.Replace(validConfig, `name = "ganon"`, `name = "`+w+`"`, 1)
		if _, err := nixdeploy.ParseConfig("t.toml", []byte(data)); err == nil || !strings.Contains(err.Error(), "command word") {
			t.Errorf("host named %s: err = %v, want a command-word problem", w, err)
		}
	}
}

func TestScheduleRecoverKey(t *testing.T) {
	onBoard := strings.Replace(validConfig, `name = "rk1-node1"`, "name = \"rk1-node1\"\nbmc = \"turingpi\"\nbmc_node = 1", 1)
	onBoard = strings.Replace(onBoard, `name = "rk1-node2"`, "name = \"rk1-node2\"\nbmc = \"turingpi\"\nbmc_node = 2", 1) + goodBoard
	schedule := func(hosts, recover string) string {
		return "\n[[schedules]]\nname = \"nightly-rk1\"\ncron = \"0 3 * * *\"\nhosts = " + hosts + "\nrecover = \"" + recover + "\"\n"
	}
	cfg, err := nixdeploy.ParseConfig("t.toml", []byte(onBoard+schedule(`["@rk1"]`, "power-reset")))
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Schedules[len(cfg.Schedules)-1]; s.Recover != nixdeploy.RecoverPowerReset {
		t.Errorf("recover = %q", s.Recover)
	}
	if _, err := nixdeploy.ParseConfig("t.toml", []byte(onBoard+schedule(`["ganon"]`, "none"))); err != nil {
		t.Errorf("recover = none: %v", err)
	}
	for _, tc := range []struct{ name, data, want string }{
		{"host without bmc", onBoard + schedule(`["@rk1", "ganon"]`, "power-reset"), `needs a BMC for every host, and ganon has no bmc`},
		{"unknown value", onBoard + schedule(`["@rk1"]`, "reboot"), `recover "reboot" must be none or power-reset`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := nixdeploy.ParseConfig("t.toml", []byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
