package deployer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nixdeploy/nixdeploy"
)

// Sink receives a deployment's log lines, already redacted, in order: Seq
// rises by one from line to line. Stream is stdout, stderr or event; events
// are the deployer's own lines (steps starting and ending, warnings, and
// nixos-anywhere's phases, see Phase). Line is called from one goroutine;
// a slow sink slows the deployment down rather than losing lines.
type Sink interface {
	Line(nixdeploy.LogLine)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(nixdeploy.LogLine)

// Line calls f.
func (f SinkFunc) Line(l nixdeploy.LogLine) { f(l) }

// PhasePrefix starts the text of a phase event.
const PhasePrefix = "phase: "

// Phase reports the nixos-anywhere phase an event line announces, such as
// "Installing NixOS".
func Phase(l nixdeploy.LogLine) (string, bool) {
	if l.Stream != nixdeploy.StreamEvent {
		return "", false
	}
	return strings.CutPrefix(l.Text, PhasePrefix)
}

// phaseMarker recognises nixos-anywhere's "### <phase> ###" lines.
func phaseMarker(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if len(s) < 9 || !strings.HasPrefix(s, "### ") || !strings.HasSuffix(s, " ###") {
		return "", false
	}
	p := strings.TrimSpace(s[4 : len(s)-4])
	return p, p != ""
}

// TextSink writes lines as "[host step] text" to w, events as
// "[host step] -- text" (and the deployment's own as "-- text"). Write errors are ignored: a closed terminal must
// not stop a deployment.
func TextSink(w io.Writer) Sink {
	return SinkFunc(func(l nixdeploy.LogLine) {
		var b strings.Builder
		b.Grow(len(l.Host) + len(l.Step) + len(l.Text) + 8)
		if l.Host != "" || l.Step != "" {
			b.WriteString("[")
			b.WriteString(l.Host)
			if l.Step != "" {
				b.WriteString(" ")
				b.WriteString(l.Step)
			}
			b.WriteString("] ")
		}
		if l.Stream == nixdeploy.StreamEvent {
			b.WriteString("-- ")
		}
		b.WriteString(l.Text)
		b.WriteString("\n")
		io.WriteString(w, b.String())
	})
}

// emitter is the one goroutine every line of a deployment passes through:
// it redacts, numbers, timestamps, fans out to the sinks and batches lines
// for the store. Its input channel is bounded, so a slow consumer pushes
// back on the readers and, through SSH flow control, on the remote command.
type emitter struct {
	in    chan emitMsg
	sinks []Sink
	red   *redactor
	now   func() time.Time

	store      Store
	id         int64
	flushLines int
	flushBytes int
	flushEvery time.Duration
	log        *slog.Logger

	seq        int64
	batch      []nixdeploy.LogLine
	batchBytes int
	dbq        chan []nixdeploy.LogLine
	dbDone     chan struct{}
	dbErr      error
	done       chan struct{}

	mu         sync.Mutex
	lastStderr map[string]string
}

type emitMsg struct {
	host, step string
	stream     nixdeploy.Stream
	text       string
	// sync, when set, is closed once every earlier message was handled.
	sync chan struct{}
}

func newEmitter(ctx context.Context, o *Options, id int64, red *redactor, sinks []Sink, log *slog.Logger) *emitter {
	e := &emitter{
		in:         make(chan emitMsg, 256),
		sinks:      sinks,
		red:        red,
		now:        o.Now,
		store:      o.Store,
		id:         id,
		flushLines: o.FlushLines,
		flushBytes: 1 << 20,
		flushEvery: o.FlushInterval,
		log:        log,
		dbq:        make(chan []nixdeploy.LogLine, 2),
		dbDone:     make(chan struct{}),
		done:       make(chan struct{}),
		lastStderr: map[string]string{},
	}
	e.batch = make([]nixdeploy.LogLine, 0, e.flushLines)
	// Logs are written even after a cancel: the record of a cancelled
	// deployment must be complete too.
	go e.writer(context.WithoutCancel(ctx))
	go e.loop()
	return e
}

// line queues one output line; text is copied.
func (e *emitter) line(host, step string, stream nixdeploy.Stream, b []byte) {
	s := string(b)
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	e.in <- emitMsg{host: host, step: step, stream: stream, text: s}
}

// event queues a line of the deployer's own.
func (e *emitter) event(host, step, format string, args ...any) {
	e.in <- emitMsg{host: host, step: step, stream: nixdeploy.StreamEvent, text: fmt.Sprintf(format, args...)}
}

// barrier waits until everything queued so far reached the sinks.
func (e *emitter) barrier() {
	c := make(chan struct{})
	e.in <- emitMsg{sync: c}
	<-c
}

// lastError is the last non-empty stderr line of a step, redacted.
func (e *emitter) lastError(host, step string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastStderr[host+"\x00"+step]
}

// close drains the queue, flushes the store and reports a store failure.
func (e *emitter) close() error {
	close(e.in)
	<-e.done
	return e.dbErr
}

func (e *emitter) loop() {
	defer close(e.done)
	tick := time.NewTicker(e.flushEvery)
	defer tick.Stop()
	for {
		select {
		case m, ok := <-e.in:
			if !ok {
				e.flush()
				close(e.dbq)
				<-e.dbDone
				return
			}
			if m.sync != nil {
				close(m.sync)
				continue
			}
			e.handle(m)
		case <-tick.C:
			e.flush()
		}
	}
}

func (e *emitter) handle(m emitMsg) {
	text := m.text
	if m.stream == nixdeploy.StreamEvent {
		text = e.red.plain(text)
	} else {
		text = e.red.line(m.host+"\x00"+m.step+"\x00"+string(m.stream), text)
	}
	e.emit(m.host, m.step, m.stream, text)
	switch m.stream {
	case nixdeploy.StreamStdout:
		if p, ok := phaseMarker(text); ok {
			e.emit(m.host, m.step, nixdeploy.StreamEvent, PhasePrefix+p)
		}
	case nixdeploy.StreamStderr:
		if strings.TrimSpace(text) != "" {
			e.mu.Lock()
			e.lastStderr[m.host+"\x00"+m.step] = text
			e.mu.Unlock()
		}
	}
}

func (e *emitter) emit(host, step string, stream nixdeploy.Stream, text string) {
	e.seq++
	l := nixdeploy.LogLine{Seq: e.seq, Time: e.now().UTC(), Host: host, Step: step, Stream: stream, Text: text}
	for _, s := range e.sinks {
		s.Line(l)
	}
	e.batch = append(e.batch, l)
	e.batchBytes += len(text) + len(host) + len(step) + 48
	if len(e.batch) >= e.flushLines || e.batchBytes >= e.flushBytes {
		e.flush()
	}
}

// flush hands the batch to the writer; with two batches already queued it
// blocks, which is the store's backpressure.
func (e *emitter) flush() {
	if len(e.batch) == 0 {
		return
	}
	e.dbq <- e.batch
	e.batch = make([]nixdeploy.LogLine, 0, e.flushLines)
	e.batchBytes = 0
}

func (e *emitter) writer(ctx context.Context) {
	defer close(e.dbDone)
	for b := range e.dbq {
		err := e.store.AppendLogs(ctx, e.id, b)
		if err != nil {
			// One retry covers a busy database; a second failure is
			// reported at the end of the deployment.
			err = e.store.AppendLogs(ctx, e.id, b)
		}
		if err != nil && e.dbErr == nil {
			e.dbErr = err
			e.log.Error("store log lines", "deployment", e.id, "lines", len(b), "err", err)
		}
	}
}
