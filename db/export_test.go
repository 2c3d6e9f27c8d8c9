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
