// Package nixdeploy holds the domain of the nixdeploy bot: the fleet and its
// configuration, the actions a deployment can take, requests, deployments,
// approvals and schedules. It imports no other package of this module; the
// packages that do I/O (db, deployer, bot, schedules) talk through these types.
package nixdeploy

import (
	"fmt"
	"strings"
	"time"
)

// Action is what a deployment does to a host.
type Action string

// The actions nixdeploy knows. Install is the only destructive one: it runs
// nixos-anywhere, whose disko phase wipes the configured disk.
const (
	ActionInstall     Action = "install"
	ActionSwitch      Action = "switch"
	ActionBoot        Action = "boot"
	ActionTest        Action = "test"
	ActionDryActivate Action = "dry-activate"
	ActionRollback    Action = "rollback"
)

// Actions lists every action in the order help texts show them.
var Actions = []Action{ActionSwitch, ActionBoot, ActionTest, ActionDryActivate, ActionRollback, ActionInstall}

// ParseAction accepts an action name. "dry-run" is accepted as another
// spelling of dry-activate, nixos-rebuild's word, which is the one shown.
func ParseAction(s string) (Action, error) {
	if s == "dry-run" {
		return ActionDryActivate, nil
	}
	for _, a := range Actions {
		if string(a) == s {
			return a, nil
		}
	}
	names := make([]string, len(Actions))
	for i, a := range Actions {
		names[i] = string(a)
	}
	return "", fmt.Errorf("%w: unknown action %q (want one of %s)", ErrInvalidInput, s, strings.Join(names, ", "))
}

// Destructive reports whether the action can destroy data on the target and
// therefore needs an approval.
func (a Action) Destructive() bool { return a == ActionInstall || a == ActionFlash }

// Source says where a request came from.
type Source string

// Request sources.
const (
	SourceSlack    Source = "slack"
	SourceSchedule Source = "schedule"
	SourceCLI      Source = "cli"
)

// Request is what a person or a schedule asks for, before policy decides
// whether it may run and whether it needs an approval.
type Request struct {
	Action    Action
	Hosts     []string // host names from the fleet config, in fleet order
	Requester string   // Slack user id, schedule name, or local user
	Source    Source
	// Image is what a flash writes: an absolute path on the runner.
	Image string
	// Recover is the schedule's recover key for a scheduled request.
	Recover Recover
	// Guard asks for the rollback guard (Deployment.Guard).
	Guard bool
}

// State is the lifecycle state of a deployment.
type State string

// Deployment states. Queued and Running are the only non-final states.
const (
	StateQueued      State = "queued"
	StateAwaiting    State = "awaiting-approval"
	StateRunning     State = "running"
	StateSucceeded   State = "succeeded"
	StateFailed      State = "failed"
	StateCancelled   State = "cancelled"
	StateRejected    State = "rejected"
	StateExpired     State = "expired"
	StateInterrupted State = "interrupted"
)

// Final reports whether no further transition is expected from s.
func (s State) Final() bool {
	switch s {
	case StateQueued, StateAwaiting, StateRunning:
		return false
	}
	return true
}

// Deployment is one run of an action against one or more hosts.
type Deployment struct {
	ID        int64
	Hosts     []string
	Action    Action
	Requester string
	Source    Source
	State     State
	CreatedAt time.Time
	StartedAt time.Time
	EndedAt   time.Time
	ExitCode  int
	Error     string
	// Slack coordinates of the deployment's status message, when it has one.
	Channel   string
	MessageTS string
	// Revision is the flake revision the deployment deployed, once known.
	Revision string
	// Lock, when set before the run (an approved install), is what the
	// flakes resolved to when the request was approved; the run uses it
	// instead of resolving again.
	Lock *Lock
	// Fingerprint, when set (an approved install), is the deployer's plan
	// fingerprint the approval was given for. The deployer refuses to run
	// the step that wipes a disk when the plan it would run has another.
	// It lives with the run, not in the database: an approved request that
	// did not start before a restart is ended, never started later.
	Fingerprint string
	// Image is the image a flash request names (a path on the runner),
	// until Resolve puts it into Lock with its size and SHA-256. Like
	// Fingerprint it lives with the request only; Lock is stored.
	Image string
	// Recover says whether the run may power-cycle a host it cannot
	// reach after activation (a schedule's recover key). Like Fingerprint
	// it lives with the run only.
	Recover Recover
	// Guard arms a rollback guard on each host before a switch or test
	// (deployer/guard.go): the host re-activates its previous system by
	// itself unless the bot reconnects, runs the health checks and
	// disarms it. Like Fingerprint it lives with the run.
	Guard bool
	// Resumed marks a deployment this process adopted at start, whose
	// long step a dead process left running (runs.Recover): its status
	// message (MessageTS) carries on rather than a new one being posted.
	// Like Fingerprint it lives with the run.
	Resumed bool
}

// Lock is what the fleet's flakes resolved to on the runner
// (nix flake metadata --json), and the disk devices the installer's disko
// config formats.
type Lock struct {
	// Revision is the flake's commit; URL its locked URL, which runs.
	Revision string `json:"revision"`
	URL      string `json:"url"`
	// InstallerRevision and InstallerURL are the installer flake's.
	InstallerRevision string `json:"installer_revision,omitempty"`
	InstallerURL      string `json:"installer_url,omitempty"`
	// Devices maps disko disk names to devices, per host.
	Devices map[string]map[string]string `json:"devices,omitempty"`
	// Image, ImageSize and ImageSHA256 (hex) are a flash's image on the
	// runner as it was when the flash was requested: the approval is
	// bound to them, and the run refuses an image that differs.
	Image       string `json:"image,omitempty"`
	ImageSize   int64  `json:"image_size,omitempty"`
	ImageSHA256 string `json:"image_sha256,omitempty"`
}

// Stream names the output stream a log line came from.
type Stream string

// Streams of a step's output. Event lines are produced by nixdeploy itself
// (phase changes, step boundaries).
const (
	StreamStdout Stream = "stdout"
	StreamStderr Stream = "stderr"
	StreamEvent  Stream = "event"
)

// LogLine is one redacted line of a deployment's output.
type LogLine struct {
	Seq    int64
	Time   time.Time
	Host   string
	Step   string
	Stream Stream
	Text   string
}

// StepResult records how one step of a plan ended.
type StepResult struct {
	Host      string
	Name      string
	StartedAt time.Time
	EndedAt   time.Time
	ExitCode  int
	Error     string
	// Before and After are /run/current-system before and after the
	// deployment, filled by the verify step.
	Before string
	After  string
}

// ApprovalState is the lifecycle of an approval request.
type ApprovalState string

// Approval states.
const (
	ApprovalPending  ApprovalState = "pending"
	ApprovalApproved ApprovalState = "approved"
	ApprovalRejected ApprovalState = "rejected"
	ApprovalExpired  ApprovalState = "expired"
)

// Approval is the gate in front of a destructive deployment. It is bound to
// the plan through Fingerprint: if anything that decides what gets wiped
// changes, the approval no longer matches.
type Approval struct {
	ID           int64
	DeploymentID int64
	Fingerprint  string
	Requester    string
	Channel      string
	MessageTS    string
	State        ApprovalState
	DecidedBy    string
	CreatedAt    time.Time
	ExpiresAt    time.Time
	DecidedAt    time.Time
}

// AuditEvent is one authorization decision or security-relevant event.
type AuditEvent struct {
	ID           int64
	Time         time.Time
	Actor        string
	Kind         string
	DeploymentID int64
	Detail       string
}
