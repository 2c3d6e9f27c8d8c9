package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/nixdeploy/nixdeploy/db"
)

const restoreUsage = `restore (--from FILE | --latest | --list) [--dir DIR] [--db FILE]

Replaces the database with a backup that serve wrote (see --backup-dir).
Stop the bot first, or restart it right after: a running serve keeps
writing to the database it opened. The replaced database is kept beside
it as FILE.before-restore. The restored database is opened once, which
applies newer migrations and marks deployments that were running when the
backup was taken as interrupted.

  --from FILE   restore FILE
  --latest      restore the newest backup in --dir
  --list        list the backups in --dir, oldest first

The database is --db or $NIXDEPLOY_DB (default ./nixdeploy.db); the backup
directory is --dir or $NIXDEPLOY_BACKUP_DIR.`

func cmdRestore(ctx context.Context, s stdio, args []string) error {
	fs := newFlags(s, "restore", restoreUsage)
	from := fs.String("from", "", "the backup `file` to restore")
	latest := fs.Bool("latest", false, "restore the newest backup in --dir")
	list := fs.Bool("list", false, "list the backups in --dir")
	dir := fs.String("dir", os.Getenv(envBackupDir), "backup `directory` (env "+envBackupDir+")")
	dbPath := fs.String("db", db.PathFromEnv(), "database `file` to replace (env NIXDEPLOY_DB)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	n := 0
	for _, set := range []bool{*from != "", *latest, *list} {
		if set {
			n++
		}
	}
	switch {
	case fs.NArg() > 0:
		return usageErrorf("restore: unexpected argument %q", fs.Arg(0))
	case n != 1:
		return usageErrorf("restore: give exactly one of --from FILE, --latest and --list")
	case (*latest || *list) && *dir == "":
		return usageErrorf("restore: no backup directory: pass --dir or set %s", envBackupDir)
	}
	if *list || *latest {
		backups, err := db.Backups(*dir)
		if err != nil {
			return &exitError{code: 1, msg: "restore: " + err.Error()}
		}
		if *list {
			for _, b := range backups {
				fi, err := os.Stat(b)
				if err != nil {
					return err
				}
				fmt.Fprintf(s.out, "%s  %s  %d bytes\n", fi.ModTime().UTC().Format("2006-01-02 15:04:05 UTC"), b, fi.Size())
			}
			if len(backups) == 0 {
				fmt.Fprintf(s.err, "nixdeploy: no backups in %s\n", *dir)
			}
			return nil
		}
		if len(backups) == 0 {
			return &exitError{code: 1, msg: "restore: no backups in " + *dir}
		}
		*from = backups[len(backups)-1]
	}
	if err := db.Restore(*from, *dbPath); err != nil {
		return &exitError{code: 1, msg: err.Error()}
	}
	// Opening it proves it is a nixdeploy database and brings it up to
	// date.
	store, interrupted, err := db.Open(ctx, *dbPath)
	if err != nil {
		return &exitError{code: 1, msg: fmt.Sprintf("restore: %s was restored but does not open: %v; the previous database is %s.before-restore", *dbPath, err, *dbPath)}
	}
	defer func() {
		store.Close()
		if err := db.MatchOwner(*dbPath); err != nil {
			fmt.Fprintf(s.err, "nixdeploy: restore: %v\n", err)
		}
	}()
	deps, err := store.Deployments(ctx, "", 1)
	if err != nil {
		return err
	}
	newest := "no deployments"
	if len(deps) > 0 {
		d := deps[0]
		newest = fmt.Sprintf("newest deployment #%d %s %s, %s", d.ID, d.Action, strings.Join(d.Hosts, ", "), d.State)
	}
	fmt.Fprintf(s.out, "restored %s from %s (%s)\n", *dbPath, *from, newest)
	if len(interrupted) > 0 {
		fmt.Fprintf(s.out, "%d deployment(s) that were running at backup time are now marked interrupted\n", len(interrupted))
	}
	if _, err := os.Stat(*dbPath + ".before-restore"); err == nil {
		fmt.Fprintf(s.out, "the previous database is kept as %s.before-restore\n", *dbPath)
	}
	return nil
}
