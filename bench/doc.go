// Package bench holds nixdeploy's benchmarks: the bot side by side with
// OpenSSH, and its Slack traffic against Slack's rate limits. The code is
// in the _test.go files and in cmd/streambench; bench/run runs them all and
// prints one markdown table (see README.md).
package bench
