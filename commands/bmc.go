package commands

import (
	"slices"
	"strings"

	"github.com/nixdeploy/nixdeploy"
)

// The BMC commands: "power HOST OP" and "uart HOST". Each names exactly one
// host, never an @tag or glob: switching a whole board off should take
// four deliberate commands, not one typo.

func powerOpWords() string {
	w := make([]string, len(nixdeploy.PowerOps))
	for i, op := range nixdeploy.PowerOps {
		w[i] = string(op)
	}
	return strings.Join(w, "|")
}

// power parses "power HOST status|on|off|reset".
func (p parser) power(s spec, args []string) (Command, error) {
	if len(args) != 2 {
		return Command{}, usagef("power takes a host and one of %s, not %d words; %s", powerOpWords(), len(args), s.usage())
	}
	op := nixdeploy.PowerOp(strings.ToLower(args[1]))
	if !slices.Contains(nixdeploy.PowerOps, op) {
		return Command{}, usagef("power operation %q must be one of %s; %s", strings.ToLower(args[1]), powerOpWords(), s.usage())
	}
	host, err := p.bmcHost(s, args[0])
	if err != nil {
		return Command{}, err
	}
	return Command{Kind: KindPower, Hosts: []string{host}, PowerOp: op}, nil
}

// uart parses "uart HOST".
func (p parser) uart(s spec, args []string) (Command, error) {
	if len(args) != 1 {
		return Command{}, usagef("uart takes exactly one host, not %d words; %s", len(args), s.usage())
	}
	host, err := p.bmcHost(s, args[0])
	if err != nil {
		return Command{}, err
	}
	return Command{Kind: KindUART, Hosts: []string{host}}, nil
}

// bmcHost is one host name from the config whose slot a BMC manages.
func (p parser) bmcHost(s spec, word string) (string, error) {
	sels := selectors([]string{word})
	if len(sels) != 1 || isPattern(sels[0]) {
		return "", usagef("%s needs one host name, not %q: a BMC command acts on one node; %s", s.name, word, s.usage())
	}
	hosts, err := p.hosts(sels)
	if err != nil {
		return "", err
	}
	h, _ := p.cfg.Host(hosts[0])
	if h.BMC == "" {
		return "", usagef("%s has no bmc in the fleet config, so nixdeploy cannot reach its power or console; add bmc and bmc_node to its [[hosts]] table", h.Name)
	}
	return h.Name, nil
}

func (c Command) bmcWords() []string {
	host := ""
	if len(c.Hosts) > 0 {
		host = c.Hosts[0]
	}
	if c.Kind == KindPower {
		return []string{"power", host, string(c.PowerOp)}
	}
	return []string{"uart", host}
}

// flash parses "flash HOST IMAGE": one host on a BMC and the image, an
// absolute path on the runner (nixdeploy.ValidImagePath), kept as typed.
func (p parser) flash(s spec, args []string) (Command, error) {
	if len(args) != 2 {
		return Command{}, usagef("flash takes a host and an image, not %d words; %s", len(args), s.usage())
	}
	host, err := p.bmcHost(s, args[0])
	if err != nil {
		return Command{}, err
	}
	if !nixdeploy.ValidImagePath(args[1]) {
		return Command{}, usagef("the image %q must be an absolute path on the runner made of letters, digits and . _ + - /, such as /srv/images/rk1-staging.img; %s", args[1], s.usage())
	}
	return Command{Kind: KindDeploy, Action: nixdeploy.ActionFlash, Hosts: []string{host}, Image: args[1]}, nil
}
