package nixdeploy_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/nixdeploy/nixdeploy"
)

// TestValidationProblemsCarryLines: each validation problem names the
// config line it is about: the field's own line where the entry sets it,
// the entry's header otherwise.
func TestValidationProblemsCarryLines(t *testing.T) {
	const toml = `flake = "/f"
installer_flake = "/f/nixos-installer"
[slack]
destructive = true
[secrets]
admin_recipients = ["nope"]

[[hosts]]
name = "ganon"
address = "10.0.0.1"
system = "x86_64-linux"
disk = "nvme0n1"
disk_key = "/tmp/secret.key"
[hosts.initrd_ssh]
port = 22

[[hosts]]
name = "ganon"
address = "10.0.0.2"
system = "x86_64-linux"
disk = "/dev/nvme0n1"

[[hosts]]
address = "10.0.0.3"
system = "sparc"
disk = "/dev/sda"

[[schedules]]
name = "nightly"
cron = "61 * * * *"
hosts = ["ganon"]
`
	_, err := nixdeploy.ParseConfig("fleet.toml", []byte(toml))
	var ce *nixdeploy.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a ConfigError", err)
	}
	want := []string{
		`line 12: host "ganon": disk "nvme0n1" must be a device path under /dev/`,
		`line 15: host "ganon": initrd_ssh.port 22 is the host's own SSH port; the initrd needs a port of its own`,
		`line 18: host "ganon": duplicate host name (also hosts[0])`,
		`line 23: hosts[2]: name is missing`,
		`line 25: hosts[2]: system "sparc" must be x86_64-linux or aarch64-linux`,
		`line 6: secrets.admin_recipients: "nope" is not an age recipient (age1...)`,
		`line 3: slack: destructive actions are enabled but approvers is empty`,
		`line 30: schedule "nightly": bad cron spec "61 * * * *": end of range (61) above maximum (59): 61`,
	}
	for _, w := range want {
		if !slices.Contains(ce.Problems, w) {
			t.Errorf("missing problem %q", w)
		}
	}
	if t.Failed() {
		for _, p := range ce.Problems {
			t.Log(p)
		}
	}
}
