package deployer

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nixdeploy/nixdeploy"
)

// Sink receives a deployment's log lines (nixdeploy.Sink).
type Sink = nixdeploy.Sink

// BatchSink is a Sink that also takes lines several at a time. The
// deployer hands it the lines it handled in one go with one call to Lines
// instead of one call to Line each, in the same order; the slice is only
// valid during the call. A build can print millions of lines, and a sink
// that takes a lock per call pays for it once per batch this way.
type BatchSink interface {
	Sink
	Lines([]nixdeploy.LogLine)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(nixdeploy.LogLine)

// Line calls f.
func (f SinkFunc) Line(l nixdeploy.LogLine) { f(l) }

// PhasePrefix starts the text of a phase event (nixdeploy.PhasePrefix).
const PhasePrefix = nixdeploy.PhasePrefix

// Phase reports the nixos-anywhere phase an event line announces, such as
// "Installing NixOS" (nixdeploy.LogLine.Phase).
func Phase(l nixdeploy.LogLine) (string, bool) { return l.Phase() }

// phaseMarker recognises nixos-anywhere's "### <phase> ###" lines. It
// runs on every output line, so it looks at a line's start before it
// trims the end: TrimSpace on a line padded with spaces walked the whole
// padding, about a quarter of the emitter goroutine's CPU in bench row 1
// (whose lines are padded to 100 bytes). Trimming the left and then the
// right is TrimSpace.
func phaseMarker(s string) (string, bool) {
	s = strings.TrimLeftFunc(s, unicode.IsSpace)
	if !strings.HasPrefix(s, "### ") {
		return "", false
	}
	s = strings.TrimRightFunc(s, unicode.IsSpace)
	if len(s) < 9 || !strings.HasSuffix(s, " ###") {
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
// for the store. Its input queue is bounded, so a slow consumer pushes back
// on the readers and, through SSH flow control, on the remote command.
//
// The queue is a slice under a mutex rather than a channel: the emitter
// takes everything queued at once, so a build printing a million lines
// costs a few thousand hand-overs between goroutines, not a million, while
// a lone line is still handled as soon as it arrives.
type emitter struct {
	sinks []Sink
	red   *redactor
	now   func() time.Time

	store      Store
	id         int64
	flushLines int
	flushBytes int
	flushEvery time.Duration
	log        *slog.Logger

	mu    sync.Mutex
	space sync.Cond // signalled when the emitter takes the queue
	queue []emitMsg
	// text holds the texts of the queued output lines back to back. The
	// emitter turns it into strings a segment at a time: one allocation
	// per segment rather than one per line.
	text     []byte
	closed   bool
	wake     chan struct{}
	spare    []emitMsg // the emitter's, handed back as the next queue
	spareBuf []byte
	maxQueue int

	seq        int64
	batch      []nixdeploy.LogLine
	batchBytes int
	// shown is how many lines of batch the sinks have seen: they get the
	// lines of a hand-over together, at its end.
	shown  int
	dbq    chan dbItem
	free   chan []nixdeploy.LogLine // batches the writer is done with
	dbDone chan struct{}
	dbErr  error
	// failed is dbErr for the deployment's goroutine, which checks it
	// between hosts while the writer may still set it.
	failed atomic.Pointer[LogError]
	done   chan struct{}

	stderrMu   sync.Mutex
	lastStderr map[string]string

	// maxLine is the length at which the readers split a line; carry
	// holds, per stream, the tail of a split line's piece that waits for
	// the next piece, so a secret across the split is still redacted.
	maxLine int
	carry   map[string]string

	// curs are the cursors of supervised steps' files (the emitter's
	// goroutine's): each batch stored carries them as they stand after
	// its last line, so the store records them in the same transaction.
	curs     []nixdeploy.LogCursor
	curDirty bool
}

type emitMsg struct {
	host, step string
	stream     nixdeploy.Stream
	// text is an event's text; an output line's is text[off:end] of the
	// queue's buffer until the emitter takes the queue.
	text     string
	off, end int
	// split marks the first pieces of a line longer than maxLine.
	split bool
	// cur, when not 0, is the cursor (index+1) a supervised step's line
	// moves: at is the byte offset in its file where the line ends.
	cur int32
	at  int64
	// reg registers a cursor (cursor).
	reg *nixdeploy.LogCursor
	// tail marks the newline that ends a split line exactly at a split:
	// it emits the held-back tail, if any, and is no line of its own.
	tail bool
	// sync, when set, is closed once every earlier message was handled;
	// with store set, also once every earlier line was stored (or the
	// store refused it).
	sync  chan struct{}
	store bool
}

const (
	// storeQueue is how many batches may wait for the store. A checkpoint
	// (an fsync) holds the store up for milliseconds now and then; with
	// only a batch or two of slack the whole stream, back to the remote
	// command, would stall with it.
	storeQueue = 8
	// queueBytes bounds the output text waiting for the emitter, which
	// with lines of at most MaxLineBytes bounds the queue's memory. The
	// emitter takes the whole queue at once, so a few thousand lines a
	// hand-over are plenty; at 1 MiB the queue and its spare (and their
	// message slices) were a third of the live heap while a build log
	// streamed, and the peak heap is about twice the live one: 256 KiB
	// cut bench row 1's peak RSS by 8 MiB and did not slow it.
	queueBytes = 256 << 10
	// segmentBytes bounds the strings the queued text is turned into. A
	// line kept by a sink (the status message's tail) keeps its whole
	// segment alive, so segments are small enough for that not to matter
	// and large enough to make allocation rare.
	segmentBytes = 32 << 10
)

func newEmitter(ctx context.Context, o *Options, id int64, red *redactor, sinks []Sink, log *slog.Logger) *emitter {
	return newEmitterAt(ctx, o, id, 0, red, sinks, log)
}

// newEmitterAt numbers the lines from seq+1: a reattached deployment goes
// on after the lines stored before.
func newEmitterAt(ctx context.Context, o *Options, id, seq int64, red *redactor, sinks []Sink, log *slog.Logger) *emitter {
	e := &emitter{
		seq:        seq,
		sinks:      sinks,
		red:        red,
		now:        o.Now,
		store:      o.Store,
		id:         id,
		flushLines: o.FlushLines,
		flushBytes: 1 << 20,
		flushEvery: o.FlushInterval,
		log:        log,
		wake:       make(chan struct{}, 1),
		maxQueue:   queueBytes,
		dbq:        make(chan dbItem, storeQueue),
		free:       make(chan []nixdeploy.LogLine, storeQueue+2),
		dbDone:     make(chan struct{}),
		done:       make(chan struct{}),
		lastStderr: map[string]string{},
		maxLine:    o.MaxLineBytes,
		carry:      map[string]string{},
	}
	e.space.L = &e.mu
	e.batch = make([]nixdeploy.LogLine, 0, e.flushLines)
	// Logs are written even after a cancel: the record of a cancelled
	// deployment must be complete too.
	go e.writer(context.WithoutCancel(ctx))
	go e.loop()
	return e
}

// put queues m, with b as its text when m is an output line, waiting
// while the queue is full.
func (e *emitter) put(m emitMsg, b []byte) {
	e.enqueue([]emitMsg{m}, [][]byte{b})
}

// enqueue queues ms in order under one lock, each with texts[i] as its
// text when that is not nil (an output line), waiting while the queue is
// full.
func (e *emitter) enqueue(ms []emitMsg, texts [][]byte) {
	e.mu.Lock()
	for len(e.text) >= e.maxQueue && !e.closed {
		e.space.Wait()
	}
	if e.closed {
		e.mu.Unlock()
		panic("deployer: line after the emitter was closed")
	}
	first := len(e.queue) == 0
	for i, m := range ms {
		if texts[i] != nil {
			m.off = len(e.text)
			e.text = append(e.text, texts[i]...)
			m.end = len(e.text)
		}
		e.queue = append(e.queue, m)
	}
	e.mu.Unlock()
	// Only the first message wakes the emitter: it takes the whole queue.
	if first {
		select {
		case e.wake <- struct{}{}:
		default:
		}
	}
}

// outputText is b as an output line's text: valid UTF-8 (invalid bytes
// become U+FFFD) and never nil, which would make it an event (put).
func outputText(b []byte) []byte {
	if !utf8.Valid(b) {
		b = bytes.ToValidUTF8(b, []byte("\uFFFD"))
	}
	if b == nil {
		b = []byte{}
	}
	return b
}

// line queues one output line; b is copied.
func (e *emitter) line(host, step string, stream nixdeploy.Stream, b []byte) {
	split := e.maxLine > 0 && len(b) >= e.maxLine
	b = outputText(b)
	e.put(emitMsg{host: host, step: step, stream: stream, split: split}, b)
}

// lineAt queues one output line of a supervised step's file, which ends
// at byte at of it; only a whole line (not split) moves cursor cur.
func (e *emitter) lineAt(host, step string, stream nixdeploy.Stream, b []byte, cur int32, at int64, split, tail bool) {
	b = outputText(b)
	e.put(emitMsg{host: host, step: step, stream: stream, split: split, tail: tail, cur: cur, at: at}, b)
}

// lineBatch gathers whole lines of a supervised step's stream for one
// hand-over to the emitter (putLines). Its texts point into the reader's
// buffer, so it is handed over before the reader reads on.
type lineBatch struct {
	msgs  []emitMsg
	texts [][]byte
}

// add appends one line (without its newline) that ends at byte m.at of
// the stream's file.
func (b *lineBatch) add(m emitMsg, text []byte) {
	b.msgs = append(b.msgs, m)
	b.texts = append(b.texts, outputText(text))
}

// putLines queues the lines of b, as lineAt would one by one, under one
// lock and with at most one wake-up: a build printing a burst costs one
// hand-over per read of the reader's buffer (hundreds of lines), not one
// per line. It empties b.
func (e *emitter) putLines(b *lineBatch) {
	if len(b.msgs) == 0 {
		return
	}
	e.enqueue(b.msgs, b.texts)
	clear(b.texts)
	b.msgs, b.texts = b.msgs[:0], b.texts[:0]
}

// cursor registers c and returns its handle for lineAt. The caller counts
// its registrations (n is how many it made before), which keeps the
// emitter's list its own goroutine's.
func (e *emitter) cursor(c nixdeploy.LogCursor, n int) int32 {
	e.put(emitMsg{reg: &c}, nil)
	return int32(n + 1)
}

// event queues a line of the deployer's own.
func (e *emitter) event(host, step, format string, args ...any) {
	e.put(emitMsg{host: host, step: step, stream: nixdeploy.StreamEvent, text: fmt.Sprintf(format, args...)}, nil)
}

// barrier waits until everything queued so far reached the sinks.
func (e *emitter) barrier() {
	c := make(chan struct{})
	e.put(emitMsg{sync: c}, nil)
	<-c
}

// LogError is a deployment whose log could not be stored completely (a
// full disk, a broken database). It fails the deployment: a record with
// lines missing is not a record of what happened (issue 15, attack 5).
type LogError struct{ Err error }

func (e *LogError) Error() string { return "store the log: " + e.Err.Error() }
func (e *LogError) Unwrap() error { return e.Err }

// UserMessage is what the channel reads.
func (e *LogError) UserMessage() string {
	return "the log of this deployment could not be stored completely (is the bot's disk full?), so it counts as failed; check the host with /nixdeploy status"
}

// storeFailed is the store's failure so far, or nil.
func (e *emitter) storeFailed() *LogError { return e.failed.Load() }

// syncStore waits until every line queued so far was stored, or refused,
// and returns the store's failure so far: between hosts, so a batch stops
// before the next host once its log is known to be incomplete.
func (e *emitter) syncStore() *LogError {
	c := make(chan struct{})
	e.put(emitMsg{sync: c, store: true}, nil)
	<-c
	return e.storeFailed()
}

// dbItem is one entry of the store queue: a batch of lines, or a mark
// that the writer closes once everything before it was stored.
type dbItem struct {
	lines   []nixdeploy.LogLine
	cursors []nixdeploy.LogCursor
	mark    chan struct{}
}

// lastError is the last non-empty stderr line of a step, redacted.
func (e *emitter) lastError(host, step string) string {
	e.stderrMu.Lock()
	defer e.stderrMu.Unlock()
	return e.lastStderr[host+"\x00"+step]
}

// close drains the queue, flushes the store and reports a store failure.
func (e *emitter) close() error {
	e.mu.Lock()
	e.closed = true
	e.space.Broadcast()
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
	<-e.done
	return e.dbErr
}

// take returns everything queued, with the output lines' texts set, and
// whether the emitter was closed.
func (e *emitter) take() ([]emitMsg, bool) {
	e.mu.Lock()
	q, text, closed := e.queue, e.text, e.closed
	e.queue, e.spare = e.spare[:0], nil
	e.text, e.spareBuf = e.spareBuf[:0], nil
	e.space.Broadcast()
	e.mu.Unlock()

	// Lines lie back to back in text: each segment string covers the
	// lines that start within segmentBytes of its first.
	var seg string
	segOff, segEnd := 0, 0
	for i := range q {
		m := &q[i]
		if m.sync != nil || m.reg != nil || m.stream == nixdeploy.StreamEvent {
			continue
		}
		if m.end > segEnd {
			segOff, segEnd = m.off, m.end
			for j := i + 1; j < len(q); j++ {
				if n := &q[j]; n.sync == nil && n.reg == nil && n.stream != nixdeploy.StreamEvent {
					if n.end-segOff > segmentBytes {
						break
					}
					segEnd = n.end
				}
			}
			seg = string(text[segOff:segEnd])
		}
		m.text = seg[m.off-segOff : m.end-segOff]
	}
	e.spareBuf = text
	return q, closed
}

func (e *emitter) loop() {
	defer close(e.done)
	tick := time.NewTicker(e.flushEvery)
	defer tick.Stop()
	for {
		select {
		case <-e.wake:
		case <-tick.C:
			e.flush()
			continue
		}
		q, closed := e.take()
		// One clock reading per hand-over: the lines in it arrived
		// together, and reading the clock per line was a measurable
		// share of the emitter's time.
		now := e.now().UTC()
		for _, m := range q {
			if m.reg != nil {
				e.curs = append(e.curs, *m.reg)
				continue
			}
			if m.sync != nil {
				e.flushCarry(now)
				e.show()
				if m.store {
					// The writer closes it after the batches before it.
					e.flush()
					e.dbq <- dbItem{mark: m.sync}
					continue
				}
				close(m.sync)
				continue
			}
			e.handle(m, now)
		}
		if closed {
			e.flushCarry(now)
		}
		e.show()
		clear(q)
		e.spare = q[:0]
		if closed {
			// Every message put before close was in q: put refuses any
			// after it.
			e.flush()
			close(e.dbq)
			<-e.dbDone
			return
		}
	}
}

func (e *emitter) handle(m emitMsg, now time.Time) {
	if m.cur > 0 && !m.split {
		// Before the line is emitted: a batch that fills up with it
		// must carry it.
		e.curs[m.cur-1].Offset = m.at
		e.curDirty = true
	}
	text := m.text
	if m.stream != nixdeploy.StreamEvent && (m.split || m.tail || len(e.carry) > 0) {
		key := m.host + "\x00" + m.step + "\x00" + string(m.stream)
		c, ok := e.carry[key]
		if ok {
			text = c + text
			delete(e.carry, key)
		} else if m.tail {
			return
		}
		if m.split {
			var tail string
			text, tail = e.red.cut(text)
			e.carry[key] = tail
			if text == "" {
				return
			}
		}
	}
	e.output(m.host, m.step, m.stream, text, now)
}

// flushCarry emits the held-back tails of split lines whose next piece
// never came: the stream ended right at a split.
func (e *emitter) flushCarry(now time.Time) {
	if len(e.carry) == 0 {
		return
	}
	keys := slices.Sorted(maps.Keys(e.carry))
	for _, k := range keys {
		f := strings.SplitN(k, "\x00", 3)
		e.output(f[0], f[1], nixdeploy.Stream(f[2]), e.carry[k], now)
	}
	clear(e.carry)
}

// output redacts and emits one output line or event.
func (e *emitter) output(host, step string, stream nixdeploy.Stream, text string, now time.Time) {
	switch {
	case stream == nixdeploy.StreamEvent, e.red.stateless(text):
		text = e.red.plain(text)
	default:
		text = e.red.line(host+"\x00"+step+"\x00"+string(stream), text)
	}
	e.emit(host, step, stream, text, now)
	switch stream {
	case nixdeploy.StreamStdout:
		if p, ok := phaseMarker(text); ok {
			e.emit(host, step, nixdeploy.StreamEvent, PhasePrefix+p, now)
		}
	case nixdeploy.StreamStderr:
		if strings.TrimSpace(text) != "" {
			e.stderrMu.Lock()
			e.lastStderr[host+"\x00"+step] = text
			e.stderrMu.Unlock()
		}
	}
}

func (e *emitter) emit(host, step string, stream nixdeploy.Stream, text string, now time.Time) {
	e.seq++
	e.batch = append(e.batch, nixdeploy.LogLine{Seq: e.seq, Time: now, Host: host, Step: step, Stream: stream, Text: text})
	e.batchBytes += len(text) + len(host) + len(step) + 48
	if len(e.batch) >= e.flushLines || e.batchBytes >= e.flushBytes {
		e.flush()
	}
}

// show gives the sinks the lines of the batch they have not seen yet.
func (e *emitter) show() {
	lines := e.batch[e.shown:]
	if len(lines) == 0 {
		return
	}
	for _, s := range e.sinks {
		if bs, ok := s.(BatchSink); ok {
			bs.Lines(lines)
			continue
		}
		for _, l := range lines {
			s.Line(l)
		}
	}
	e.shown = len(e.batch)
}

// flush hands the batch to the writer; with storeQueue batches already
// queued it blocks, which is the store's backpressure.
func (e *emitter) flush() {
	if len(e.batch) == 0 {
		return
	}
	e.show()
	e.shown = 0
	item := dbItem{lines: e.batch}
	if e.curDirty {
		item.cursors = slices.Clone(e.curs)
		e.curDirty = false
	}
	e.dbq <- item
	select {
	case b := <-e.free:
		e.batch = b
	default:
		e.batch = make([]nixdeploy.LogLine, 0, e.flushLines)
	}
	e.batchBytes = 0
}

// writer stores the batches. When the store falls behind, the batches
// waiting by then go in together: a transaction costs about as much for
// one batch as for several, so a slow store catches up rather than falling
// further behind.
func (e *emitter) writer(ctx context.Context) {
	defer close(e.dbDone)
	var merged []nixdeploy.LogLine
	for item := range e.dbq {
		if item.mark != nil {
			close(item.mark)
			continue
		}
		b := item.lines
		cursors := item.cursors
		var mark chan struct{}
		lines, done := b, [][]nixdeploy.LogLine{b}
	more:
		for len(done) <= cap(e.dbq) {
			select {
			case ni, ok := <-e.dbq:
				if !ok {
					break more
				}
				if ni.mark != nil {
					mark = ni.mark
					break more
				}
				next := ni.lines
				if ni.cursors != nil {
					cursors = ni.cursors
				}
				if len(done) == 1 {
					merged = append(merged[:0], b...)
				}
				merged = append(merged, next...)
				lines, done = merged, append(done, next)
			default:
				break more
			}
		}
		err := e.append(ctx, lines, cursors)
		if err != nil {
			// One retry covers a busy database; a second failure is
			// reported at the end of the deployment.
			err = e.append(ctx, lines, cursors)
		}
		if err != nil && e.dbErr == nil {
			le := &LogError{Err: err}
			e.dbErr = le
			e.failed.Store(le)
			e.log.Error("store log lines", "deployment", e.id, "lines", len(lines), "err", err)
		}
		if mark != nil {
			close(mark)
		}
		// The store is done with the lines (db.DB copies what it keeps),
		// so the batches go back to the emitter to be filled again.
		clear(merged)
		for _, d := range done {
			clear(d)
			select {
			case e.free <- d[:0]:
			default:
			}
		}
	}
}

// CursorStore is a Store that records how far into a supervised step's
// files the stored log reaches, in the transaction that stores the lines
// (*db.DB does), so a reattach neither repeats nor loses a line.
type CursorStore interface {
	AppendLogsAt(ctx context.Context, id int64, lines []nixdeploy.LogLine, cursors []nixdeploy.LogCursor) error
}

func (e *emitter) append(ctx context.Context, lines []nixdeploy.LogLine, cursors []nixdeploy.LogCursor) error {
	if cs, ok := e.store.(CursorStore); ok && len(cursors) > 0 {
		return cs.AppendLogsAt(ctx, e.id, lines, cursors)
	}
	return e.store.AppendLogs(ctx, e.id, lines)
}
