package nixdeploy

import "fmt"

// BootNote says, in one sentence for people, what the host needs at every
// boot once installed. The approval message, the status message, the
// install's preflight event and `nixdeploy plan` all show it, so it has
// one wording. The initrd case names the chat command that sends the
// passphrase (unlock-disk, not unlock, which releases a host lock).
func (h Host) BootNote() string {
	switch {
	case !h.LUKS():
		return "no disk encryption; boots unattended"
	case h.InitrdSSH != nil:
		return fmt.Sprintf("LUKS; the bot unlocks it over the initrd SSH server on port %d (pinned initrd key), or `/nixdeploy unlock-disk %s`", h.InitrdSSH.Port, h.Name)
	}
	return "LUKS; its passphrase (keys/" + h.Name + "_disk_key) must be typed at the console at every boot"
}
