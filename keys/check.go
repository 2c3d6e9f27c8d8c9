package keys

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"golang.org/x/crypto/ssh"

	"github.com/nixdeploy/nixdeploy"
)

// CheckName names one check of the key preflight.
type CheckName string

// The checks, in report column order.
const (
	// CheckKey: the private key (plaintext or sealed) parses and is ed25519.
	CheckKey CheckName = "key"
	// CheckPub: the .pub file is the private key's public half.
	CheckPub CheckName = "pub"
	// CheckMode: a plaintext private key is not readable by group or others.
	CheckMode CheckName = "mode"
	// CheckUnique: no other host of the fleet has the same key.
	CheckUnique CheckName = "unique"
	// CheckSopsConfig: the host's age recipient is in .sops.yaml.
	CheckSopsConfig CheckName = "sops-config"
	// CheckRecipient: the secrets file is encrypted to the host.
	CheckRecipient CheckName = "recipient"
	// CheckUserKey: the secrets file holds user-age-keys/<user>-<host>.
	CheckUserKey CheckName = "user-key"
)

// Checks lists every check in report order.
var Checks = []CheckName{CheckKey, CheckPub, CheckMode, CheckUnique, CheckSopsConfig, CheckRecipient, CheckUserKey}

// Status is the outcome of one check.
type Status int

// Outcomes. NotChecked means the check did not apply or could not run
// because an earlier one failed.
const (
	NotChecked Status = iota
	Pass
	Fail
)

// Mark is the one-character form of s used in the report table.
func (s Status) Mark() string {
	switch s {
	case Pass:
		return "✓"
	case Fail:
		return "✗"
	}
	return "-"
}

// Result is one check on one host. Reason says what to do when it failed.
type Result struct {
	Status Status
	Reason string
}

// Row is every check on one host.
type Row struct {
	Host    string
	Results map[CheckName]Result
}

// Report is the outcome of Check, one row per host in fleet order.
type Report struct {
	Rows []Row
}

// OK reports whether no check failed.
func (r *Report) OK() bool { return len(r.Failures()) == 0 }

// Failures returns one line per failed check: "<host>: <reason>".
func (r *Report) Failures() []string {
	var out []string
	for _, row := range r.Rows {
		for _, c := range Checks {
			if res := row.Results[c]; res.Status == Fail {
				out = append(out, row.Host+": "+res.Reason)
			}
		}
	}
	return out
}

// Print writes the table: a header naming the checks, then one row of marks
// per host.
func (r *Report) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "host")
	for _, c := range Checks {
		fmt.Fprintf(tw, "\t%s", c)
	}
	fmt.Fprintln(tw)
	for _, row := range r.Rows {
		fmt.Fprint(tw, row.Host)
		for _, c := range Checks {
			fmt.Fprintf(tw, "\t%s", row.Results[c].Status.Mark())
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// Check is the key preflight the bot runs before every install. It checks
// the selected hosts (selectors as in Config.Select; all hosts when empty)
// and returns a report; the error is only for a bad selector or a cancelled
// context. Uniqueness is judged against the whole fleet, selected or not.
//
// The .sops.yaml and secrets checks run when secrets.sops_config and
// secrets.file are configured. They use the recipient derived from the
// private key, which is what the host will decrypt with, and fall back to the
// .pub when the private key is unreadable.
func Check(ctx context.Context, cfg *nixdeploy.Config, store *Store, hosts []string) (*Report, error) {
	selected := map[string]bool{}
	if len(hosts) == 0 {
		for _, h := range cfg.Hosts {
			selected[h.Name] = true
		}
	} else {
		sel, err := cfg.Select(hosts)
		if err != nil {
			return nil, err
		}
		for _, h := range sel {
			selected[h.Name] = true
		}
	}

	var states []hostState
	for _, h := range cfg.Hosts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		st := hostState{name: h.Name}
		if selected[h.Name] {
			st.row = &Row{Host: h.Name, Results: map[CheckName]Result{}}
			st.pub = checkHostKey(store, h.Name, st.row.Results)
		} else if pk, err := store.HostPublicKey(h.Name); err == nil {
			// Unselected sealed keys are not decrypted: their .pub is
			// enough to find a shared key.
			st.pub = pk
		}
		states = append(states, st)
	}
	checkUnique(states)
	checkSops(cfg, states)

	rep := &Report{}
	for _, st := range states {
		if st.row != nil {
			rep.Rows = append(rep.Rows, *st.row)
		}
	}
	return rep, nil
}

type hostState struct {
	name string
	pub  ssh.PublicKey
	// row is nil for hosts that were not selected.
	row *Row
}

// checkHostKey runs the key, pub and mode checks and returns the host's
// public key for the later checks, or nil.
func checkHostKey(store *Store, host string, res map[CheckName]Result) ssh.PublicKey {
	keyPath, pubPath := store.HostKeyPath(host), store.HostPubPath(host)
	filePub, pubErr := store.HostPublicKey(host)
	sec, err := store.readSecret(keyPath)
	if err != nil {
		if errors.Is(err, ErrNoKey) {
			err = fmt.Errorf("no private key (%s or %s%s); run nixdeploy keys init", keyPath, filepath.Base(keyPath), SealedSuffix)
		}
		res[CheckKey] = Result{Fail, err.Error()}
		return filePub
	}
	defer clear(sec.Data)
	if !sec.Sealed {
		if sec.Mode&0o077 != 0 {
			res[CheckMode] = Result{Fail, (&ModeError{Path: sec.Path, Mode: sec.Mode}).Error()}
		} else {
			res[CheckMode] = Result{Status: Pass}
		}
	}
	priv, err := ParseSSHPrivateKey(sec.Data)
	if err != nil {
		res[CheckKey] = Result{Fail, fmt.Sprintf("%s: %v", sec.Path, err)}
		return filePub
	}
	res[CheckKey] = Result{Status: Pass}
	privPub, err := ssh.NewPublicKey(priv.Public().(ed25519.PublicKey))
	if err != nil {
		res[CheckKey] = Result{Fail, fmt.Sprintf("%s: %v", sec.Path, err)}
		return filePub
	}
	switch {
	case errors.Is(pubErr, fs.ErrNotExist) || errors.Is(pubErr, ErrNoKey):
		res[CheckPub] = Result{Fail, fmt.Sprintf("%s is missing; run nixdeploy keys init to derive it from the private key", pubPath)}
	case pubErr != nil:
		res[CheckPub] = Result{Fail, pubErr.Error()}
	case !bytes.Equal(filePub.Marshal(), privPub.Marshal()):
		res[CheckPub] = Result{Fail, fmt.Sprintf("%s (%s) does not match the private key (%s); delete the .pub and run nixdeploy keys init to derive it again",
			pubPath, ssh.FingerprintSHA256(filePub), ssh.FingerprintSHA256(privPub))}
	default:
		res[CheckPub] = Result{Status: Pass}
	}
	return privPub
}

func checkUnique(states []hostState) {
	for i, st := range states {
		if st.row == nil || st.pub == nil {
			continue
		}
		var dups []string
		for j, o := range states {
			if i != j && o.pub != nil && bytes.Equal(o.pub.Marshal(), st.pub.Marshal()) {
				dups = append(dups, o.name)
			}
		}
		if len(dups) > 0 {
			st.row.Results[CheckUnique] = Result{Fail, fmt.Sprintf("shares its host key %s with %s; every host needs its own key",
				ssh.FingerprintSHA256(st.pub), strings.Join(dups, ", "))}
		} else {
			st.row.Results[CheckUnique] = Result{Status: Pass}
		}
	}
}

func checkSops(cfg *nixdeploy.Config, states []hostState) {
	recipient := map[string]string{}
	for _, st := range states {
		if st.row != nil && st.pub != nil {
			if r, err := AgeRecipient(st.pub); err == nil {
				recipient[st.name] = r
			}
		}
	}

	if path := cfg.Secrets.SopsConfig; path != "" {
		set, err := SopsConfigRecipients(path, cfg.Secrets.File)
		for _, st := range states {
			r, ok := recipient[st.name]
			switch {
			case st.row == nil:
			case err != nil:
				st.row.Results[CheckSopsConfig] = Result{Fail, err.Error()}
			case !ok:
			case !set[r]:
				st.row.Results[CheckSopsConfig] = Result{Fail, fmt.Sprintf("age recipient %s is missing from %s; run nixdeploy keys sops-config", r, path)}
			default:
				st.row.Results[CheckSopsConfig] = Result{Status: Pass}
			}
		}
	}

	path := cfg.Secrets.File
	if path == "" {
		return
	}
	sf, err := ReadSecretsFile(path)
	for _, st := range states {
		if st.row == nil {
			continue
		}
		if err != nil {
			// One reason per host is enough; user-key cannot be judged.
			st.row.Results[CheckRecipient] = Result{Fail, err.Error()}
			continue
		}
		if r, ok := recipient[st.name]; ok {
			if sf.Recipients[r] {
				st.row.Results[CheckRecipient] = Result{Status: Pass}
			} else {
				st.row.Results[CheckRecipient] = Result{Fail, fmt.Sprintf("%s is not encrypted to the host's recipient %s; run sops updatekeys %s", path, r, path)}
			}
		}
		name := UserSecretName(cfg.Secrets.User, st.name)
		enc, ok := sf.UserKeys[name]
		switch {
		case !ok:
			st.row.Results[CheckUserKey] = Result{Fail, fmt.Sprintf("%s has no %s/%s; add it with sops (nixdeploy keys secrets-template prints the value)", path, UserKeysName, name)}
		case !enc:
			st.row.Results[CheckUserKey] = Result{Fail, fmt.Sprintf("%s/%s in %s is not an ENC[…] value; encrypt the file with sops", UserKeysName, name, path)}
		default:
			st.row.Results[CheckUserKey] = Result{Status: Pass}
		}
	}
}
