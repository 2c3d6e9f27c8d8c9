package nixdeploy_test

import (
	"regexp"
	"testing"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/commands"
)

// TestBootNoteCommand: the approval message names the command that
// unlocks the disk, and that command parses as the disk unlock, not as
// "/nixdeploy unlock HOST", which releases a host lock.
func TestBootNoteCommand(t *testing.T) {
	h := nixdeploy.Host{Name: "ganon", Address: "127.0.0.1", Port: 22, System: nixdeploy.SystemX86_64, Disk: "/dev/vda",
		DiskKey: "/tmp/secret.key", InitrdSSH: &nixdeploy.InitrdSSH{Port: 2222, HostKeyPath: nixdeploy.DefaultInitrdHostKeyPath}}
	cfg := &nixdeploy.Config{Hosts: []nixdeploy.Host{h}}
	note := h.BootNote()
	m := regexp.MustCompile("`/nixdeploy ([^`]+)`").FindStringSubmatch(note)
	if m == nil {
		t.Fatalf("boot note names no command: %q", note)
	}
	cmd, err := commands.Parse(cfg, m[1])
	if err != nil {
		t.Fatalf("the boot note's command %q does not parse: %v", m[1], err)
	}
	if cmd.Kind != commands.KindUnlockDisk {
		t.Errorf("the boot note's command %q is a %s, want %s", m[1], cmd.Kind, commands.KindUnlockDisk)
	}
}
