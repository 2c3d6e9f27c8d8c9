package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nixdeploy/nixdeploy"
	"github.com/nixdeploy/nixdeploy/bmc"
)

const bmcUsage = `bmc fingerprint [--timeout D] ADDRESS

Connects once to the Turing Pi BMC at ADDRESS (host or host:port, port 443
by default) and prints the SHA-256 fingerprint of the certificate it
presents, as a cert_sha256 line for its [[bmcs]] table. Nothing is sent
but the TLS handshake. Compare the value out of band before pinning it.`

// cmdBMC is "nixdeploy bmc …"; its one subcommand prints a BMC's
// certificate fingerprint to pin.
func cmdBMC(ctx context.Context, s stdio, args []string) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprintf(s.out, "usage: nixdeploy %s\n", bmcUsage)
		return errHelp
	}
	if len(args) == 0 || args[0] != "fingerprint" {
		return usageErrorf("bmc: usage: nixdeploy bmc fingerprint [--timeout D] ADDRESS")
	}
	fs := newFlags(s, "bmc fingerprint", bmcUsage)
	timeout := fs.Duration("timeout", 15*time.Second, "how long to wait for the BMC")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErrorf("bmc fingerprint takes one ADDRESS (host or host:port), not %d arguments", fs.NArg())
	}
	b := nixdeploy.BMC{Address: fs.Arg(0)}
	addr := b.HostPort()
	sum, err := bmc.Fingerprint(ctx, addr, *timeout)
	if err != nil {
		return fmt.Errorf("bmc fingerprint: %w", err)
	}
	fp := nixdeploy.FormatFingerprint(sum)
	if fp == nixdeploy.FactoryBMCCertSHA256 {
		fmt.Fprintf(s.err, "%s presents the factory certificate, whose private key is published in the BMC firmware repository.\n", addr)
		fmt.Fprintln(s.err, "Pinning it proves nothing. On the BMC, remove /etc/ssl/certs/bmcd_cert.pem and bmcd_key.pem,")
		fmt.Fprintln(s.err, "run /etc/bmcd/generate_self_signedx509.sh, restart bmcd (/etc/init.d/S94bmcd restart), then run this again.")
		return &exitError{code: 1, msg: "refusing to print the factory certificate's fingerprint"}
	}
	fmt.Fprintf(s.out, "cert_sha256 = %q\n", fp)
	fmt.Fprintf(s.err, "This is the certificate %s presented just now, to whoever answered at that address.\n", addr)
	fmt.Fprintln(s.err, "Compare it out of band before pinning it, on the BMC's own console or over SSH to it:")
	fmt.Fprintln(s.err, "  openssl x509 -noout -fingerprint -sha256 -in /etc/ssl/certs/bmcd_cert.pem")
	return nil
}
