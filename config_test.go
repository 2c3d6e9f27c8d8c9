package nixdeploy_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

const validConfig = `
flake = "/f"
installer_flake = "/f/nixos-installer"
[slack]
destructive = true
approvers = ["UB"]
[[hosts]]
name = "ganon"
address = "10.0.0.1"
system = "x86_64-linux"
disk = "/dev/nvme0n1"
[[hosts]]
name = "rk1-node1"
address = "10.0.0.11"
system = "aarch64-linux"
tags = ["rk1"]
disk = "/dev/mmcblk0"
[[hosts]]
name = "rk1-node2"
address = "10.0.0.12"
system = "aarch64-linux"
tags = ["rk1"]
disk = "/dev/mmcblk0"
`

func TestExampleFleet(t *testing.T) {
	cfg, err := nixdeploy.LoadConfig("examples/fleet/nixdeploy.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct{ addr, system, disk string }{
		"ganon":     {"192.168.1.100", nixdeploy.SystemX86_64, "/dev/nvme0n1"},
		"rk1-node1": {"192.168.1.11", nixdeploy.SystemAarch64, "/dev/disk/by-path/platform-fe2e0000.mmc"},
		"rk1-node2": {"192.168.1.12", nixdeploy.SystemAarch64, "/dev/disk/by-path/platform-fe2e0000.mmc"},
		"rk1-node3": {"192.168.1.13", nixdeploy.SystemAarch64, "/dev/disk/by-path/platform-fe2e0000.mmc"},
		"rk1-node4": {"192.168.1.14", nixdeploy.SystemAarch64, "/dev/disk/by-path/platform-fe2e0000.mmc"},
	}
	if len(cfg.Hosts) != len(want) {
		t.Fatalf("%d hosts, want %d", len(cfg.Hosts), len(want))
	}
	for _, h := range cfg.Hosts {
		w, ok := want[h.Name]
		if !ok || h.Address != w.addr || h.System != w.system || h.Disk != w.disk || h.Port != 22 {
			t.Errorf("host %+v, want %+v", h, w)
		}
		if strings.HasPrefix(h.Name, "rk1-") && (!h.HasTag("rk1") || !h.BuildOnTarget) {
			t.Errorf("%s: want tag rk1 and build_on_target", h.Name)
		}
	}
	rk1, err := cfg.Select([]string{"@rk1"})
	if err != nil || len(rk1) != 4 {
		t.Fatalf("@rk1 = %v, %v", rk1, err)
	}
	if len(cfg.Schedules) != 1 || cfg.Schedules[0].Hosts[0] != "@rk1" || cfg.Schedules[0].Action != nixdeploy.ActionSwitch {
		t.Fatalf("schedules = %+v", cfg.Schedules)
	}
	if cfg.Slack.ApprovalTTL.Duration != 15*time.Minute {
		t.Errorf("approval ttl = %v", cfg.Slack.ApprovalTTL)
	}
	if got := cfg.InstallerRef(cfg.Hosts[0]); got != "/home/michael/dots/nix/nixos-installer#ganon" {
		t.Errorf("installer ref = %q", got)
	}
}

func TestStrictDecodeNamesKeyAndLine(t *testing.T) {
	src := strings.Replace(validConfig, "[slack]\n", "[slack]\napprover = [\"UB\"]\n", 1) +
		"[[hosts]]\nname = \"x\"\nadress = \"10.0.0.9\"\n"
	_, err := nixdeploy.ParseConfig("f.toml", []byte(src))
	var ce *nixdeploy.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want ConfigError", err)
	}
	want := []string{`line 5, column 1: unknown key "slack.approver"`, `line 27, column 1: unknown key "hosts.adress"`}
	if !slices.Equal(ce.Problems, want) {
		t.Fatalf("problems =\n%s\nwant\n%s", strings.Join(ce.Problems, "\n"), strings.Join(want, "\n"))
	}
}

func TestTypeErrorHasLine(t *testing.T) {
	_, err := nixdeploy.ParseConfig("f.toml", []byte(validConfig+"[[schedules]]\nname = \"n\"\ncron = 5\n"))
	if err == nil || !strings.Contains(err.Error(), "line 26, column 8: cannot decode TOML integer") {
		t.Fatalf("err = %v, want a line number", err)
	}
	_, err = nixdeploy.ParseConfig("f.toml", []byte(strings.Replace(validConfig, "[slack]\n", "[slack]\napproval_ttl = \"soon\"\n", 1)))
	if err == nil || !strings.Contains(err.Error(), `bad duration "soon"`) {
		t.Fatalf("err = %v, want a bad duration", err)
	}
}

// hostGanon ends ganon's table in validConfig, where per-host keys go.
const hostGanon = "disk = \"/dev/nvme0n1\"\n"

// TestInstallOptionsAccepted: the per-host install options in their valid
// forms.
func TestInstallOptionsAccepted(t *testing.T) {
	cfg, err := nixdeploy.ParseConfig("ok.toml", []byte(strings.Replace(validConfig, hostGanon, hostGanon+
		"disk_key = \"/tmp/secret.key\"\nphases = [\"kexec\", \"disko\", \"install\"]\nkexec = \"https://example.org/x-aarch64-linux.tar.gz\"\nkexec_extra_flags = \"--dtb=/boot/x.dtb\"\n[hosts.initrd_ssh]\nport = 2222\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	h, _ := cfg.Host("ganon")
	if !h.LUKS() || h.InitrdSSH == nil || h.InitrdSSH.HostKeyPath != nixdeploy.DefaultInitrdHostKeyPath || len(h.Phases) != 3 {
		t.Errorf("ganon = %+v", h)
	}
}

func TestValidation(t *testing.T) {
	tests := []struct {
		name string
		edit func(string) string
		want string
	}{
		{"duplicate name", func(s string) string { return strings.Replace(s, `"rk1-node2"`, `"rk1-node1"`, 1) }, `host "rk1-node1": duplicate host name`},
		{"duplicate address", func(s string) string { return strings.Replace(s, `"10.0.0.12"`, `"10.0.0.11"`, 1) }, `duplicate address 10.0.0.11 (also host "rk1-node1")`},
		{"bad name", func(s string) string { return strings.Replace(s, `"ganon"`, `"Ganon!"`, 1) }, `host "Ganon!": name must match [a-z0-9-]`},
		{"reserved name", func(s string) string { return strings.Replace(s, `"ganon"`, `"status"`, 1) }, `host "status": name is a /nixdeploy command word`},
		{"numeric name", func(s string) string { return strings.Replace(s, `"ganon"`, `"20"`, 1) }, `host "20": name must not be all digits`},
		{"bad system", func(s string) string { return strings.Replace(s, `"x86_64-linux"`, `"riscv64-linux"`, 1) }, `system "riscv64-linux" must be`},
		{"bad disk", func(s string) string { return strings.Replace(s, `"/dev/nvme0n1"`, `"nvme0n1"`, 1) }, `must be a device path under /dev/`},
		{"no approvers", func(s string) string { return strings.Replace(s, `approvers = ["UB"]`, ``, 1) }, `destructive actions are enabled but approvers is empty`},
		{"bad cron", func(s string) string { return s + schedule(`cron = "0 25 * * *"`) }, `bad cron spec "0 25 * * *"`},
		{"bad zone", func(s string) string { return s + schedule(`timezone = "Europe/Atlantis"`) }, `unknown time zone "Europe/Atlantis"`},
		{"selector matches nothing", func(s string) string { return s + schedule(`hosts = ["@gpu"]`) }, `selector matches nothing: unknown host: no host has tag "gpu"`},
		{"scheduled install", func(s string) string { return s + schedule(`action = "install"`) }, `is destructive and cannot be scheduled`},
		{"bad strategy", func(s string) string { return s + schedule(`strategy = "yolo"`) }, `strategy "yolo" must be rolling, parallel or canary`},
		{"canary outside the selection", func(s string) string {
			return s + strings.Replace(schedule(`canary = "ganon"`), `strategy = "rolling"`, `strategy = "canary"`, 1)
		}, `canary "ganon" is not one of the schedule's hosts`},
		{"canary without the strategy", func(s string) string { return s + schedule(`canary = "rk1-node1"`) }, `canary is set but strategy is "rolling"`},
		{"check without hosts", func(s string) string { return s + "[[health_checks]]\nunits = [\"sshd.service\"]\n" }, `health_checks[0]: hosts is empty`},
		{"check matching nothing", func(s string) string {
			return s + "[[health_checks]]\nhosts = [\"@gpu\"]\nunits = [\"sshd.service\"]\n"
		}, `health_checks[0]: hosts selector matches nothing`},
		{"check with nothing to check", func(s string) string { return s + "[[health_checks]]\nhosts = [\"@rk1\"]\n" }, `units and commands are both empty`},
		{"unit without type", func(s string) string { return s + "[[health_checks]]\nhosts = [\"@rk1\"]\nunits = [\"sshd\"]\n" }, `"sshd" is not a systemd unit name with its type`},
		{"unit as a flag", func(s string) string {
			return s + "[[health_checks]]\nhosts = [\"@rk1\"]\nunits = [\"--all.service\"]\n"
		}, `"--all.service" is not a systemd unit name`},
		{"multi-line command", func(s string) string {
			return s + "[[health_checks]]\nhosts = [\"@rk1\"]\ncommands = [\"true\\nfalse\"]\n"
		}, `spans several lines`},
		{"empty command", func(s string) string { return s + "[[health_checks]]\nhosts = [\"@rk1\"]\ncommands = [\" \"]\n" }, `an empty command`},
		{"long settle", func(s string) string {
			return s + "[[health_checks]]\nhosts = [\"@rk1\"]\nunits = [\"sshd.service\"]\nsettle = \"30m\"\n"
		}, `settle 30m0s must be between 0s and 10m0s`},
		{"negative timeout", func(s string) string {
			return s + "[[health_checks]]\nhosts = [\"@rk1\"]\nunits = [\"sshd.service\"]\ntimeout = \"-1s\"\n"
		}, `timeout -1s must be more than 0s`},
		{"guard window too long", func(s string) string { return s + "[guard]\nwindow = \"2h\"\n" }, `guard.window: 2h0m0s must be between 1s and 1h0m0s`},
		{"runner without pin", func(s string) string { return s + "[runner]\naddress = \"nix@runner.lan\"\n" }, `runner: set host_key or known_hosts`},
		{"bad runner address", func(s string) string { return s + "[runner]\naddress = \"runner.lan\"\nhost_key = \"k\"\n" }, `must look like user@host`},
		{"relative disk key", func(s string) string {
			return strings.Replace(s, hostGanon, hostGanon+"disk_key = \"secret.key\"\n", 1)
		}, `disk_key "secret.key" must be an absolute path`},
		{"initrd without disk key", func(s string) string {
			return strings.Replace(s, hostGanon, hostGanon+"[hosts.initrd_ssh]\nport = 2222\n", 1)
		}, `initrd_ssh unlocks LUKS, but the host has no disk_key`},
		{"initrd on the ssh port", func(s string) string {
			return strings.Replace(s, hostGanon, hostGanon+"disk_key = \"/tmp/secret.key\"\n[hosts.initrd_ssh]\nport = 22\n", 1)
		}, `initrd_ssh.port 22 is the host's own SSH port`},
		{"unknown phase", func(s string) string {
			return strings.Replace(s, hostGanon, hostGanon+"phases = [\"kexec\", \"wipe\"]\n", 1)
		}, `unknown phase "wipe"`},
		{"kexec without its phase", func(s string) string {
			return strings.Replace(s, hostGanon, hostGanon+"phases = [\"disko\", \"install\"]\nkexec_extra_flags = \"--dtb=/x.dtb\"\n", 1)
		}, `need the kexec phase`},
		{"kexec not a tarball", func(s string) string {
			return strings.Replace(s, hostGanon, hostGanon+"kexec = \"https://example.org/kexec.zip\"\n", 1)
		}, `must be an http(s) URL or an absolute path`},
		{"kexec relative", func(s string) string {
			return strings.Replace(s, hostGanon, hostGanon+"kexec = \"kexec.tar.gz\"\n", 1)
		}, `must be an http(s) URL or an absolute path`},
		{"same reactions", func(s string) string {
			return strings.Replace(s, "[slack]\n", "[slack]\napprove_reaction = \"x\"\n", 1)
		}, `approve_reaction and reject_reaction are both "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := nixdeploy.ParseConfig("ok.toml", []byte(validConfig)); err != nil {
				t.Fatalf("base config invalid: %v", err)
			}
			_, err := nixdeploy.ParseConfig("f.toml", []byte(tt.edit(validConfig)))
			var ce *nixdeploy.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want ConfigError", err)
			}
			if !slices.ContainsFunc(ce.Problems, func(p string) bool { return strings.Contains(p, tt.want) }) {
				t.Fatalf("problems %q lack %q", ce.Problems, tt.want)
			}
		})
	}
}

func schedule(line string) string {
	fields := map[string]string{"name": `"nightly"`, "cron": `"0 3 * * *"`, "timezone": `"Europe/Berlin"`, "hosts": `["@rk1"]`, "action": `"switch"`, "strategy": `"rolling"`}
	k, _, _ := strings.Cut(line, " = ")
	var b strings.Builder
	b.WriteString("[[schedules]]\n" + line + "\n")
	for _, f := range []string{"name", "cron", "timezone", "hosts", "action", "strategy"} {
		if f != k {
			b.WriteString(f + " = " + fields[f] + "\n")
		}
	}
	return b.String()
}

func TestValidationCollectsEveryProblem(t *testing.T) {
	src := strings.NewReplacer(`"rk1-node2"`, `"rk1-node1"`, `"10.0.0.1"`, `"10.0.0.11"`, `approvers = ["UB"]`, "").Replace(validConfig) +
		schedule(`cron = "nope"`)
	_, err := nixdeploy.ParseConfig("f.toml", []byte(src))
	var ce *nixdeploy.ConfigError
	if !errors.As(err, &ce) || len(ce.Problems) != 4 {
		t.Fatalf("err = %v, want exactly 4 problems", err)
	}
	for _, p := range ce.Problems {
		if strings.Contains(p, "\n") {
			t.Errorf("problem spans lines: %q", p)
		}
	}
}

func TestSelect(t *testing.T) {
	cfg, err := nixdeploy.ParseConfig("f.toml", []byte(validConfig))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		sel  []string
		want []string
		err  string
	}{
		{[]string{"rk1-node2", "ganon"}, []string{"ganon", "rk1-node2"}, ""},
		{[]string{"@rk1", "rk1-node1"}, []string{"rk1-node1", "rk1-node2"}, ""},
		{[]string{"rk1-*"}, []string{"rk1-node1", "rk1-node2"}, ""},
		{[]string{"rk1-node[2-4]"}, []string{"rk1-node2"}, ""},
		{[]string{"rk1-nod2"}, nil, `unknown host: "rk1-nod2" (closest hosts: rk1-node2, rk1-node1, ganon)`},
		{[]string{"@gpu"}, nil, `no host has tag "gpu"`},
		{[]string{"web-*"}, nil, `pattern "web-*" matches no host`},
		{[]string{"rk1-[2"}, nil, `bad pattern`},
		{nil, nil, "no hosts given"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.sel, ","), func(t *testing.T) {
			hosts, err := cfg.Select(tt.sel)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, h := range hosts {
				got = append(got, h.Name)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
	if _, err := cfg.Select([]string{"nope"}); !errors.Is(err, nixdeploy.ErrUnknownHost) {
		t.Fatalf("unknown host error does not wrap ErrUnknownHost: %v", err)
	}
}

func TestParseAction(t *testing.T) {
	for in, want := range map[string]nixdeploy.Action{"switch": nixdeploy.ActionSwitch, "dry-run": nixdeploy.ActionDryActivate, "install": nixdeploy.ActionInstall} {
		got, err := nixdeploy.ParseAction(in)
		if err != nil || got != want {
			t.Errorf("ParseAction(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := nixdeploy.ParseAction("reboot"); err == nil {
		t.Error("ParseAction accepted reboot")
	}
	if !nixdeploy.ActionInstall.Destructive() || nixdeploy.ActionSwitch.Destructive() {
		t.Error("only install is destructive")
	}
}

func TestParseSSHAddress(t *testing.T) {
	tests := []struct{ in, user, hostport, err string }{
		{"nix@runner.lan", "nix", "runner.lan:22", ""},
		{"nix@10.0.0.5:2222", "nix", "10.0.0.5:2222", ""},
		{"nix@[::1]:2222", "nix", "[::1]:2222", ""},
		{"runner.lan", "", "", "must look like user@host"},
		{"nix@host:99999", "", "", "bad port"},
		{"nix@bad host", "", "", "bad host"},
	}
	for _, tt := range tests {
		u, hp, err := nixdeploy.ParseSSHAddress(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || u != tt.user || hp != tt.hostport {
			t.Errorf("%q = %q %q %v", tt.in, u, hp, err)
		}
	}
}

// TestSameAddressOtherPort: hosts behind one address (a NAT forwarding a
// port to each) are told apart by port; only address and port together
// must be unique.
func TestSameAddressOtherPort(t *testing.T) {
	src := strings.Replace(validConfig, "address = \"10.0.0.12\"\n", "address = \"10.0.0.11\"\nport = 2222\n", 1)
	cfg, err := nixdeploy.ParseConfig("f.toml", []byte(src))
	if err != nil {
		t.Fatalf("same address, other port: %v", err)
	}
	if a, b := cfg.Hosts[1].SSHAddr(), cfg.Hosts[2].SSHAddr(); a != "10.0.0.11:22" || b != "10.0.0.11:2222" {
		t.Errorf("addresses %s and %s", a, b)
	}
}
