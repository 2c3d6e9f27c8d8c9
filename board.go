package nixdeploy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The drift board: what each host runs, what it booted, what the flake's
// current revision says it should run. The deployer reads the hosts
// (HostReading); the bot adds what the database knows (BoardRow) and
// shows the board in Slack and the terminal; the report schedule action
// posts it when it changed (Board.Digest).

// BoardConfig is the [board] table of the fleet config.
type BoardConfig struct {
	// Parallel bounds how many hosts are read at once (default 16).
	Parallel int `toml:"parallel"`
	// ReadTimeout bounds one host's reading, connection included
	// (default 20s); a host that takes longer reads as unknown.
	ReadTimeout Duration `toml:"read_timeout"`
}

// Defaults of [board].
const (
	DefaultBoardParallel    = 16
	DefaultBoardReadTimeout = 20 * time.Second
)

func (b *BoardConfig) applyDefaults() {
	if b.Parallel == 0 {
		b.Parallel = DefaultBoardParallel
	}
	if b.ReadTimeout.Duration == 0 {
		b.ReadTimeout.Duration = DefaultBoardReadTimeout
	}
}

func (b BoardConfig) validate(p *problems) {
	if b.Parallel < 1 || b.Parallel > 256 {
		p.add("board: parallel must be between 1 and 256")
	}
	if b.ReadTimeout.Duration < time.Second {
		p.add("board: read_timeout must be at least 1s")
	}
}

// Drift says whether a host runs what the flake's current revision
// evaluates to.
type Drift string

// Drift values.
const (
	// DriftNo: the running system is the expected one.
	DriftNo Drift = "no"
	// DriftYes: the host runs something else (an older deployment, a
	// rollback, a change made on the host itself).
	DriftYes Drift = "yes"
	// DriftUnknown: the host could not be read, or the expected system
	// could not be evaluated; HostReading.Why says which.
	DriftUnknown Drift = "unknown"
)

// HostReading is one look at a host over its pinned SSH connection.
type HostReading struct {
	Host string
	// Running is /run/current-system and Booted /run/booted-system, as
	// readlink printed them; empty when unknown.
	Running string
	Booted  string
	// Expected is the system the flake evaluates to for the host at
	// Revision (its config.system.build.toplevel); empty when unknown.
	Expected string
	Revision string
	Drift    Drift
	// Why says, in one sentence, why Drift is yes or unknown.
	Why string
	// RebootPending: the booted system differs from the running one.
	RebootPending bool
	// At is when the host was read.
	At time.Time
}

// BoardRow is a host's line on the board: its reading and what the
// database knows about it.
type BoardRow struct {
	HostReading
	// LastID is the host's newest deployment (0: never deployed by
	// nixdeploy), with its action, state and revision.
	LastID       int64
	LastAction   Action
	LastState    State
	LastRevision string
	// Locks says who holds the host (a deployment in flight, a manual
	// lock), one phrase each; empty when free.
	Locks []string
}

// Board is the fleet's drift board.
type Board struct {
	Rows []BoardRow
	// At is when the reading began.
	At time.Time
}

// Counts returns how many rows drift, are unknown and wait for a reboot.
func (b Board) Counts() (drift, unknown, reboot int) {
	for _, r := range b.Rows {
		switch r.Drift {
		case DriftYes:
			drift++
		case DriftUnknown:
			unknown++
		}
		if r.RebootPending {
			reboot++
		}
	}
	return drift, unknown, reboot
}

// Headline is the board's one-line summary.
func (b Board) Headline() string {
	drift, unknown, reboot := b.Counts()
	var parts []string
	if drift > 0 {
		parts = append(parts, fmt.Sprintf("%d drifted", drift))
	}
	if unknown > 0 {
		parts = append(parts, fmt.Sprintf("%d unknown", unknown))
	}
	if reboot > 0 {
		parts = append(parts, fmt.Sprintf("%d reboot pending", reboot))
	}
	if len(parts) == 0 && len(b.Rows) == 1 {
		return "Drift board: " + b.Rows[0].Host + " runs the expected system"
	}
	if len(parts) == 0 {
		return fmt.Sprintf("Drift board: all %s run the expected system", plural(len(b.Rows), "host"))
	}
	return fmt.Sprintf("Drift board: %s of %s", strings.Join(parts, ", "), plural(len(b.Rows), "host"))
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// Revision is the flake revision the board's expected systems are of, ""
// when it could not be locked.
func (b Board) Revision() string {
	for _, r := range b.Rows {
		if r.Revision != "" {
			return r.Revision
		}
	}
	return ""
}

// Summary is the headline with the revision the hosts are compared with.
func (b Board) Summary() string {
	if rev := b.Revision(); rev != "" {
		return b.Headline() + " (flake at " + ShortRevision(rev) + ")"
	}
	return b.Headline()
}

// Digest identifies what the board says, leaving out when it was read: two
// boards with the same digest show the same systems, drift, reasons,
// deployments and locks. The report action posts only when it changes.
func (b Board) Digest() string {
	h := sha256.New()
	field := func(s string) { h.Write([]byte(s)); h.Write([]byte{0}) }
	for _, r := range b.Rows {
		field(r.Host)
		field(r.Running)
		field(r.Booted)
		field(r.Expected)
		field(r.Revision)
		field(string(r.Drift))
		field(r.Why)
		field(strconv.FormatBool(r.RebootPending))
		field(strconv.FormatInt(r.LastID, 10))
		field(string(r.LastState))
		field(strings.Join(r.Locks, "\x01"))
		h.Write([]byte{0, 0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// BoardColumns are the board's columns, in order, for every rendering.
var BoardColumns = []string{"host", "running", "booted", "expected", "drift", "last deployment", "locks", "read (UTC)"}

// Cells is the row as the board's columns show it, in plain text.
func (r BoardRow) Cells() []string {
	booted := ShortSystem(r.Booted)
	if r.RebootPending {
		booted += " (reboot pending)"
	}
	// Why a host drifts is what the expected column shows; why it is
	// unknown only the sentence can say.
	drift := string(r.Drift)
	if r.Drift == DriftUnknown && r.Why != "" {
		drift += ": " + r.Why
	}
	last := "never"
	if r.LastID != 0 {
		last = fmt.Sprintf("#%d %s %s", r.LastID, r.LastAction, r.LastState)
		if r.LastRevision != "" {
			last += " at " + ShortRevision(r.LastRevision)
		}
	}
	locks := "free"
	if len(r.Locks) > 0 {
		locks = strings.Join(r.Locks, "; ")
	}
	at := "-"
	if !r.At.IsZero() {
		at = r.At.UTC().Format("15:04:05")
	}
	return []string{r.Host, ShortSystem(r.Running), booted, ShortSystem(r.Expected), drift, last, locks, at}
}

// ShortSystem shortens a system path for a table: a store path to the
// first 7 characters of its hash, which tell systems apart at a glance
// ("/nix/store/0a1b2c3…-nixos-system-rk1-node1-25.05…" → "0a1b2c3"), as
// git shortens commits; another path to its base name; "-" when unknown.
// Slack's table holds 10,000 characters in all, so every cell counts.
func ShortSystem(p string) string {
	if p == "" {
		return "-"
	}
	base := p[strings.LastIndexByte(p, '/')+1:]
	hash, _, ok := strings.Cut(base, "-")
	if !ok || len(hash) != 32 {
		return base
	}
	return hash[:7]
}

// ShortRevision is a commit as people quote it.
func ShortRevision(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// Text renders the board as a plain table with aligned columns, for the
// terminal.
func (b Board) Text() string {
	rows := [][]string{BoardColumns}
	for _, r := range b.Rows {
		rows = append(rows, r.Cells())
	}
	return AlignColumns(rows)
}

// AlignColumns renders rows as text columns padded to their widest cell
// (in runes), two spaces apart, without trailing blanks.
func AlignColumns(rows [][]string) string {
	var widths []int
	for _, row := range rows {
		for i, c := range row {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	var s strings.Builder
	for _, row := range rows {
		var line strings.Builder
		for i, c := range row {
			if i > 0 {
				line.WriteString("  ")
			}
			line.WriteString(c)
			if i < len(row)-1 {
				line.WriteString(strings.Repeat(" ", widths[i]-len([]rune(c))))
			}
		}
		s.WriteString(strings.TrimRight(line.String(), " "))
		s.WriteByte('\n')
	}
	return s.String()
}
