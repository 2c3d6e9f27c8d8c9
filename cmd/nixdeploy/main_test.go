package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	// A test that needs a real nixdeploy process, to send it a real
	// signal, runs this test binary as nixdeploy (see runReal).
	if os.Getenv(realMainEnv) == "1" {
		main()
	}
	testscript.Main(m, map[string]func(){
		"nixdeploy": func() {
			os.Exit(exitCode(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr), os.Stderr))
		},
	})
}

// TestScripts runs the txtar stories in testdata/script. Each one is a
// readable session of nixdeploy commands and their expected output.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			wd, err := os.Getwd()
			if err != nil {
				return err
			}
			// The repository root, for scripts that use the example fleet.
			env.Setenv("REPO", wd+"/../..")
			// Under -race every exec'd nixdeploy would otherwise sleep 1 s
			// at exit waiting for race reports to flush.
			env.Setenv("GORACE", "atexit_sleep_ms=0")
			// sops is installed with go install (see .ci/run), which
			// puts it in $HOME/go/bin, often not on PATH.
			if _, err := exec.LookPath("sops"); err != nil {
				if p := goBinSops(); p != "" {
					env.Setenv("PATH", filepath.Dir(p)+string(os.PathListSeparator)+env.Getenv("PATH"))
				}
			}
			return nil
		},
		// [tool:NAME] holds when NAME is installed. A story that needs a
		// tool skips without it, except under CI=true, where .ci/run
		// installs every tool and a missing one fails the story.
		Condition: func(cond string) (bool, error) {
			name, ok := strings.CutPrefix(cond, "tool:")
			if !ok {
				return false, fmt.Errorf("unknown condition %q", cond)
			}
			found := false
			if _, err := exec.LookPath(name); err == nil {
				found = true
			} else if name == "sops" && goBinSops() != "" {
				found = true
			}
			if !found && os.Getenv("CI") == "true" {
				return false, fmt.Errorf("%s is not installed (CI must install it before go test)", name)
			}
			return found, nil
		},
	})
}

// goBinSops is sops where go install puts it, or "".
func goBinSops() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	p := filepath.Join(home, "go", "bin", "sops")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}
