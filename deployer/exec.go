package deployer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/nixdeploy/nixdeploy"
)

// ExitError is a command that ran and failed.
type ExitError struct {
	// Code is the exit status, or -1 when a signal ended the command.
	Code int
	// Signal names the signal that ended the command, without "SIG".
	Signal string
}

func (e *ExitError) Error() string {
	if e.Signal != "" {
		return "killed by signal " + e.Signal
	}
	return "exited with status " + strconv.Itoa(e.Code)
}

// command is one process to run on the runner or a target.
type command struct {
	argv  []string
	stdin io.Reader
	// env are NAME=value settings the deployer makes for this command on
	// purpose; a local child gets them on top of the allow-listed
	// environment (childEnv).
	env []string
	// out gets each output line; it is called from two goroutines, one
	// per stream, and must copy b.
	out func(stream nixdeploy.Stream, b []byte)
	// note reports what the executor did on the user's behalf, such as
	// killing a cancelled command.
	note func(text string)
	// agent, when set, is forwarded to the command's session (remote
	// runner).
	agent agent.Agent
	// supervised commands are the supervisor's (supervisor.go): argv runs
	// without the pgid wrapper, in a session of its own on a local runner,
	// read (when set) gets each output stream whole instead of out getting
	// lines, and a cancel only leaves the session: the supervisor is
	// stopped through its own cancel mode, or not at all on shutdown.
	supervised bool
	read       func(stream nixdeploy.Stream, r io.Reader)
}

// reader reads one output stream: whole to cmd.read when set, else line
// by line to cmd.out.
func (cmd *command) reader(stream nixdeploy.Stream, maxLine int, r io.Reader) {
	if cmd.read != nil {
		cmd.read(stream, r)
		return
	}
	readLines(r, maxLine, func(b []byte) { cmd.out(stream, b) })
}

// executor runs commands somewhere: over an SSH connection or locally.
type executor interface {
	run(ctx context.Context, cmd command) error
	// usable reports whether run can still work (the connection is up).
	usable() bool
	close()
}

// readLines splits r into lines of at most max bytes: longer lines arrive
// in pieces, so memory stays bounded whatever the command prints. b is only
// valid during the call.
func readLines(r io.Reader, max int, fn func(b []byte)) {
	br := bufio.NewReaderSize(r, max)
	split := false
	for {
		line, err := br.ReadSlice('\n')
		if err == nil {
			line = line[:len(line)-1]
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
		}
		// A line of exactly max bytes leaves only its newline for the
		// next read; that is not another, empty line.
		if len(line) > 0 || (err == nil && !split) {
			fn(line)
		}
		split = err == bufio.ErrBufferFull
		if split {
			continue
		}
		if err != nil {
			// EOF, or the session went away: the caller learns why from
			// the command's exit.
			return
		}
	}
}

// The remote wrapper reports the process group of the command before
// running it, so a cancelled command can be killed with all its children.
// sshd starts every session in a new session and process group, so the
// shell's pid, which exec hands on to the command, is the group id.
//
// WrapScript and KillScript are exported so a simulated remote side (the
// demo's internal/simfleet) recognises exactly what the deployer sends.
const (
	pgidMarker = "nixdeploy-pgid "
	WrapScript = `echo "nixdeploy-pgid $$" >&2; exec "$@"`
	KillScript = `pg=$1; n=$2
kill -TERM -"$pg" 2>/dev/null || { echo gone; exit 0; }
i=0
while kill -0 -"$pg" 2>/dev/null; do
	i=$((i+1))
	if [ "$i" -eq "$n" ]; then kill -KILL -"$pg" 2>/dev/null; fi
	if [ "$i" -ge $((n*2)) ]; then echo alive; exit 1; fi
	sleep 0.1
done
echo gone`
)

// remoteCommand is the command string for the remote login shell. Each
// argv element is quoted exactly once; the wrapper script is a constant;
// remoteScript gets it past any login shell.
func remoteCommand(argv []string) string {
	return remoteScript("exec sh -c " + shellQuote(WrapScript) + " sh " + shellJoin(argv))
}

// sshExec runs commands over an SSH connection.
type sshExec struct {
	c         *client
	maxLine   int
	killGrace time.Duration
}

func (e *sshExec) usable() bool { return e.c.alive() }
func (e *sshExec) close()       { e.c.Close() }

func (e *sshExec) run(ctx context.Context, cmd command) error {
	if !e.c.alive() {
		return e.c.lostErr()
	}
	sess, err := e.c.NewSession()
	if err != nil {
		if !e.c.alive() {
			return e.c.lostErr()
		}
		return fmt.Errorf("open a session on %s: %w", e.c.name, err)
	}
	defer sess.Close()
	stdout, err := sess.StdoutPipe()
	if err != nil {
		return err
	}
	stderr, err := sess.StderrPipe()
	if err != nil {
		return err
	}
	if cmd.stdin != nil {
		sess.Stdin = cmd.stdin
	}
	pgid := make(chan int, 1)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		cmd.reader(nixdeploy.StreamStdout, e.maxLine, stdout)
	}()
	go func() {
		defer wg.Done()
		if cmd.read != nil {
			cmd.read(nixdeploy.StreamStderr, stderr)
			return
		}
		first := true
		readLines(stderr, e.maxLine, func(b []byte) {
			if first {
				first = false
				if s, ok := strings.CutPrefix(string(b), pgidMarker); ok {
					if n, err := strconv.Atoi(s); err == nil {
						pgid <- n
						return
					}
				}
			}
			cmd.out(nixdeploy.StreamStderr, b)
		})
	}()
	if cmd.agent != nil {
		if err := e.c.forwardAgent(cmd.agent); err != nil {
			return fmt.Errorf("forward the SSH agent to %s: %w", e.c.name, err)
		}
		if err := e.c.requestAgent(sess); err != nil {
			return fmt.Errorf("%s refused SSH agent forwarding (allow it in its sshd_config): %w", e.c.name, err)
		}
	}
	line := remoteCommand(cmd.argv)
	if cmd.supervised {
		line = remoteScript("exec " + shellJoin(cmd.argv))
	}
	if err := sess.Start(line); err != nil {
		sess.Close()
		wg.Wait()
		if !e.c.alive() {
			return e.c.lostErr()
		}
		return fmt.Errorf("start command on %s: %w", e.c.name, err)
	}
	waitc := make(chan error, 1)
	go func() { waitc <- sess.Wait() }()

	var werr error
	select {
	case werr = <-waitc:
	case <-ctx.Done():
		if cmd.supervised {
			// Leave the supervisor running; end only the follow side.
			// sshd holds the channel open while its command lives, and
			// an idle follow loop notices no closed reader, so it is
			// signalled (OpenSSH honours signal requests since 7.8);
			// failing that, the connection goes, as for a stuck
			// session below.
			_ = sess.Signal(ssh.SIGTERM)
			sess.Close()
			readers := make(chan struct{})
			go func() { wg.Wait(); close(readers) }()
			select {
			case <-readers:
			case <-time.After(e.killGrace + 2*time.Second):
				e.c.kill(fmt.Errorf("%w: the follow session on %s did not end when it was left", ErrConnectionLost, e.c.name))
				<-readers
			}
			return ctx.Err()
		}
		e.stop(sess, pgid, cmd.note)
		select {
		case <-waitc:
		case <-time.After(e.killGrace + 5*time.Second):
			// The server keeps the session open although its command is
			// dead or unkillable; drop the connection so nothing waits
			// forever. Later steps redial.
			e.c.kill(fmt.Errorf("%w: the session on %s did not end after it was cancelled", ErrConnectionLost, e.c.name))
			<-waitc
		}
		wg.Wait()
		return ctx.Err()
	}
	wg.Wait()
	return e.exitErr(werr)
}

// exitErr turns what Session.Wait returned into an ExitError, or explains
// that the connection went away.
func (e *sshExec) exitErr(err error) error {
	if err == nil {
		return nil
	}
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		if sig := ee.Signal(); sig != "" {
			return &ExitError{Code: -1, Signal: sig}
		}
		return &ExitError{Code: ee.ExitStatus()}
	}
	// The channel closed without an exit status: usually the connection
	// died, which its Wait learns a moment later.
	select {
	case <-e.c.done:
		return e.c.lostErr()
	case <-time.After(time.Second):
	}
	var em *ssh.ExitMissingError
	if errors.As(err, &em) {
		return fmt.Errorf("the command on %s ended without an exit status", e.c.name)
	}
	return fmt.Errorf("command on %s: %w", e.c.name, err)
}

// stop ends a cancelled command: a signal request (which only recent sshds
// honour), then a kill of the command's process group from a new session,
// which waits until the group is gone and escalates to SIGKILL.
func (e *sshExec) stop(sess *ssh.Session, pgid <-chan int, note func(string)) {
	_ = sess.Signal(ssh.SIGTERM)
	var pg int
	select {
	case pg = <-pgid:
	case <-time.After(2 * time.Second):
	}
	if pg <= 1 {
		note(fmt.Sprintf("could not learn the process group of the command on %s; it may still be running", e.c.name))
		return
	}
	gone, err := e.killGroup(pg)
	switch {
	case err != nil:
		note(fmt.Sprintf("could not kill process group %d on %s: %v; it may still be running", pg, e.c.name, err))
	case !gone:
		note(fmt.Sprintf("process group %d on %s survived SIGKILL", pg, e.c.name))
	default:
		note(fmt.Sprintf("stopped the command on %s (process group %d is gone)", e.c.name, pg))
	}
}

func (e *sshExec) killGroup(pg int) (bool, error) {
	if !e.c.alive() {
		return false, e.c.lostErr()
	}
	s, err := e.c.NewSession()
	if err != nil {
		return false, err
	}
	defer s.Close()
	ticks := max(1, int(e.killGrace/(100*time.Millisecond)))
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := s.CombinedOutput(remoteScript("sh -c " + shellQuote(KillScript) + " sh " + strconv.Itoa(pg) + " " + strconv.Itoa(ticks)))
		done <- result{out, err}
	}()
	select {
	case r := <-done:
		switch strings.TrimSpace(string(r.out)) {
		case "gone":
			return true, nil
		case "alive":
			return false, nil
		}
		if r.err != nil {
			return false, r.err
		}
		return false, errors.New("unexpected answer from the kill script")
	case <-time.After(2*e.killGrace + 5*time.Second):
		return false, errors.New("the kill script did not finish")
	}
}
