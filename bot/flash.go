package bot

import (
	"fmt"

	"github.com/nixdeploy/nixdeploy"
)

// flashSections are the first sections of a flash's approval message:
// what it wipes, and the image it is bound to (its path on the runner,
// size and SHA-256, hashed there when it was requested). The run hashes
// the image again and writes nothing unless it is the same.
func flashSections(dep nixdeploy.Deployment, cfg *nixdeploy.Config, decision string) []string {
	head := fmt.Sprintf(":warning: *Approval needed: %s* — destructive: the node's eMMC is overwritten with the image below through its Turing Pi BMC.", title(dep))
	if decision != "" {
		head = decision + "\n~Approval needed: " + title(dep) + "~"
	}
	sections := []string{head}
	for _, name := range dep.Hosts {
		h, _ := cfg.Host(name)
		sec := fmt.Sprintf("*%s* (slot %d of the BMC %s)", escape(h.Name), h.BMCNode, escape(h.BMC))
		if l := dep.Lock; l != nil && l.Image != "" {
			sec += fmt.Sprintf("\n• Image on the runner: `%s`\n• Size: %s bytes\n• SHA-256: `%s`", escape(l.Image), count(l.ImageSize), escape(l.ImageSHA256))
		}
		sec += "\n• Afterwards: the node is switched on and boots the image; install NixOS on it with `/nixdeploy install " + escape(h.Name) + "`"
		sections = append(sections, sec)
	}
	return sections
}
