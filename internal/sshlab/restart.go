package sshlab

import "errors"

// Restart starts a killed sshd again on the same address with the same
// host key, as a machine that was power-cycled comes back: a test's fake
// BMC calls it on a reset.
func (s *Server) Restart() error {
	s.mu.Lock()
	if s.cmd == nil || !s.killed {
		s.mu.Unlock()
		return errors.New("sshlab: restart of an sshd that was not killed")
	}
	s.killed = false
	s.mu.Unlock()
	// run takes s.mu itself (through Kill) when the start fails.
	return s.run()
}
