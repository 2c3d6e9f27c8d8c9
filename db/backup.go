package db

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

const backupPrefix, backupSuffix = "nixdeploy-", ".db"

// Backup writes a consistent online copy of the database into dir with
// VACUUM INTO, which reads one snapshot while writers go on, then deletes
// all but the newest keep backups. It returns the new backup's path.
func (d *DB) Backup(ctx context.Context, dir string, keep int) (string, error) {
	if keep < 1 {
		return "", fmt.Errorf("backup: keep must be at least 1, got %d", keep)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}
	name := backupPrefix + d.Now().UTC().Format("20060102T150405.000000000Z") + backupSuffix
	path := filepath.Join(dir, name)
	// VACUUM INTO refuses to overwrite, and writes to a temporary name first
	// so a crash never leaves a half-written file that looks like a backup.
	tmp := path + ".partial"
	os.Remove(tmp)
	if _, err := d.sql.ExecContext(ctx, `VACUUM INTO ?`, tmp); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("backup into %s: %w", dir, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}
	if err := pruneBackups(dir, keep); err != nil {
		return path, err
	}
	return path, nil
}

// Backups lists backup files in dir, oldest first.
func Backups(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if e.Type().IsRegular() && strings.HasPrefix(n, backupPrefix) && strings.HasSuffix(n, backupSuffix) {
			out = append(out, filepath.Join(dir, n))
		}
	}
	// The timestamp in the name sorts lexically in time order.
	sort.Strings(out)
	return out, nil
}

func pruneBackups(dir string, keep int) error {
	all, err := Backups(dir)
	if err != nil {
		return err
	}
	for len(all) > keep {
		if err := os.Remove(all[0]); err != nil {
			return fmt.Errorf("prune backup: %w", err)
		}
		all = all[1:]
	}
	return nil
}

// Restore replaces the database file at dbPath with the backup at from. The
// bot must be stopped: the live database and its WAL are replaced. The old
// file is kept beside it as dbPath + ".before-restore".
func Restore(from, dbPath string) error {
	src, err := os.ReadFile(from)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if !strings.HasPrefix(string(src[:min(len(src), 16)]), "SQLite format 3") {
		return fmt.Errorf("restore: %s is not a SQLite database", from)
	}
	// The restored file takes the owner and mode of the one it replaces:
	// a restore run as root must not leave the bot's user locked out of
	// its own database (issue 11, §7).
	mode, uid, gid, owned := os.FileMode(0o600), -1, -1, false
	if fi, err := os.Stat(dbPath); err == nil {
		mode = fi.Mode().Perm()
		uid, gid, owned = fileOwner(fi)
		if err := os.Rename(dbPath, dbPath+".before-restore"); err != nil {
			return fmt.Errorf("restore: keep old database: %w", err)
		}
	}
	for _, ext := range []string{"-wal", "-shm"} {
		if err := os.Remove(dbPath + ext); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("restore: %w", err)
		}
	}
	tmp := dbPath + ".restoring"
	if err := os.WriteFile(tmp, src, 0o600); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if owned {
		if err := os.Chown(tmp, uid, gid); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("restore: give the database its owner back: %w", err)
		}
	}
	if err := os.Chmod(tmp, mode); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("restore: %w", err)
	}
	if err := os.Rename(tmp, dbPath); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return nil
}

// MatchOwner gives the files SQLite keeps beside dbPath (-wal, -shm), when
// they exist, the owner of dbPath: opening the database as root after a
// restore creates them as root's.
func MatchOwner(dbPath string) error {
	fi, err := os.Stat(dbPath)
	if err != nil {
		return err
	}
	uid, gid, ok := fileOwner(fi)
	if !ok {
		return nil
	}
	for _, ext := range []string{"-wal", "-shm"} {
		if err := os.Chown(dbPath+ext, uid, gid); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return nil
}

// BackupLoop takes a backup every interval until ctx ends, logging through
// report. It is what serve runs for the daily backup.
func (d *DB) BackupLoop(ctx context.Context, dir string, keep int, interval time.Duration, report func(path string, err error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			report(d.Backup(ctx, dir, keep))
		}
	}
}
