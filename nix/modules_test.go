package nix_test

import (
	"fmt"
	"slices"
	"testing"
)

// moduleExpr calls the module file with a stub lib (testdata/module-lib.nix)
// and a config whose hostSpec is host's entry of hosts/fleet.nix (the flakes
// set it from there), then evaluates body with the result bound to m.
// Nothing else of the config exists, so a module that reads more fails.
func moduleExpr(file, host, hostSpec, body string) string {
	return fmt.Sprintf(`let
  lib = import ./testdata/module-lib.nix;
  fleet = import ./hosts/fleet.nix;
  h = fleet.%s;
  config = {
    hostSpec = {
      user = "michael";
      authorizedKeys = [ "ssh-ed25519 AAAAtest admin" ];
      sshPort = h.sshPort;
      initrdSsh = h.initrdSsh;
      hashedPasswordFromSops = true;
    } // (%s);
    networking.hostName = %q;
    boot.initrd.systemd.enable = false;
    sops.secrets."michael-password".path = "/run/secrets-for-users/michael-password";
  };
  m = import %s { inherit config lib; pkgs = { }; inputs = { }; };
in %s`, host, hostSpec, host, file, body)
}

// TestModules checks what the modules make of the host table: the SSH port
// in both the full system and the installer, the initrd SSH server (on for
// ganon only) and the user's password from sops.
func TestModules(t *testing.T) {
	t.Run("ssh port", func(t *testing.T) {
		for _, file := range []string{"./modules/nixos/common.nix", "./nixos-installer/minimal-configuration.nix"} {
			for _, port := range []int{22, 2200} {
				var got []int
				evalJSON(t, moduleExpr(file, "rk1-node1", fmt.Sprintf("{ sshPort = %d; }", port), "m.services.openssh.ports"), &got)
				if !slices.Equal(got, []int{port}) {
					t.Errorf("%s: services.openssh.ports = %v with hostSpec.sshPort %d", file, got, port)
				}
			}
		}
	})

	t.Run("initrd ssh module is imported", func(t *testing.T) {
		for _, file := range []string{"./modules/nixos/common.nix", "./nixos-installer/minimal-configuration.nix"} {
			var got []string
			evalJSON(t, moduleExpr(file, "ganon", "{ }", "map baseNameOf (map toString m.imports)"), &got)
			if !slices.Contains(got, "initrd-ssh.nix") {
				t.Errorf("%s imports %q, want initrd-ssh.nix: the installed system must already be unlockable", file, got)
			}
		}
	})

	type initrd struct {
		Condition bool `json:"condition"`
		Content   struct {
			Assertions []struct {
				Assertion bool `json:"assertion"`
			} `json:"assertions"`
			Boot struct {
				KernelParams []string `json:"kernelParams"`
				Initrd       struct {
					AvailableKernelModules []string `json:"availableKernelModules"`
					KernelModules          []string `json:"kernelModules"`
					Network                struct {
						Enable bool `json:"enable"`
						Udhcpc struct {
							Enable bool `json:"enable"`
						} `json:"udhcpc"`
						SSH struct {
							Enable         bool     `json:"enable"`
							Port           int      `json:"port"`
							AuthorizedKeys []string `json:"authorizedKeys"`
							HostKeys       []string `json:"hostKeys"`
						} `json:"ssh"`
					} `json:"network"`
				} `json:"initrd"`
			} `json:"boot"`
		} `json:"content"`
	}
	const initrdFile = "./modules/nixos/initrd-ssh.nix"
	readInitrd := func(t *testing.T, host, spec string) initrd {
		var got initrd
		evalJSON(t, moduleExpr(initrdFile, host, spec, `let c = m.config; in if c.condition then c else { condition = false; }`), &got)
		return got
	}

	t.Run("ganon unlocks over initrd ssh", func(t *testing.T) {
		got := readInitrd(t, "ganon", "{ }")
		if !got.Condition {
			t.Fatal("initrd SSH is off for ganon")
		}
		n := got.Content.Boot.Initrd.Network
		if !n.Enable || !n.SSH.Enable || !n.Udhcpc.Enable {
			t.Errorf("boot.initrd.network = %+v, want network, ssh and DHCP on", n)
		}
		if n.SSH.Port != 2222 {
			t.Errorf("initrd ssh port = %d, want fleet.nix's 2222", n.SSH.Port)
		}
		if want := []string{"/etc/secrets/initrd/ssh_host_ed25519_key"}; !slices.Equal(n.SSH.HostKeys, want) {
			t.Errorf("initrd hostKeys = %q, want the pre-generated key's path %q", n.SSH.HostKeys, want)
		}
		if want := []string{"ssh-ed25519 AAAAtest admin"}; !slices.Equal(n.SSH.AuthorizedKeys, want) {
			t.Errorf("initrd authorizedKeys = %q, want hostSpec.authorizedKeys %q", n.SSH.AuthorizedKeys, want)
		}
		for _, list := range [][]string{got.Content.Boot.Initrd.AvailableKernelModules, got.Content.Boot.Initrd.KernelModules} {
			if !slices.Equal(list, []string{"r8169"}) {
				t.Errorf("initrd NIC modules = %q, want fleet.nix's kernelModules", list)
			}
		}
		if len(got.Content.Boot.KernelParams) != 0 {
			t.Errorf("kernelParams = %q with DHCP, want none", got.Content.Boot.KernelParams)
		}
		for _, a := range got.Content.Assertions {
			if !a.Assertion {
				t.Error("an initrd-ssh assertion fails for ganon")
			}
		}
	})

	t.Run("systemd stage 1 is refused", func(t *testing.T) {
		var ok []bool
		evalJSON(t, moduleExpr(initrdFile, "ganon", "{ }",
			`let c = import `+initrdFile+` { config = config // { boot.initrd.systemd.enable = true; }; inherit lib; }; in map (a: a.assertion) c.config.content.assertions`), &ok)
		if !slices.Contains(ok, false) {
			t.Error("no assertion fails with boot.initrd.systemd.enable = true; cryptsetup-askpass exists only in the scripted stage 1")
		}
	})

	t.Run("static initrd address", func(t *testing.T) {
		got := readInitrd(t, "ganon", `{ initrdSsh = h.initrdSsh // { network = { address = "192.0.2.100"; netmask = "255.255.255.0"; gateway = "192.0.2.1"; interface = "enp5s0"; }; }; }`)
		want := []string{"ip=192.0.2.100::192.0.2.1:255.255.255.0:ganon:enp5s0:off"}
		if !slices.Equal(got.Content.Boot.KernelParams, want) {
			t.Errorf("kernelParams = %q, want %q", got.Content.Boot.KernelParams, want)
		}
		if got.Content.Boot.Initrd.Network.Udhcpc.Enable {
			t.Error("udhcpc is on with a static address")
		}
	})

	t.Run("rk1 has no initrd ssh", func(t *testing.T) {
		if got := readInitrd(t, "rk1-node1", "{ }"); got.Condition {
			t.Error("initrd SSH is on for an RK1 node, which has no LUKS")
		}
	})

	t.Run("user password from sops", func(t *testing.T) {
		var got struct {
			Secret struct {
				Condition bool `json:"condition"`
				Content   struct {
					NeededForUsers bool `json:"neededForUsers"`
				} `json:"content"`
			} `json:"secret"`
			File struct {
				Condition bool   `json:"condition"`
				Content   string `json:"content"`
			} `json:"file"`
		}
		evalJSON(t, moduleExpr("./modules/nixos/sops.nix", "ganon", "{ }", `{
			secret = { inherit (m.sops.secrets."michael-password") condition; content.neededForUsers = m.sops.secrets."michael-password".content.neededForUsers; };
			file = m.users.users.michael.hashedPasswordFile;
		}`), &got)
		if !got.Secret.Condition || !got.Secret.Content.NeededForUsers {
			t.Errorf("sops.secrets.michael-password = %+v, want it with neededForUsers", got.Secret)
		}
		if !got.File.Condition || got.File.Content != "/run/secrets-for-users/michael-password" {
			t.Errorf("users.users.michael.hashedPasswordFile = %+v, want the sops secret's path", got.File)
		}
	})
}
