//go:build !unix

package deployer

import (
	"errors"
	"time"
)

func newLocalExec(maxLine int, killGrace time.Duration) (executor, error) {
	return nil, errors.New(`runner "local" needs a Unix system; use a runner over SSH`)
}
