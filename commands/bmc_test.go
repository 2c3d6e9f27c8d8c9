package commands_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/commands"
)

func TestParseBMC(t *testing.T) {
	cfg := loadFleet(t)
	for text, want := range map[string]commands.Command{
		"power rk1-node3 status":                               {Kind: commands.KindPower, Hosts: []string{"rk1-node3"}, PowerOp: nixdeploy.PowerStatus},
		"Power RK1-Node3 OFF":                                  {Kind: commands.KindPower, Hosts: []string{"rk1-node3"}, PowerOp: nixdeploy.PowerOff},
		"/nixdeploy power rk1-node1 reset":                     {Kind: commands.KindPower, Hosts: []string{"rk1-node1"}, PowerOp: nixdeploy.PowerReset},
		"power rk1-node4 on":                                   {Kind: commands.KindPower, Hosts: []string{"rk1-node4"}, PowerOp: nixdeploy.PowerOn},
		"uart rk1-node2":                                       {Kind: commands.KindUART, Hosts: []string{"rk1-node2"}},
		"flash rk1-node3 /srv/images/RK1-staging_1.2+b.img.xz": {Kind: commands.KindDeploy, Action: nixdeploy.ActionFlash, Hosts: []string{"rk1-node3"}, Image: "/srv/images/RK1-staging_1.2+b.img.xz"},
		"Flash RK1-Node1 /nix/store/abc-rk1.img":               {Kind: commands.KindDeploy, Action: nixdeploy.ActionFlash, Hosts: []string{"rk1-node1"}, Image: "/nix/store/abc-rk1.img"},
	} {
		got, err := commands.Parse(cfg, text)
		if err != nil {
			t.Errorf("Parse(%q): %v", text, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Parse(%q) = %#v, want %#v", text, got, want)
		}
		again, err := commands.Parse(cfg, got.String())
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Errorf("String() %q parses to %#v, %v", got.String(), again, err)
		}
	}
}

func TestParseBMCErrors(t *testing.T) {
	cfg := loadFleet(t)
	for text, want := range map[string]string{
		"power rk1-node3":                       "power takes a host and one of status|on|off|reset, not 1 words",
		"power rk1-node3 explode":               `power operation "explode" must be one of status|on|off|reset`,
		"power @rk1 off":                        `power needs one host name, not "@rk1"`,
		"power rk1-* reset":                     `power needs one host name, not "rk1-*"`,
		"power rk1-node1,rk1-node2 on":          "power needs one host name",
		"power ganon off":                       "ganon has no bmc in the fleet config",
		"power rk1-node9 status":                "rk1-node9",
		"uart":                                  "uart takes exactly one host, not 0 words",
		"uart rk1-node3 now":                    "uart takes exactly one host, not 2 words",
		"uart ganon":                            "ganon has no bmc",
		"flash rk1-node3":                       "flash takes a host and an image, not 1 words",
		"flash rk1-node3 /a.img /b.img":         "flash takes a host and an image, not 3 words",
		"flash @rk1 /srv/rk1.img":               `flash needs one host name, not "@rk1"`,
		"flash ganon /srv/x.img":                "ganon has no bmc",
		"flash rk1-node3 images/rk1.img":        `the image "images/rk1.img" must be an absolute path on the runner`,
		"flash rk1-node3 /srv/../etc/shadow":    "must be an absolute path",
		"flash rk1-node3 /srv/images/":          "must be an absolute path",
		"flash rk1-node3 -/srv/x":               "must be an absolute path",
		"flash rk1-node3 https://example.org/x": "must be an absolute path",
		"flash rk1-node3 /srv/a,b.img":          "must be an absolute path",
	} {
		_, err := commands.Parse(cfg, text)
		if !errors.Is(err, commands.ErrUsage) {
			t.Errorf("Parse(%q) = %v, want a usage error", text, err)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %q, want it to contain %q", text, err, want)
		}
	}
	if _, err := commands.Parse(cfg, "power rk1-node9 status"); !errors.Is(err, nixdeploy.ErrUnknownHost) {
		t.Errorf("unknown host: %v, want ErrUnknownHost", err)
	}
}
