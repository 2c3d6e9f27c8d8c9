//go:build unix

package deployer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// localExec runs commands on the bot's own machine when the runner is
// "local". Each command leads its own process group, so a cancel reaches
// nixos-anywhere's ssh and nix children too.
type localExec struct {
	maxLine   int
	killGrace time.Duration
}

func (e *localExec) usable() bool { return true }
func (e *localExec) close()       {}

func (e *localExec) run(ctx context.Context, cmd command) error {
	if len(cmd.argv) == 0 {
		return errors.New("empty command")
	}
	c := exec.Command(cmd.argv[0], cmd.argv[1:]...)
	c.Env = childEnv(os.Environ(), cmd.env)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if cmd.supervised {
		// Its own session, as sshd gives every session: the supervisor
		// it starts must not share the bot's, nor get its signals.
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	c.Stdin = cmd.stdin
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return err
	}
	c.Stdout, c.Stderr = outW, errW
	err = c.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return fmt.Errorf("start %s: %w", cmd.argv[0], err)
	}
	pg := c.Process.Pid
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		cmd.reader(nixdeploy.StreamStdout, e.maxLine, outR)
	}()
	go func() {
		defer wg.Done()
		cmd.reader(nixdeploy.StreamStderr, e.maxLine, errR)
	}()
	readersDone := make(chan struct{})
	go func() {
		wg.Wait()
		outR.Close()
		errR.Close()
		close(readersDone)
	}()
	waitc := make(chan error, 1)
	go func() { waitc <- c.Wait() }()

	select {
	case err = <-waitc:
		// A child left behind may hold the pipes open; it belongs to the
		// finished command, so end it rather than wait forever.
		select {
		case <-readersDone:
		case <-time.After(e.killGrace):
			if cmd.supervised {
				// The group holds the supervisor too: drop the pipes
				// instead.
				outR.Close()
				errR.Close()
			} else {
				syscall.Kill(-pg, syscall.SIGKILL)
			}
			<-readersDone
		}
	case <-ctx.Done():
		if cmd.supervised {
			// Only the follow side goes (the shell and, once their
			// output is closed, its tails); the supervisor stays.
			syscall.Kill(pg, syscall.SIGTERM)
			outR.Close()
			errR.Close()
			<-waitc
			<-readersDone
			return ctx.Err()
		}
		syscall.Kill(-pg, syscall.SIGTERM)
		select {
		case <-waitc:
		case <-time.After(e.killGrace):
			syscall.Kill(-pg, syscall.SIGKILL)
			<-waitc
		}
		if !groupGone(pg, e.killGrace) {
			syscall.Kill(-pg, syscall.SIGKILL)
		}
		if groupGone(pg, e.killGrace) {
			cmd.note(fmt.Sprintf("stopped the local command (process group %d is gone)", pg))
		} else {
			cmd.note(fmt.Sprintf("process group %d survived SIGKILL", pg))
		}
		<-readersDone
		return ctx.Err()
	}
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return &ExitError{Code: -1, Signal: unixSignalName(ws.Signal())}
		}
		return &ExitError{Code: ee.ExitCode()}
	}
	return err
}

// groupGone polls until no process of group pg is left.
func groupGone(pg int, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for {
		if err := syscall.Kill(-pg, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond) // polling a process table; no event to wait on
	}
}

func unixSignalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGTERM:
		return "TERM"
	case syscall.SIGKILL:
		return "KILL"
	case syscall.SIGINT:
		return "INT"
	case syscall.SIGHUP:
		return "HUP"
	case syscall.SIGUSR1:
		return "USR1"
	}
	return s.String()
}

func newLocalExec(maxLine int, killGrace time.Duration) (executor, error) {
	return &localExec{maxLine: maxLine, killGrace: killGrace}, nil
}
