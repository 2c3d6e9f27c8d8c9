package main

import (
	"context"
	"os"
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
			return nil
		},
	})
}
