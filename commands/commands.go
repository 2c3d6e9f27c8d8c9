// Package commands turns the text of a /nixdeploy slash command into a
// Command, or into an error that is one sentence telling the user what to
// type instead. It owns the command grammar, its limits and the help text,
// which is generated from the same table the parser dispatches on.
//
// It does no I/O and knows nothing of Slack beyond the shape of the text
// Slack sends. Text that could mean something to a shell is refused before
// any other parsing, and every host in a Command comes from the fleet config.
package commands

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nixdeploy/nixdeploy"
)

// Kind is what a command asks for.
type Kind string

// The kinds of command.
const (
	KindDeploy  Kind = "deploy"
	KindStatus  Kind = "status"
	KindHistory Kind = "history"
	KindCancel  Kind = "cancel"
	KindLock    Kind = "lock"
	KindUnlock  Kind = "unlock"
	// KindUnlockDisk sends a LUKS host's passphrase to its initrd SSH
	// server after a reboot.
	KindUnlockDisk Kind = "unlock-disk"
	KindSchedules  Kind = "schedules"
	KindSchedule   Kind = "schedule"
	KindKeysCheck  Kind = "keys-check"
	KindHelp       Kind = "help"
	KindPower      Kind = "power"
	KindUART       Kind = "uart"
)

// Limits and defaults of the grammar.
const (
	// Prefix is the slash command. Slack sends only the text after it, but
	// the terminal adapter and copy-paste may include it.
	Prefix = "/nixdeploy"

	MaxBytes = 1000
	MaxWords = 64

	DefaultHistory = 10
	MaxHistory     = 100

	DefaultLock = time.Hour
	MinLock     = time.Minute
	MaxLock     = 7 * 24 * time.Hour
	MaxReason   = 200
)

// Schedule operations.
const (
	SchedulePause  = "pause"
	ScheduleResume = "resume"
	ScheduleRun    = "run"
)

var scheduleOps = []string{SchedulePause, ScheduleResume, ScheduleRun}

// Every error Parse returns matches ErrUsage. Text refused for containing
// shell or non-ASCII characters also matches ErrUnsafe, and unknown hosts
// match nixdeploy.ErrUnknownHost. The message is meant for the user as is.
var (
	ErrUsage  = errors.New("not a valid command")
	ErrUnsafe = errors.New("unsafe characters in command")
)

// Command is a parsed slash command. Only the fields of its Kind are set.
type Command struct {
	Kind Kind
	// Action is set for KindDeploy.
	Action nixdeploy.Action
	// Hosts are the selected hosts' names in fleet order, without
	// duplicates. For status, history and keys check, nil means every host.
	Hosts []string
	// Selectors are the host words as typed, lower-cased and split at
	// commas, so String can echo "@rk1" rather than four names.
	Selectors []string
	// ID is the deployment to cancel.
	ID int64
	// N is how many history entries to show.
	N int
	// Duration and Reason describe a lock.
	Duration time.Duration
	Reason   string
	// ScheduleOp is SchedulePause, ScheduleResume or ScheduleRun, applied to
	// the configured schedule named Schedule.
	ScheduleOp string
	Schedule   string
	// Topic is the command word help was asked about, or empty.
	Topic string
	// PowerOp is what KindPower asks of the host's BMC slot.
	PowerOp nixdeploy.PowerOp
	// Image is the image a flash writes, a path on the runner.
	Image string
	// Guard asks a switch or test for the rollback guard (--guard).
	Guard bool
}

// Request turns a deploy command into the request policy and the deployer
// see. It is only meaningful for KindDeploy.
func (c Command) Request(requester string, source nixdeploy.Source) nixdeploy.Request {
	return nixdeploy.Request{Action: c.Action, Hosts: slices.Clone(c.Hosts), Requester: requester, Source: source, Image: c.Image, Guard: c.Guard}
}

// Parse parses the text of a slash command, with or without the leading
// /nixdeploy. Empty text asks for help. cfg may be nil only for commands that
// name no host or schedule.
func Parse(cfg *nixdeploy.Config, text string) (Command, error) {
	if err := checkSafe(text); err != nil {
		return Command{}, err
	}
	if len(text) > MaxBytes {
		return Command{}, usagef("the command is %d bytes long, more than the %d allowed; send a shorter one", len(text), MaxBytes)
	}
	words := strings.Fields(text)
	if len(words) > 0 && strings.EqualFold(words[0], Prefix) {
		words = words[1:]
	}
	if len(words) > MaxWords {
		return Command{}, usagef("the command has %d words, more than the %d allowed; name fewer hosts or use an @tag or glob", len(words), MaxWords)
	}
	if len(words) == 0 {
		return Command{Kind: KindHelp}, nil
	}
	p := parser{cfg: cfg}
	s, ok := lookup(words[0])
	if !ok {
		return p.bare(words)
	}
	args := words[1:]
	if s.sub != "" {
		if len(args) == 0 || !strings.EqualFold(args[0], s.sub) {
			return Command{}, usagef("%s needs %q after it; %s", s.name, s.sub, s.usage())
		}
		args = args[1:]
	}
	switch s.kind {
	case KindDeploy:
		if s.action == nixdeploy.ActionFlash {
			return p.flash(s, args)
		}
		return p.deploy(s, args)
	case KindStatus, KindKeysCheck:
		return p.optionalHosts(s, args)
	case KindHistory:
		return p.history(s, args)
	case KindCancel:
		return p.cancel(s, args)
	case KindLock:
		return p.lock(s, args)
	case KindUnlock:
		return p.unlock(s, args)
	case KindUnlockDisk:
		if len(args) != 1 {
			return Command{}, usagef("unlock-disk takes exactly one host, not %d words; %s", len(args), s.usage())
		}
		sels, hosts, err := p.oneWord(s, args[0])
		if err != nil {
			return Command{}, err
		}
		if len(hosts) != 1 {
			return Command{}, usagef("unlock-disk unlocks one host at a time; %s matches %d", args[0], len(hosts))
		}
		return Command{Kind: KindUnlockDisk, Hosts: hosts, Selectors: sels}, nil
	case KindSchedules:
		if len(args) > 0 {
			return Command{}, usagef("schedules takes no arguments; %s", s.usage())
		}
		return Command{Kind: KindSchedules}, nil
	case KindSchedule:
		return p.schedule(s, args)
	case KindHelp:
		return p.help(s, args)
	case KindPower:
		return p.power(s, args)
	case KindUART:
		return p.uart(s, args)
	}
	// Unreachable unless the table gains a kind the switch lacks, which
	// TestTableKindsParse catches.
	return Command{}, usagef("%s is not implemented yet; try /nixdeploy help", s.name)
}

type parser struct {
	cfg *nixdeploy.Config
}

// bare handles text that starts with no command word: a host list means
// switch. If the first word is no host either, the user most likely
// mistyped a command, so suggest both.
func (p parser) bare(words []string) (Command, error) {
	sels := selectors(words[:1])
	if len(sels) == 0 || (!isPattern(sels[0]) && !p.isHost(sels[0])) {
		cands := commandWords()
		if p.cfg != nil {
			for _, h := range p.cfg.Hosts {
				cands = append(cands, h.Name)
			}
		}
		return Command{}, &parseError{
			msg:  fmt.Sprintf("unknown command or host %q (closest: %s); try /nixdeploy help", strings.ToLower(words[0]), strings.Join(nixdeploy.Closest(strings.ToLower(words[0]), cands, 3), ", ")),
			errs: []error{ErrUsage, nixdeploy.ErrUnknownHost},
		}
	}
	s, _ := lookup(string(nixdeploy.ActionSwitch))
	return p.deploy(s, words)
}

func (p parser) deploy(s spec, args []string) (Command, error) {
	guard := false
	var words []string
	for _, a := range args {
		if strings.EqualFold(a, GuardFlag) {
			guard = true
			continue
		}
		if strings.HasPrefix(a, "-") {
			return Command{}, usagef("%s knows no option %q; the only one is %s (for switch and test); %s", s.name, strings.ToLower(a), GuardFlag, s.usage())
		}
		words = append(words, a)
	}
	if guard && s.action != nixdeploy.ActionSwitch && s.action != nixdeploy.ActionTest {
		return Command{}, usagef("%s guards an activation, so it works with switch and test, not %s", GuardFlag, s.name)
	}
	args = words
	sels := selectors(args)
	if len(sels) == 0 {
		return Command{}, usagef("%s needs at least one host, @tag or glob; %s", s.name, s.usage())
	}
	hosts, err := p.hosts(sels)
	if err != nil {
		return Command{}, err
	}
	return Command{Kind: KindDeploy, Action: s.action, Hosts: hosts, Selectors: sels, Guard: guard}, nil
}

// GuardFlag asks a switch or test for the rollback guard: the host
// re-activates its previous system by itself unless the bot reaches it
// again, its health checks pass and the guard is disarmed.
const GuardFlag = "--guard"

// optionalHosts parses "status [HOST…]" and "keys check [HOST…]".
func (p parser) optionalHosts(s spec, args []string) (Command, error) {
	c := Command{Kind: s.kind}
	if len(args) == 0 {
		return c, nil
	}
	sels := selectors(args)
	if len(sels) == 0 {
		return Command{}, usagef("%s got commas but no host; %s", s.words(), s.usage())
	}
	hosts, err := p.hosts(sels)
	if err != nil {
		return Command{}, err
	}
	c.Hosts, c.Selectors = hosts, sels
	return c, nil
}

// history parses "history [HOST] [N]". A lone all-digit word is the count,
// so a host whose name is all digits needs an explicit count after it.
func (p parser) history(s spec, args []string) (Command, error) {
	c := Command{Kind: KindHistory, N: DefaultHistory}
	var hostWord, countWord string
	switch len(args) {
	case 0:
		return c, nil
	case 1:
		if isDigits(args[0]) {
			countWord = args[0]
		} else {
			hostWord = args[0]
		}
	case 2:
		hostWord, countWord = args[0], args[1]
	default:
		return Command{}, usagef("history takes at most a host and a count, not %d words; %s", len(args), s.usage())
	}
	if countWord != "" {
		n, err := strconv.Atoi(countWord)
		if !isDigits(countWord) || err != nil || n < 1 || n > MaxHistory {
			return Command{}, usagef("history count %q must be a whole number from 1 to %d; %s", countWord, MaxHistory, s.usage())
		}
		c.N = n
	}
	if hostWord != "" {
		sels, hosts, err := p.oneWord(s, hostWord)
		if err != nil {
			return Command{}, err
		}
		c.Hosts, c.Selectors = hosts, sels
	}
	return c, nil
}

func (p parser) cancel(s spec, args []string) (Command, error) {
	if len(args) != 1 {
		return Command{}, usagef("cancel takes exactly one deployment ID, not %d words; %s", len(args), s.usage())
	}
	// Accept "#42" as well: that is how the bot shows deployment IDs.
	w := strings.TrimPrefix(args[0], "#")
	id, err := strconv.ParseInt(w, 10, 64)
	if !isDigits(w) || err != nil || id < 1 {
		return Command{}, usagef("deployment ID %q must be a positive whole number; %s", args[0], s.usage())
	}
	return Command{Kind: KindCancel, ID: id}, nil
}

// lock parses "lock HOST [DURATION] [REASON…]". A second word that starts
// like a number must be a valid duration: "lock ganon 2hr" failing loudly
// beats a one-hour lock with the reason "2hr".
func (p parser) lock(s spec, args []string) (Command, error) {
	if len(args) == 0 {
		return Command{}, usagef("lock needs a host, @tag or glob; %s", s.usage())
	}
	sels, hosts, err := p.oneWord(s, args[0])
	if err != nil {
		return Command{}, err
	}
	c := Command{Kind: KindLock, Hosts: hosts, Selectors: sels, Duration: DefaultLock}
	rest := args[1:]
	if len(rest) > 0 && looksNumeric(rest[0]) {
		d, err := parseDuration(rest[0])
		if err != nil || d < MinLock || d > MaxLock {
			return Command{}, usagef("lock duration %q must be from %s to %s, written like 30m, 2h or 3d; %s", rest[0], formatDuration(MinLock), formatDuration(MaxLock), s.usage())
		}
		c.Duration = d
		rest = rest[1:]
	}
	c.Reason = strings.Join(rest, " ")
	if err := checkReason(c.Reason); err != nil {
		return Command{}, err
	}
	return c, nil
}

func (p parser) unlock(s spec, args []string) (Command, error) {
	if len(args) != 1 {
		return Command{}, usagef("unlock takes exactly one host, @tag or glob, not %d words; %s", len(args), s.usage())
	}
	sels, hosts, err := p.oneWord(s, args[0])
	if err != nil {
		return Command{}, err
	}
	return Command{Kind: KindUnlock, Hosts: hosts, Selectors: sels}, nil
}

func (p parser) schedule(s spec, args []string) (Command, error) {
	if len(args) != 2 {
		return Command{}, usagef("schedule takes an operation and a schedule name, not %d words; %s", len(args), s.usage())
	}
	op, name := strings.ToLower(args[0]), strings.ToLower(args[1])
	if !slices.Contains(scheduleOps, op) {
		return Command{}, usagef("schedule operation %q must be one of %s; %s", op, strings.Join(scheduleOps, ", "), s.usage())
	}
	var names []string
	if p.cfg != nil {
		for _, sc := range p.cfg.Schedules {
			if sc.Name == name {
				return Command{Kind: KindSchedule, ScheduleOp: op, Schedule: name}, nil
			}
			names = append(names, sc.Name)
		}
	}
	if len(names) == 0 {
		return Command{}, &parseError{
			msg:  fmt.Sprintf("unknown schedule %q (none are configured); add one to the fleet config", name),
			errs: []error{ErrUsage, nixdeploy.ErrNotFound},
		}
	}
	return Command{}, &parseError{
		msg:  fmt.Sprintf("unknown schedule %q (closest schedules: %s); try /nixdeploy schedules", name, strings.Join(nixdeploy.Closest(name, names, 3), ", ")),
		errs: []error{ErrUsage, nixdeploy.ErrNotFound},
	}
}

func (p parser) help(s spec, args []string) (Command, error) {
	if len(args) == 0 {
		return Command{Kind: KindHelp}, nil
	}
	t, ok := lookup(args[0])
	if !ok {
		return Command{}, usagef("no help topic %q (closest: %s); try /nixdeploy help", strings.ToLower(args[0]), strings.Join(nixdeploy.Closest(strings.ToLower(args[0]), commandWords(), 3), ", "))
	}
	// "help keys check" names the command the way it is typed.
	rest := args[1:]
	if t.sub != "" && len(rest) > 0 && strings.EqualFold(rest[0], t.sub) {
		rest = rest[1:]
	}
	if len(rest) > 0 {
		return Command{}, usagef("help takes one topic, not %d words; %s", len(args), s.usage())
	}
	return Command{Kind: KindHelp, Topic: t.name}, nil
}

// oneWord expands the single host word of lock, unlock and history.
func (p parser) oneWord(s spec, word string) (sels, hosts []string, err error) {
	sels = selectors([]string{word})
	if len(sels) == 0 {
		return nil, nil, usagef("%s needs a host, @tag or glob, not %q; %s", s.name, word, s.usage())
	}
	hosts, err = p.hosts(sels)
	if err != nil {
		return nil, nil, err
	}
	return sels, hosts, nil
}

// hosts expands selectors through the fleet config, the only source of
// host names a Command may carry.
func (p parser) hosts(sels []string) ([]string, error) {
	if p.cfg == nil {
		return nil, usagef("no fleet configuration is loaded, so no host can be named; start nixdeploy with a config")
	}
	hs, err := p.cfg.Select(sels)
	if err != nil {
		return nil, &parseError{msg: err.Error() + "; try /nixdeploy help", errs: []error{ErrUsage, err}}
	}
	names := make([]string, len(hs))
	for i, h := range hs {
		names[i] = h.Name
	}
	return names, nil
}

func (p parser) isHost(name string) bool {
	if p.cfg == nil {
		return false
	}
	_, ok := p.cfg.Host(name)
	return ok
}

// selectors lower-cases host words and splits them at commas, because
// "ganon, rk1-node1" is how people list things in chat. Host, tag and
// schedule names are lower-case by config validation.
func selectors(words []string) []string {
	var out []string
	for _, w := range words {
		for part := range strings.SplitSeq(strings.ToLower(w), ",") {
			if part != "" {
				out = append(out, part)
			}
		}
	}
	return out
}

func isPattern(sel string) bool {
	return strings.HasPrefix(sel, "@") || strings.ContainsAny(sel, "*?[")
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func looksNumeric(s string) bool {
	return s != "" && strings.ContainsRune("0123456789.+-", rune(s[0]))
}

// parseDuration accepts Go durations ("90m", "1h30m") and whole days ("3d"),
// since a lock for days is common and Go has no day unit.
func parseDuration(s string) (time.Duration, error) {
	s = strings.ToLower(s)
	if days, ok := strings.CutSuffix(s, "d"); ok && isDigits(days) {
		n, err := strconv.Atoi(days)
		if err != nil || n > int(MaxLock/(24*time.Hour))+1 {
			return 0, fmt.Errorf("duration %q is too long", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// formatDuration is the shortest spelling parseDuration reads back as d.
func formatDuration(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	s := d.String()
	if t, ok := strings.CutSuffix(s, "m0s"); ok {
		s = t + "m"
	}
	if t, ok := strings.CutSuffix(s, "h0m"); ok {
		s = t + "h"
	}
	return s
}

// checkReason re-checks the lock reason on its own, so the rule that it is
// short printable ASCII does not silently depend on checkSafe.
func checkReason(r string) error {
	if len(r) > MaxReason {
		return usagef("the lock reason is %d characters, more than the %d allowed; shorten it", len(r), MaxReason)
	}
	for i := 0; i < len(r); i++ {
		if r[i] < 0x20 || r[i] > 0x7e {
			return unsafef("the lock reason may hold only printable ASCII; retype it")
		}
	}
	return nil
}

// String is the command in canonical form, for the acknowledgement the bot
// posts. Parse(cfg, c.String()) returns c again.
func (c Command) String() string {
	sels := c.Selectors
	if len(sels) == 0 {
		sels = c.Hosts
	}
	words := []string{}
	switch c.Kind {
	case KindDeploy:
		words = append(append(words, string(c.Action)), sels...)
		if c.Action == nixdeploy.ActionFlash {
			words = append(words, c.Image)
		}
		if c.Guard {
			words = append(words, GuardFlag)
		}
	case KindStatus:
		words = append(append(words, "status"), sels...)
	case KindKeysCheck:
		words = append(append(words, "keys", "check"), sels...)
	case KindHistory:
		// The count is always printed: a lone number would otherwise be
		// read as the count even if the host word were all digits.
		words = append(words, "history")
		if len(sels) > 0 {
			words = append(words, strings.Join(sels, ","))
		}
		n := c.N
		if n == 0 {
			n = DefaultHistory
		}
		words = append(words, strconv.Itoa(n))
	case KindCancel:
		words = append(words, "cancel", strconv.FormatInt(c.ID, 10))
	case KindLock:
		d := c.Duration
		if d == 0 {
			d = DefaultLock
		}
		words = append(words, "lock", strings.Join(sels, ","), formatDuration(d))
		if c.Reason != "" {
			words = append(words, c.Reason)
		}
	case KindUnlock:
		words = append(words, "unlock", strings.Join(sels, ","))
	case KindUnlockDisk:
		words = append(words, "unlock-disk", strings.Join(sels, ","))
	case KindSchedules:
		words = append(words, "schedules")
	case KindSchedule:
		words = append(words, "schedule", c.ScheduleOp, c.Schedule)
	case KindPower, KindUART:
		words = append(words, c.bmcWords()...)
	case KindHelp:
		words = append(words, "help")
		if c.Topic != "" {
			words = append(words, c.Topic)
		}
	default:
		words = append(words, string(c.Kind))
	}
	return strings.Join(words, " ")
}

// parseError carries a finished user-facing sentence and the sentinels it
// matches, so the message need not start with a sentinel's text.
type parseError struct {
	msg  string
	errs []error
}

func (e *parseError) Error() string   { return e.msg }
func (e *parseError) Unwrap() []error { return e.errs }

func usagef(format string, args ...any) error {
	return &parseError{msg: fmt.Sprintf(format, args...), errs: []error{ErrUsage, nixdeploy.ErrInvalidInput}}
}

func unsafef(format string, args ...any) error {
	return &parseError{msg: fmt.Sprintf(format, args...), errs: []error{ErrUnsafe, ErrUsage, nixdeploy.ErrInvalidInput}}
}
