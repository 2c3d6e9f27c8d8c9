package deployer

import (
	"os"
	"strings"

	"github.com/nixdeploy/nixdeploy"
)

// RedactText cleans text that did not come through a deployment, such as
// a node's serial console read through its BMC, the way a deployment's
// log lines are cleaned: private-key blocks, age secret keys, the values
// of the config's secrets.redact_env variables, and extra.
func RedactText(cfg *nixdeploy.Config, text string, extra ...string) string {
	secrets := append([]string(nil), extra...)
	for _, name := range cfg.Secrets.RedactEnv {
		if v := os.Getenv(name); v != "" {
			secrets = append(secrets, v)
		}
	}
	r := newRedactor(secrets)
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		lines[i] = r.line("text", l)
	}
	return strings.Join(lines, "\n")
}
