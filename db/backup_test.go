package db_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nixdeploy/nixdeploy/db"
)

func TestBackupKeepsNAndRestores(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	path := filepath.Join(dir, "nixdeploy.db")
	d, _ := mustOpen(t, path)
	clock := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	d.Now = func() time.Time { clock = clock.Add(time.Second); return clock }

	first := newDeployment(t, d, "ganon")
	backups := filepath.Join(dir, "backups")
	var made []string
	for range 4 {
		p, err := d.Backup(ctx, backups, 3)
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, p)
	}
	left, err := db.Backups(backups)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 3 || left[0] != made[1] || left[2] != made[3] {
		t.Fatalf("backups left = %v, want the newest 3 of %v", left, made)
	}

	// Work done after the backup is what a restore rolls back.
	later := newDeployment(t, d, "rk1-node1")
	d.Close()
	if err := db.Restore(left[2], path); err != nil {
		t.Fatal(err)
	}
	r, _ := mustOpen(t, path)
	if _, err := r.Deployment(ctx, first.ID); err != nil {
		t.Fatalf("restored db lost deployment %d: %v", first.ID, err)
	}
	if _, err := r.Deployment(ctx, later.ID); err == nil {
		t.Fatalf("restored db has deployment %d made after the backup", later.ID)
	}
	if _, err := os.Stat(path + ".before-restore"); err != nil {
		t.Fatalf("old database not kept: %v", err)
	}
}

func TestRestoreRefusesNonDatabase(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.db")
	os.WriteFile(junk, []byte("hello"), 0o600)
	if err := db.Restore(junk, filepath.Join(dir, "x.db")); err == nil {
		t.Fatal("restore accepted a file that is not SQLite")
	}
}
