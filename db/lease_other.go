//go:build !unix

package db

// processAlive cannot tell on this system; the lease decides.
func processAlive(int) bool { return true }
