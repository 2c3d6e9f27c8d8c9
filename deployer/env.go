package deployer

import (
	"os"
	"strings"
)

// childEnvNames are the variables a local child (nixos-anywhere,
// nixos-rebuild, nix, ssh) gets from the bot's environment: what a login
// session has, plus Nix's and ssh-agent's own. Nothing else: the bot's
// environment holds its Slack tokens and keys (issue 15, attack 3).
// NIX_CONFIG passes because nix needs it; keep access tokens in nix.conf
// (docs/hardening.md).
var childEnvNames = map[string]bool{
	"PATH": true, "HOME": true, "USER": true, "LOGNAME": true, "SHELL": true,
	"LANG": true, "LANGUAGE": true, "LOCALE_ARCHIVE": true,
	"TZ": true, "TZDIR": true, "TMPDIR": true, "TERM": true,
	"SSH_AUTH_SOCK": true, "SSL_CERT_FILE": true, "SSL_CERT_DIR": true,
}

// childEnvPrefixes pass whole families: locale categories, Nix's settings
// (NIX_PATH, NIX_REMOTE, NIX_SSHOPTS, NIX_SSL_CERT_FILE …; NIXDEPLOY_ is not
// NIX_) and the XDG base directories nix keeps its cache under.
var childEnvPrefixes = []string{"LC_", "NIX_", "XDG_"}

// childEnv is the environment of a local child: the allowed variables of
// parent, then explicit, which the deployer set on purpose for this
// command (NIX_SSHOPTS, SSH_AUTH_SOCK) and which win over the parent's.
func childEnv(parent, explicit []string) []string {
	out := make([]string, 0, len(parent)+len(explicit))
	set := map[string]bool{}
	for _, kv := range explicit {
		k, _, _ := strings.Cut(kv, "=")
		set[k] = true
	}
	for _, kv := range parent {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || set[k] || !childEnvAllowed(k) {
			continue
		}
		out = append(out, kv)
	}
	return append(out, explicit...)
}

func childEnvAllowed(name string) bool {
	if childEnvNames[name] {
		return true
	}
	for _, p := range childEnvPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// BotSecretEnv names the bot's own secrets. Their values are redacted from
// every line, whatever prints them: a child of the local runner does not
// get them, but a runner or target could still echo one back.
var BotSecretEnv = []string{
	"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN",
	ClientKeyEnv, "NIXDEPLOY_AGE_IDENTITY",
}

// botSecrets are the values of BotSecretEnv that are set, without the
// lines of them that are not secret: PEM armour and age-keygen's
// "# created" and "# public key" comments.
func botSecrets() []string {
	var out []string
	for _, name := range BotSecretEnv {
		for _, line := range strings.Split(os.Getenv(name), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "-----") || strings.HasPrefix(line, "#") {
				continue
			}
			out = append(out, line)
		}
	}
	return out
}
