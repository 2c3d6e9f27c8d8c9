package db

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"sync"

	"github.com/klauspost/compress/s2"

	"github.com/nixdeploy/nixdeploy"
)

// A deployment's log is stored in chunks, one row per run of consecutive
// lines (migration 0002): SQLite's cost is per row, and at one row per line
// it stored a few hundred thousand lines a second, far slower than a
// build prints them. A chunk's text column holds the lines' texts back to
// back, compressed with S2 when that saves at least an eighth: build logs
// shrink several times, and fewer bytes through SQLite's WAL and
// checkpoints is the larger part of storing them. Its meta column says
// where each line ends and what else it carries:
//
//	byte chunkFormat, byte flags (flagS2: the text is S2-compressed)
//	uvarint h, then h headers: host, step, stream, each a uvarint length and bytes
//	uvarint r, then r runs of lines with consecutive seqs, one time and one
//	  header: uvarint lines, uvarint header index,
//	  uvarint seq gap (first seq − previous line's seq − 1; the first run's
//	  from first_seq, so 0), varint time − previous run's (the first: − ts)
//	per line: uvarint text length
//
// The deployer stamps every line it takes from a command in one go with
// the same time, so runs are long and a line costs a byte or two of meta.
// An empty meta is a chunk of one line whose seq, time, host, step and
// stream are the row's own columns: how migration 0002 carried over the
// rows of the old one-row-per-line table.
const (
	chunkFormat = 1
	flagS2      = 1
)

// maxDecoded bounds what a chunk's text may decompress to, so a corrupt
// row cannot ask for an absurd allocation.
const maxDecoded = 1 << 30

// Chunks are bounded so reading a log back holds little in memory; the
// deployer's batches (1000 lines or 1 MiB) fit in one.
const (
	chunkMaxLines = 4096
	chunkMaxBytes = 1 << 20
)

const logInsertSQL = `INSERT INTO log_chunks
	(deployment_id, first_seq, last_seq, lines, ts, host, step, stream, meta, text)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// errSeqRepeated is what the log_chunks_no_overlap trigger raises.
const errSeqRepeated = "log line seq repeated"

// AppendLogs stores lines of a deployment's log in one transaction. Seq
// numbers are the caller's and must be unique within the deployment; a
// repeat is an error rather than a silent overwrite. Lines are stored as
// runs of consecutive seqs, so a call must not number a line inside the
// range of an earlier call's (the deployer numbers 1, 2, 3, … in order).
func (d *DB) AppendLogs(ctx context.Context, deploymentID int64, lines []nixdeploy.LogLine) error {
	return d.AppendLogsAt(ctx, deploymentID, lines, nil)
}

// AppendLogsAt is AppendLogs that also records, in the same transaction,
// how far into their output files of remote steps the stored lines reach
// (see remote.go), so a reattach resumes exactly after them.
func (d *DB) AppendLogsAt(ctx context.Context, deploymentID int64, lines []nixdeploy.LogLine, cursors []nixdeploy.LogCursor) error {
	if len(lines) == 0 && len(cursors) == 0 {
		return nil
	}
	bySeq := func(a, b nixdeploy.LogLine) int { return cmp.Compare(a.Seq, b.Seq) }
	if !slices.IsSortedFunc(lines, bySeq) {
		lines = slices.Clone(lines)
		slices.SortStableFunc(lines, bySeq)
	}
	for i := 1; i < len(lines); i++ {
		if lines[i].Seq == lines[i-1].Seq {
			return fmt.Errorf("append log lines to deployment %d: seq %d is given twice", deploymentID, lines[i].Seq)
		}
	}
	ins, err := d.prepared(ctx, logInsertSQL)
	if err != nil {
		return fmt.Errorf("append log lines: %w", err)
	}
	// Encode before taking the write lock: other writers wait only for
	// the inserts themselves.
	var chunks []chunk
	for len(lines) > 0 {
		var c chunk
		c, lines = encodeChunk(lines)
		chunks = append(chunks, c)
	}
	defer func() {
		for i := range chunks {
			chunks[i].release()
		}
	}()
	err = d.tx(ctx, func(tx *sql.Tx) error {
		st := tx.StmtContext(ctx, ins)
		for _, c := range chunks {
			f := c.first
			if _, err := st.ExecContext(ctx, deploymentID, f.Seq, c.lastSeq, c.lines, nanos(f.Time), f.Host, f.Step, string(f.Stream), c.meta, c.text); err != nil {
				return err
			}
		}
		return d.setCursors(ctx, tx, deploymentID, cursors)
	})
	if err != nil {
		if strings.Contains(err.Error(), errSeqRepeated) {
			if len(chunks) == 0 {
				return fmt.Errorf("append log lines to deployment %d: %w", deploymentID, err)
			}
			return fmt.Errorf("append log lines to deployment %d: a seq from %d to %d is already stored", deploymentID, chunks[0].first.Seq, chunks[len(chunks)-1].lastSeq)
		}
		return fmt.Errorf("append log lines to deployment %d: %w", deploymentID, err)
	}
	return nil
}

// chunk is one encoded row of log_chunks. Its buffers come from bufs and
// go back with release once the row is inserted (the driver copies them).
type chunk struct {
	first      nixdeploy.LogLine
	lastSeq    int64
	lines      int
	meta, text []byte
	bufs       []*[]byte
}

// bufs recycles the chunk buffers, by power-of-two size class: a long log
// is thousands of chunks of up to a MiB, which would otherwise keep the
// garbage collector busy.
var bufs [32]sync.Pool

func getBuf(size int) *[]byte {
	class := bits.Len(uint(max(size, 64) - 1))
	if p, ok := bufs[class].Get().(*[]byte); ok {
		*p = (*p)[:0]
		return p
	}
	b := make([]byte, 0, 1<<class)
	return &b
}

func putBuf(p *[]byte) {
	if c := cap(*p); c >= 64 {
		bufs[bits.Len(uint(c))-1].Put(p)
	}
}

func (c *chunk) buf(size int) []byte {
	p := getBuf(size)
	c.bufs = append(c.bufs, p)
	return *p
}

func (c *chunk) release() {
	for _, p := range c.bufs {
		putBuf(p)
	}
	c.bufs = nil
}

type header struct {
	host, step string
	stream     nixdeploy.Stream
}

// encodeChunk encodes the first lines, up to the chunk bounds, and
// returns the rest.
func encodeChunk(lines []nixdeploy.LogLine) (chunk, []nixdeploy.LogLine) {
	n, size := 0, 0
	for n < len(lines) && n < chunkMaxLines && (n == 0 || size+len(lines[n].Text) <= chunkMaxBytes) {
		size += len(lines[n].Text)
		n++
	}
	in := lines[:n]
	c := chunk{first: in[0], lastSeq: in[n-1].Seq, lines: n}
	raw := c.buf(size)
	lengths := c.buf(2 * n)
	// A chunk has few distinct headers (a step's stdout, stderr and
	// events), so a linear search when the header changes is enough.
	var hdrs []header
	type run struct {
		lines, hdr int
		seqGap     int64
		dt         int64
	}
	var runs []run
	prevSeq, prevTS := c.first.Seq-1, nanos(c.first.Time)
	for _, l := range in {
		ts := nanos(l.Time)
		r := len(runs) - 1
		if r < 0 || l.Seq != prevSeq+1 || ts != prevTS || hdrs[runs[r].hdr] != (header{l.Host, l.Step, l.Stream}) {
			h := slices.Index(hdrs, header{l.Host, l.Step, l.Stream})
			if h < 0 {
				hdrs = append(hdrs, header{l.Host, l.Step, l.Stream})
				h = len(hdrs) - 1
			}
			runs = append(runs, run{hdr: h, seqGap: l.Seq - prevSeq - 1, dt: ts - prevTS})
			r++
		}
		runs[r].lines++
		lengths = binary.AppendUvarint(lengths, uint64(len(l.Text)))
		raw = append(raw, l.Text...)
		prevSeq, prevTS = l.Seq, ts
	}
	var flags byte
	c.text = raw
	if len(raw) >= 64 {
		packed := s2.Encode(c.buf(s2.MaxEncodedLen(len(raw)))[:s2.MaxEncodedLen(len(raw))], raw)
		if len(packed) <= len(raw)-len(raw)/8 {
			flags, c.text = flagS2, packed
		}
	}
	meta := c.buf(16 + len(lengths) + 3*len(hdrs)*16 + 8*len(runs))
	meta = append(meta, chunkFormat, flags)
	meta = binary.AppendUvarint(meta, uint64(len(hdrs)))
	for _, h := range hdrs {
		for _, s := range []string{h.host, h.step, string(h.stream)} {
			meta = binary.AppendUvarint(meta, uint64(len(s)))
			meta = append(meta, s...)
		}
	}
	meta = binary.AppendUvarint(meta, uint64(len(runs)))
	for _, r := range runs {
		meta = binary.AppendUvarint(meta, uint64(r.lines))
		meta = binary.AppendUvarint(meta, uint64(r.hdr))
		meta = binary.AppendUvarint(meta, uint64(r.seqGap))
		meta = binary.AppendVarint(meta, r.dt)
	}
	c.meta = append(meta, lengths...)
	return c, lines[n:]
}

var errBadChunk = errors.New("corrupt log chunk")

// decodeChunk calls fn for each line of a stored chunk. The texts share
// one string per chunk; scratch is a buffer to decompress into, returned
// for the next chunk.
func decodeChunk(first nixdeploy.LogLine, count int64, meta, stored, scratch []byte, fn func(nixdeploy.LogLine) error) ([]byte, error) {
	if len(meta) == 0 {
		first.Text = string(stored)
		return scratch, fn(first)
	}
	if len(meta) < 2 || meta[0] != chunkFormat {
		return scratch, fmt.Errorf("%w: unknown format", errBadChunk)
	}
	text := stored
	if meta[1]&flagS2 != 0 {
		n, err := s2.DecodedLen(stored)
		if err != nil || n > maxDecoded {
			return scratch, fmt.Errorf("%w: text does not decompress", errBadChunk)
		}
		if cap(scratch) < n {
			scratch = make([]byte, n)
		}
		if text, err = s2.Decode(scratch[:n], stored); err != nil {
			return scratch, fmt.Errorf("%w: text does not decompress: %v", errBadChunk, err)
		}
	}
	return scratch, decodeLines(first, count, meta[2:], string(text), fn)
}

// decodeLines walks a chunk's meta (after the format and flags bytes).
func decodeLines(first nixdeploy.LogLine, count int64, p []byte, text string, fn func(nixdeploy.LogLine) error) error {
	bad := false
	uv := func() uint64 {
		v, n := binary.Uvarint(p)
		if n <= 0 {
			bad = true
			return 0
		}
		p = p[n:]
		return v
	}
	str := func() string {
		n := uv()
		if bad || n > uint64(len(p)) {
			bad = true
			return ""
		}
		s := string(p[:n])
		p = p[n:]
		return s
	}
	nh := uv()
	if bad || nh > uint64(len(p)) {
		return errBadChunk
	}
	hdrs := make([]header, nh)
	for i := range hdrs {
		hdrs[i] = header{host: str(), step: str(), stream: nixdeploy.Stream(str())}
	}
	nr := uv()
	if bad || nr > uint64(len(p)) {
		return errBadChunk
	}
	type run struct {
		lines, hdr uint64
		seq, ts    int64
	}
	runs := make([]run, nr)
	var total uint64
	seq, ts := first.Seq-1, nanos(first.Time)
	for i := range runs {
		r := &runs[i]
		r.lines, r.hdr = uv(), uv()
		seq += int64(uv()) + 1
		dt, n := binary.Varint(p)
		if bad || n <= 0 || r.hdr >= nh {
			return errBadChunk
		}
		p = p[n:]
		ts += dt
		r.seq, r.ts = seq, ts
		seq += int64(r.lines) - 1
		total += r.lines
	}
	if total != uint64(count) {
		return fmt.Errorf("%w: %d lines in runs, %d in the row", errBadChunk, total, count)
	}
	off := 0
	for _, r := range runs {
		h, t := hdrs[r.hdr], fromNanos(r.ts)
		for i := range r.lines {
			size := uv()
			if bad || size > uint64(len(text)-off) {
				return errBadChunk
			}
			l := nixdeploy.LogLine{Seq: r.seq + int64(i), Time: t, Host: h.host, Step: h.step, Stream: h.stream, Text: text[off : off+int(size)]}
			off += int(size)
			if err := fn(l); err != nil {
				return err
			}
		}
	}
	return nil
}

// EachLog calls fn for every stored line of a deployment, in order, without
// loading the whole log into memory: one chunk at a time.
func (d *DB) EachLog(ctx context.Context, deploymentID int64, fn func(nixdeploy.LogLine) error) error {
	rows, err := d.query(ctx, `SELECT first_seq, ts, host, step, stream, lines, meta, text FROM log_chunks
		WHERE deployment_id = ? ORDER BY first_seq`, deploymentID)
	if err != nil {
		return fmt.Errorf("read log of deployment %d: %w", deploymentID, err)
	}
	defer rows.Close()
	var scratch []byte
	for rows.Next() {
		var first nixdeploy.LogLine
		var ts, count int64
		var meta, text sql.RawBytes
		if err := rows.Scan(&first.Seq, &ts, &first.Host, &first.Step, &first.Stream, &count, &meta, &text); err != nil {
			return err
		}
		first.Time = fromNanos(ts)
		// fn may keep a line, so the texts get a string of their own;
		// the rest is done with before the next row.
		if scratch, err = decodeChunk(first, count, meta, text, scratch, fn); err != nil {
			if errors.Is(err, errBadChunk) {
				return fmt.Errorf("read log of deployment %d at seq %d: %w", deploymentID, first.Seq, err)
			}
			return err
		}
	}
	return rows.Err()
}

// LogCount returns how many lines a deployment has stored.
func (d *DB) LogCount(ctx context.Context, deploymentID int64) (int64, error) {
	var n int64
	err := d.queryRow(ctx, `SELECT coalesce(sum(lines), 0) FROM log_chunks WHERE deployment_id = ?`, deploymentID).Scan(&n)
	return n, err
}
