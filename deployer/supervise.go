package deployer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// RemoteStore is a Store that records supervised steps, so a process
// started later can find them again (*db.DB satisfies it). Without it
// long steps still run under the supervisor, but nothing can reattach.
type RemoteStore interface {
	CursorStore
	// StartRemoteStep stores rs (running) and sets rs.ID.
	StartRemoteStep(ctx context.Context, rs *nixdeploy.RemoteStep) error
	SetRemotePGID(ctx context.Context, id int64, pgid int) error
	// EndRemoteStep records that the step ended (RemoteEnded, with its
	// exit code) or that its end cannot be known (RemoteUnknown).
	EndRemoteStep(ctx context.Context, id int64, state nixdeploy.RemoteState, exitCode int) error
	// RemoteSteps lists a deployment's remote steps in state, oldest first.
	RemoteSteps(ctx context.Context, deploymentID int64, state nixdeploy.RemoteState) ([]nixdeploy.RemoteStep, error)
	// LastLogSeq is the highest stored line number of a deployment.
	LastLogSeq(ctx context.Context, deploymentID int64) (int64, error)
}

// ErrDetached is the end of a deployment whose supervised step a graceful
// shutdown left running on the runner: the next start reattaches to it.
var ErrDetached = errors.New("detached from a step that goes on running on the runner; the next start reattaches to it")

// ErrRemoteUnknown is a supervised step whose end the bot could not learn
// (nixdeploy.ErrRemoteUnknown).
var ErrRemoteUnknown = nixdeploy.ErrRemoteUnknown

// stdout and stderr index the per-stream state of a supervised step.
var supStreams = [2]nixdeploy.Stream{nixdeploy.StreamStdout, nixdeploy.StreamStderr}

// supStep is one supervised step being followed.
type supStep struct {
	rs nixdeploy.RemoteStep
	// sent is, per stream, how many bytes of the file reached the emitter
	// (a connection lost mid-line re-reads the line's unsent rest).
	sent [2]int64
	// partial is an unterminated last line, emitted only once the step
	// ended (a lost connection may have cut it).
	partial [2][]byte
	cur     [2]int32
	argv    []string
	// sentStart: the start was sent, so the step may run; it is never
	// sent twice. started: the supervisor reported the step's group.
	sentStart, started bool
}

// supervised reports whether st runs under the supervisor: the long
// steps, which reach the targets with the agent.
func supervised(st Step) bool {
	return st.Kind == KindCommand && st.Agent && st.Stdin == InputNone
}

func (d *Deployer) runnerName() string {
	if d.runner == nil {
		return "local"
	}
	return d.cfg.Runner.Address
}

func (d *Deployer) remoteStore() RemoteStore {
	rs, _ := d.opts.Store.(RemoteStore)
	return rs
}

// supervise runs st's argv under the supervisor and follows it to its end,
// through lost connections, or follows the step a reattach found running.
func (h *hostRun) supervise(ctx context.Context, st Step, argv []string) error {
	if shellQuote(st.Name) != st.Name || strings.Contains(st.Name, "/") {
		return fmt.Errorf("internal error: step name %q is not a file name", st.Name)
	}
	s := &supStep{}
	rstore := h.d.remoteStore()
	if r := h.resume; r != nil && r.Step == st.Name && r.Host == h.host.Name {
		h.resume = nil
		s.rs = *r
		s.sent = [2]int64{r.OutOffset, r.ErrOffset}
		s.started, s.sentStart = true, true
		h.registerCursors(s)
		h.em.event(h.host.Name, st.Name, "reattached to %s on the runner (process group %d in %s), from byte %d of its output and %d of its errors",
			st.Name, r.PGID, r.Dir, r.OutOffset, r.ErrOffset)
		return h.follow(ctx, st, s)
	}
	lock := *h.locked
	s.rs = nixdeploy.RemoteStep{
		DeploymentID: h.dep.ID, Host: h.host.Name, Step: st.Name,
		Runner: h.d.runnerName(), Dir: h.tmp, Name: st.Name,
		StartedAt: h.d.opts.Now().UTC(), Timeout: st.Timeout,
		Lock: &lock, Before: h.before, State: nixdeploy.RemoteRunning,
	}
	if rstore != nil {
		if err := rstore.StartRemoteStep(h.storeCtx(ctx), &s.rs); err != nil {
			return fmt.Errorf("record the step before it starts: %w", err)
		}
	}
	h.registerCursors(s)
	s.argv = argv
	return h.follow(ctx, st, s)
}

// storeCtx bounds a store write that must happen even after a cancel.
func (h *hostRun) storeCtx(ctx context.Context) context.Context {
	c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	context.AfterFunc(c, cancel)
	return c
}

func (h *hostRun) registerCursors(s *supStep) {
	if s.rs.ID == 0 {
		return
	}
	for i, stream := range supStreams {
		s.cur[i] = h.em.cursor(nixdeploy.LogCursor{RemoteStep: s.rs.ID, Stream: stream, Offset: s.sent[i]}, h.cursors)
		h.cursors++
	}
}

// follow starts the step (argv non-nil) or follows it from s.sent, and
// keeps following through lost connections until it ends, the outage
// limit passes, or ctx ends: a cancel stops the step through the
// supervisor, a shutdown leaves it running.
func (h *hostRun) follow(ctx context.Context, st Step, s *supStep) error {
	o := &h.d.opts
	var lostSince time.Time
	var lostErr error
	backoff := o.ReconnectBackoff
	for {
		wasStart := !s.sentStart
		err := h.followOnce(ctx, st, s, lostSince)
		if err == nil && ctx.Err() == nil {
			h.flushPartial(st, s)
			h.endRemote(ctx, s, nixdeploy.RemoteEnded, 0)
			return nil
		}
		var ee *ExitError
		switch {
		case ctx.Err() != nil:
			if errors.Is(context.Cause(ctx), nixdeploy.ErrShutdown) && s.sentStart {
				h.em.event(h.host.Name, st.Name, "shutting down: %s goes on running on the runner (process group %d); the next start reattaches to it", st.Name, s.rs.PGID)
				return fmt.Errorf("%w: %w", ErrDetached, context.Cause(ctx))
			}
			if s.sentStart {
				h.stopRemote(ctx, st, s)
			}
			return ctx.Err()
		case errors.As(err, &ee) && ee.Signal == "USR1":
			h.endRemote(ctx, s, nixdeploy.RemoteUnknown, -1)
			return fmt.Errorf("%w: its supervisor is gone without writing an exit status (was the runner rebooted?)", ErrRemoteUnknown)
		case errors.As(err, &ee) && !s.started && wasStart:
			// The start script failed before the supervisor ran.
			h.endRemote(ctx, s, nixdeploy.RemoteEnded, ee.Code)
			return fmt.Errorf("start %s under the supervisor on the runner: %w", st.Name, err)
		case errors.As(err, &ee) && !s.started && ee.Code == 125:
			// follow exits 125 when the step's files are there but no
			// supervisor's pid: the lost start never got to run it.
			h.endRemote(ctx, s, nixdeploy.RemoteEnded, -1)
			return fmt.Errorf("%s did not start on the runner: the connection was lost while starting it", st.Name)
		case errors.As(err, &ee):
			s.started = true
			h.flushPartial(st, s)
			h.endRemote(ctx, s, nixdeploy.RemoteEnded, ee.Code)
			if ee.Code == 124 {
				return fmt.Errorf("%w after %s (stopped by timeout on the runner)", ErrStepTimeout, st.Timeout)
			}
			return err
		}
		now := o.Now()
		if lostSince.IsZero() {
			lostSince, lostErr = now, err
			h.em.event(h.host.Name, st.Name, "lost the runner (%v); %s goes on running there under its supervisor; reconnecting for up to %s",
				h.red.plain(err.Error()), st.Name, o.Outage)
		}
		if now.Sub(lostSince) >= o.Outage {
			h.em.event(h.host.Name, st.Name, "the runner stayed unreachable for %s: giving up; %s may still be running there (process group %d in %s)",
				o.Outage, st.Name, s.rs.PGID, s.rs.Dir)
			h.endRemote(ctx, s, nixdeploy.RemoteUnknown, -1)
			return fmt.Errorf("%w; the runner stayed unreachable for %s, and %s may still be running there (%w)", lostErr, o.Outage, st.Name, ErrRemoteUnknown)
		}
		t := time.NewTimer(min(backoff, lostSince.Add(o.Outage).Sub(now)))
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		backoff = min(2*backoff, 16*o.ReconnectBackoff)
	}
}

// followOnce runs one session: the start (when *argv is set) or a follow
// from s.sent. It returns nil or an *ExitError when the step's status
// arrived, another error when the session or connection failed.
func (h *hostRun) followOnce(ctx context.Context, st Step, s *supStep, lostSince time.Time) error {
	dctx := ctx
	if !lostSince.IsZero() {
		var cancel context.CancelFunc
		dctx, cancel = context.WithDeadline(ctx, lostSince.Add(h.d.opts.Outage))
		defer cancel()
	}
	reconnect := !lostSince.IsZero()
	ex, err := h.runnerExec(dctx)
	if err != nil {
		return err
	}
	if reconnect {
		h.em.event(h.host.Name, st.Name, "reconnected to the runner; following %s from byte %d of its output and %d of its errors", st.Name, s.sent[0], s.sent[1])
	}
	var c command
	start := !s.sentStart
	if start {
		ag := "0"
		if st.Agent {
			ag = "1"
		}
		c.argv = supervisorArgv("start", s.rs.Dir, s.rs.Name, append([]string{seconds(st.Timeout), seconds(h.d.opts.KillGrace), ag}, s.argv...)...)
	} else {
		c.argv = supervisorArgv("follow", s.rs.Dir, s.rs.Name, strconv.FormatInt(s.sent[0], 10), strconv.FormatInt(s.sent[1], 10))
	}
	c.supervised = true
	c.note = func(text string) { h.em.event(h.host.Name, st.Name, "%s", text) }
	for i := range s.partial {
		s.partial[i] = s.partial[i][:0]
	}
	c.read = func(stream nixdeploy.Stream, r io.Reader) {
		i := 0
		if stream == nixdeploy.StreamStderr {
			i = 1
		}
		h.readSupervised(st, s, i, r, start && i == 1)
	}
	if st.Agent {
		if err := h.withAgent(ctx, ex, &c); err != nil {
			return err
		}
	}
	s.sentStart = true
	return ex.run(ctx, c)
}

// readSupervised hands one stream of the step's file to the emitter, line
// by line, counting bytes: a whole line moves the stream's cursor to its
// end. The whole lines a read brought in go over together (putLines). With
// marker, the first line is the start's "nixdeploy-pgid N".
func (h *hostRun) readSupervised(st Step, s *supStep, i int, r io.Reader, marker bool) {
	br := bufio.NewReaderSize(r, h.d.opts.MaxLineBytes)
	split := false
	var batch lineBatch
	whole := func(line []byte) {
		s.sent[i] += int64(len(line))
		b := line[:len(line)-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
		// A line of exactly the split length leaves only its newline
		// (readLines): that ends the line, it is not an empty one.
		batch.add(emitMsg{host: h.host.Name, step: st.Name, stream: supStreams[i], cur: s.cur[i], at: s.sent[i], tail: split && len(b) == 0}, b)
		split = false
	}
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			if marker {
				marker = false
				if v, ok := strings.CutPrefix(string(line[:len(line)-1]), pgidMarker); ok {
					if n, perr := strconv.Atoi(v); perr == nil {
						s.rs.PGID, s.started = n, true
						if rstore := h.d.remoteStore(); rstore != nil && s.rs.ID != 0 {
							if err := rstore.SetRemotePGID(context.Background(), s.rs.ID, n); err != nil {
								h.log.Error("record the remote process group", "err", err)
							}
						}
						continue
					}
				}
			}
			whole(line)
			// The whole lines that are already buffered go with it. Peek
			// and Discard within what is buffered read nothing, so the
			// slices stay valid until putLines has copied them.
			for br.Buffered() > 0 {
				buf, _ := br.Peek(br.Buffered())
				j := bytes.IndexByte(buf, '\n')
				if j < 0 {
					break
				}
				whole(buf[:j+1])
				br.Discard(j + 1)
			}
			h.em.putLines(&batch)
		case err == bufio.ErrBufferFull:
			s.sent[i] += int64(len(line))
			h.em.lineAt(h.host.Name, st.Name, supStreams[i], line, s.cur[i], s.sent[i], true, false)
			split = true
		default:
			s.partial[i] = append(s.partial[i][:0], line...)
			return
		}
	}
}

// flushPartial emits the unterminated last lines once the step ended.
func (h *hostRun) flushPartial(st Step, s *supStep) {
	for i, p := range s.partial {
		if len(p) == 0 {
			continue
		}
		s.sent[i] += int64(len(p))
		h.em.lineAt(h.host.Name, st.Name, supStreams[i], p, s.cur[i], s.sent[i], false, false)
		s.partial[i] = p[:0]
	}
}

// endRemote records the step's end once every line before it is stored,
// so a record that says ended never lacks lines of the step.
func (h *hostRun) endRemote(ctx context.Context, s *supStep, state nixdeploy.RemoteState, code int) {
	rstore := h.d.remoteStore()
	if rstore == nil || s.rs.ID == 0 {
		return
	}
	if le := h.em.syncStore(); le != nil {
		// Lines are missing: leave the record for the sweep.
		return
	}
	if err := rstore.EndRemoteStep(h.storeCtx(ctx), s.rs.ID, state, code); err != nil {
		h.log.Error("record the end of the remote step", "err", err)
	}
	s.rs.State = state
}

// stopRemote stops a cancelled step through the supervisor's cancel mode
// (SIGTERM to the step's group, SIGKILL after KillGrace, then its cleanup),
// reconnecting when needed within the outage limit.
func (h *hostRun) stopRemote(ctx context.Context, st Step, s *supStep) {
	o := &h.d.opts
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(o.Outage, 2*o.KillGrace+o.ConnectTimeout+15*time.Second))
	defer cancel()
	note := func(text string) { h.em.event(h.host.Name, st.Name, "%s", text) }
	ticks := max(1, int(o.KillGrace/(100*time.Millisecond)))
	var out capBuffer
	backoff := o.ReconnectBackoff
	for {
		ex, err := h.runnerExec(cctx)
		if err == nil {
			c := command{
				argv: supervisorArgv("cancel", s.rs.Dir, s.rs.Name, strconv.Itoa(ticks)), supervised: true,
				out: func(stream nixdeploy.Stream, b []byte) {
					if stream == nixdeploy.StreamStdout {
						out.add(b)
					}
				},
				note: note,
			}
			err = ex.run(cctx, c)
			switch strings.TrimSpace(out.String()) {
			case "gone":
				note(fmt.Sprintf("stopped %s on the runner (process group %d is gone; its supervisor removed the keys)", st.Name, s.rs.PGID))
				h.endRemote(ctx, s, nixdeploy.RemoteEnded, -1)
				return
			case "alive":
				note(fmt.Sprintf("process group %d on the runner survived SIGKILL", s.rs.PGID))
				h.endRemote(ctx, s, nixdeploy.RemoteUnknown, -1)
				return
			}
			var ee *ExitError
			if errors.As(err, &ee) {
				note(fmt.Sprintf("could not stop %s on the runner (%v); it may still be running", st.Name, err))
				return
			}
		}
		if cctx.Err() != nil {
			note(fmt.Sprintf("could not reach the runner to stop %s (%v); it may still be running (process group %d)", st.Name, err, s.rs.PGID))
			h.endRemote(ctx, s, nixdeploy.RemoteUnknown, -1)
			return
		}
		t := time.NewTimer(backoff)
		select {
		case <-cctx.Done():
		case <-t.C:
		}
		t.Stop()
		backoff = min(2*backoff, 16*o.ReconnectBackoff)
	}
}
