package db

import (
	"context"
	"time"
)

// SetOpenClock makes Open use now until the returned func is called.
func SetOpenClock(now func() time.Time) func() {
	old := openClock
	openClock = now
	return func() { openClock = old }
}

// Renew renews d's lease now, by d.Now, as its loop does every LeaseTTL/3.
func (d *DB) Renew() error { return d.renew(context.Background()) }

// DropOwner deletes d's owner row, as a restore under a running process
// would.
func (d *DB) DropOwner() error {
	_, err := d.sql.Exec(`DELETE FROM owners WHERE id = ?`, d.owner.ID)
	return err
}
