package nixdeploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/nixdeploy/nixdeploy"
)

// TestExamplePortsMatchNixTree: the port the bot waits on after an install
// (and pins in known_hosts) must be the one the installed system's sshd
// listens on, which nix/ configures: services.openssh.ports (default 22)
// and the initrd's boot.initrd.network.ssh.port.
func TestExamplePortsMatchNixTree(t *testing.T) {
	cfg, err := nixdeploy.LoadConfig(filepath.Join("examples", "fleet", "nixdeploy.toml"))
	if err != nil {
		t.Fatal(err)
	}
	sshPort := 22
	initrdPort := 0
	portsRE := regexp.MustCompile(`(?s)services\.openssh\s*=\s*\{.*?ports\s*=\s*\[\s*(\d+)`)
	initrdRE := regexp.MustCompile(`(?s)(?:initrd\.network\.ssh|network\.ssh)\s*=\s*\{[^}]*?port\s*=\s*(\d+)|initrd\.network\.ssh\.port\s*=\s*(\d+)`)
	err = filepath.WalkDir("nix", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".nix" {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if m := portsRE.FindSubmatch(b); m != nil {
			sshPort, _ = strconv.Atoi(string(m[1]))
		}
		if m := initrdRE.FindSubmatch(b); m != nil {
			v := string(m[1]) + string(m[2])
			initrdPort, _ = strconv.Atoi(v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range cfg.Hosts {
		if h.Port != sshPort {
			t.Errorf("%s: the config says port %d, nix/ configures sshd on %d", h.Name, h.Port, sshPort)
		}
		if h.InitrdSSH != nil && initrdPort != 0 && h.InitrdSSH.Port != initrdPort {
			t.Errorf("%s: initrd_ssh.port is %d, nix/ configures the initrd's sshd on %d", h.Name, h.InitrdSSH.Port, initrdPort)
		}
	}
}
