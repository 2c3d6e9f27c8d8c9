package deployer_test

import (
	"strings"
	"testing"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/deployer"
)

func TestRedactText(t *testing.T) {
	t.Setenv("NIXDEPLOY_TEST_TOKEN", "tok-0123456789")
	cfg := &nixdeploy.Config{Secrets: nixdeploy.Secrets{RedactEnv: []string{"NIXDEPLOY_TEST_TOKEN"}}}
	in := "login: root\n" +
		"AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ\n" +
		"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n" +
		"token tok-0123456789 and hunter22\n"
	out := deployer.RedactText(cfg, in, "hunter22")
	for _, leak := range []string{"AGE-SECRET-KEY-1QQ", "b3BlbnNzaC1rZXktdjEAAAAA", "tok-0123456789", "hunter22"} {
		if strings.Contains(out, leak) {
			t.Errorf("%q survived redaction:\n%s", leak, out)
		}
	}
	if !strings.Contains(out, "login: root") {
		t.Errorf("ordinary text was lost:\n%s", out)
	}
}
