//go:build unix

package db_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/nixdeploy/nixdeploy/db"
)

// TestRestoreKeepsOwnerAndMode: the restored database has the owner and
// mode of the one it replaced, so a restore run as root leaves the bot's
// user able to open it (issue 11, §7). The owner part needs root.
func TestRestoreKeepsOwnerAndMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nixdeploy.db")
	d, _ := mustOpen(t, path)
	newDeployment(t, d, "ganon")
	backup, err := d.Backup(t.Context(), filepath.Join(dir, "backups"), 1)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	asRoot := os.Geteuid() == 0
	const botUID, botGID = 65534, 65534 // nobody, standing in for the bot's user
	if asRoot {
		if err := os.Chown(path, botUID, botGID); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Restore(backup, path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("restored mode %o, want 0640", fi.Mode().Perm())
	}
	if st := fi.Sys().(*syscall.Stat_t); asRoot && (st.Uid != botUID || st.Gid != botGID) {
		t.Errorf("restored owner %d:%d, want %d:%d", st.Uid, st.Gid, botUID, botGID)
	}
	if !asRoot {
		t.Log("not root: the owner was not checked")
	}

	// Opening it as root creates -wal and -shm as root's; MatchOwner gives
	// them back.
	r, _ := mustOpen(t, path)
	if _, err := r.Deployments(t.Context(), "", 1); err != nil {
		t.Fatal(err)
	}
	if asRoot {
		if err := db.MatchOwner(path); err != nil {
			t.Fatal(err)
		}
		for _, ext := range []string{"-wal", "-shm"} {
			if fi, err := os.Stat(path + ext); err == nil {
				if st := fi.Sys().(*syscall.Stat_t); st.Uid != botUID {
					t.Errorf("%s owned by %d", ext, st.Uid)
				}
			}
		}
	}
}
