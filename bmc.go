package nixdeploy

import (
	"encoding/hex"
	"fmt"
	"net"
	"path"
	"strconv"
	"strings"
)

// BMC is a Turing Pi 2 board's baseboard management controller, the
// [[bmcs]] table of the fleet config. Its daemon (bmcd) powers the board's
// four node slots, buffers their serial consoles and flashes their eMMC.
type BMC struct {
	Name string `toml:"name"`
	// Address is host[:port] of bmcd's HTTPS API; the port defaults to
	// 443, bmcd's default (bmcd/default_config.yaml, port: 443).
	Address string `toml:"address"`
	// User logs in to bmcd; the password comes from the environment only,
	// from PasswordEnv.
	User string `toml:"user"`
	// CertSHA256 pins the SHA-256 fingerprint of the BMC's own
	// self-signed TLS certificate, as "nixdeploy bmc fingerprint" prints
	// it. The bot refuses any other certificate before it sends a byte.
	CertSHA256 string `toml:"cert_sha256"`
}

// DefaultBMCPort is bmcd's HTTPS port.
const DefaultBMCPort = 443

// BMCSlots is how many node slots a Turing Pi 2 board has; bmc_node
// counts them from 1, as the board's silkscreen and tpi --node do.
const BMCSlots = 4

// PowerOp is what "/nixdeploy power HOST OP" asks a BMC to do with a slot.
type PowerOp string

// The power operations.
const (
	PowerStatus PowerOp = "status"
	PowerOn     PowerOp = "on"
	PowerOff    PowerOp = "off"
	PowerReset  PowerOp = "reset"
)

// PowerState is a slot's power as its BMC reports it.
type PowerState string

// The power states; bmcd reports "Unknown" for a slot it cannot read.
const (
	PowerStateOn      PowerState = "on"
	PowerStateOff     PowerState = "off"
	PowerStateUnknown PowerState = "unknown"
)

// PowerOps lists the power operations in help order.
var PowerOps = []PowerOp{PowerStatus, PowerOn, PowerOff, PowerReset}

// Changes reports whether op switches the slot's power. Off and reset take
// a running node down; on starts a node someone may be working on (a
// manual lock "reseating the module"). All three need a deployer and a
// free host, like a deployment.
func (op PowerOp) Changes() bool { return op != PowerStatus }

// BMCPasswordEnvPrefix starts the name of the variable holding a board's
// password.
const BMCPasswordEnvPrefix = "NIXDEPLOY_BMC_PASSWORD_"

// PasswordEnv is the environment variable that holds the board's password:
// NIXDEPLOY_BMC_PASSWORD_ and the name upper-cased, dashes turned into
// underscores (board "turingpi" → NIXDEPLOY_BMC_PASSWORD_TURINGPI).
func (b BMC) PasswordEnv() string {
	return BMCPasswordEnvPrefix + strings.ToUpper(strings.ReplaceAll(b.Name, "-", "_"))
}

// HostPort is the address with the port filled in.
func (b BMC) HostPort() string {
	host, port, ok := splitHostPortDefault(b.Address, DefaultBMCPort)
	if !ok {
		return b.Address
	}
	return joinHostPort(host, port)
}

// BMC returns the board named name.
func (c *Config) BMC(name string) (BMC, bool) {
	for _, b := range c.BMCs {
		if b.Name == name {
			return b, true
		}
	}
	return BMC{}, false
}

// ParseFingerprint reads a SHA-256 certificate fingerprint written as 64
// hex digits, with or without colons between the bytes and in either case:
// the form openssl x509 -fingerprint -sha256 prints, and browsers show.
// An optional "SHA256:" or "sha256 Fingerprint=" prefix is accepted.
func ParseFingerprint(s string) ([32]byte, error) {
	var out [32]byte
	t := strings.TrimSpace(s)
	for _, p := range []string{"sha256 Fingerprint=", "SHA256:", "sha256:"} {
		t = strings.TrimPrefix(t, p)
	}
	if strings.Contains(t, ":") {
		parts := strings.Split(t, ":")
		for _, p := range parts {
			if len(p) != 2 {
				return out, fmt.Errorf("fingerprint %q: write it as 32 colon-separated hex bytes (AB:CD:…) or 64 hex digits", s)
			}
		}
		t = strings.Join(parts, "")
	}
	if len(t) != 64 {
		return out, fmt.Errorf("fingerprint %q has %d hex digits; a SHA-256 fingerprint has 64", s, len(t))
	}
	if _, err := hex.Decode(out[:], []byte(t)); err != nil {
		return out, fmt.Errorf("fingerprint %q is not hexadecimal", s)
	}
	return out, nil
}

// FormatFingerprint writes a SHA-256 fingerprint the way openssl prints
// it: upper-case hex bytes joined by colons.
func FormatFingerprint(sum [32]byte) string {
	var b strings.Builder
	for i, x := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", x)
	}
	return b.String()
}

// FactoryBMCCertSHA256 is the certificate shipped, with its private key,
// in the public BMC firmware repository
// (turing-machines/BMC-Firmware, tp2bmc/board/tp2bmc/factory_overlay/
// upper/etc/ssl/certs/bmcd_cert.pem and bmcd_key.pem). Anyone can present
// it, so pinning it proves nothing; check refuses it.
const FactoryBMCCertSHA256 = "CA:34:3B:93:40:3B:A2:85:AA:E9:AA:1B:B8:90:F1:EF:F5:FF:EA:26:6C:F8:AB:A5:E5:5C:8B:5C:C2:57:BE:1F"

// validateBMCs checks the [[bmcs]] tables and the hosts' bmc and bmc_node.
func (c *Config) validateBMCs(p *problems) {
	boards := map[string]bool{}
	for i, b := range c.BMCs {
		where := fmt.Sprintf("bmcs[%d]", i)
		if b.Name != "" {
			where = fmt.Sprintf("bmc %q", b.Name)
		}
		if !ValidName(b.Name) {
			p.add("%s: name must match [a-z0-9-] (lower-case letters, digits and dashes)", where)
		} else if boards[b.Name] {
			p.add("%s: duplicate bmc name", where)
		}
		boards[b.Name] = true
		if b.Address == "" {
			p.add("%s: address is missing (host or host:port of the BMC's web API)", where)
		} else if host, _, ok := splitHostPortDefault(b.Address, DefaultBMCPort); !ok || !validAddress(host) {
			p.add("%s: address %q must be host or host:port with a port from 1 to 65535", where, b.Address)
		}
		if b.User == "" {
			p.add("%s: user is missing (the BMC login, root on a fresh board)", where)
		} else if strings.ContainsAny(b.User, ": \t\r\n") {
			p.add("%s: user %q must not contain colons or white space", where, b.User)
		}
		if b.CertSHA256 == "" {
			p.add("%s: cert_sha256 is missing; run nixdeploy bmc fingerprint %s and compare it out of band", where, b.Address)
		} else if sum, err := ParseFingerprint(b.CertSHA256); err != nil {
			p.add("%s: cert_sha256: %v", where, err)
		} else if FormatFingerprint(sum) == FactoryBMCCertSHA256 {
			p.add("%s: cert_sha256 is the factory certificate whose private key is public; regenerate the BMC's certificate and pin the new one (see docs/bmc.md)", where)
		}
	}
	slots := map[string]string{}
	for i, h := range c.Hosts {
		where := fmt.Sprintf("hosts[%d]", i)
		if h.Name != "" {
			where = fmt.Sprintf("host %q", h.Name)
		}
		if h.BMC == "" {
			if h.BMCNode != 0 {
				p.add("%s: bmc_node is set but bmc is not; name the board too", where)
			}
			continue
		}
		if !boards[h.BMC] {
			p.add("%s: bmc %q is not a [[bmcs]] board of this config", where, h.BMC)
		}
		if h.BMCNode < 1 || h.BMCNode > BMCSlots {
			p.add("%s: bmc_node %d must be a slot from 1 to %d", where, h.BMCNode, BMCSlots)
			continue
		}
		key := h.BMC + "/" + strconv.Itoa(h.BMCNode)
		if other, dup := slots[key]; dup {
			p.add("%s: bmc %q slot %d is also host %q's; each slot holds one node", where, h.BMC, h.BMCNode, other)
		} else {
			slots[key] = h.Name
		}
	}
}

// splitHostPortDefault splits host[:port], filling in def.
func splitHostPortDefault(s string, def int) (host string, port int, ok bool) {
	h, ps, err := net.SplitHostPort(s)
	if err != nil {
		// No port: the whole of s is the host (an IPv6 address may come
		// bracketed).
		return strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"), def, s != ""
	}
	n, err := strconv.Atoi(ps)
	if err != nil || n < 1 || n > 65535 {
		return h, 0, false
	}
	return h, n, h != ""
}

// StepRecover names the recovery of an unreachable host among a
// deployment's recorded steps; RecoveredNote is what a run's summary says
// of a host it recovered.
const (
	StepRecover   = "recover"
	RecoveredNote = "recovered after a power reset"
)

// Recover is a schedule's recover key: what a run does about a host it
// cannot reach after activation (its wait for SSH or its verification
// fails without an answer from the host).
type Recover string

// The recover values. Every host on a BMC gets its serial console tail in
// the deployment's log either way.
const (
	// RecoverNone (or "none") reports the host as unreachable.
	RecoverNone Recover = ""
	// RecoverPowerReset power-cycles the host once through its BMC, waits
	// for its pinned host key and verifies it again.
	RecoverPowerReset Recover = "power-reset"
)

// validateRecover checks a schedule's recover key: a known value, and a
// power reset only for hosts a BMC can reset.
func (c *Config) validateRecover(p *problems, where string, s Schedule) {
	switch s.Recover {
	case RecoverNone, "none":
		return
	case RecoverPowerReset:
	default:
		p.add("%s: recover %q must be none or power-reset", where, s.Recover)
		return
	}
	hosts, err := c.Select(s.Hosts)
	if err != nil {
		return // reported with the selector
	}
	for _, h := range hosts {
		if h.BMC == "" {
			p.add("%s: recover = \"power-reset\" needs a BMC for every host, and %s has no bmc; give it one or move it to a schedule without recover", where, h.Name)
		}
	}
}

// ActionFlash writes an image to a Turing Pi node's eMMC through its BMC
// (/nixdeploy flash HOST IMAGE). It is destructive and needs an approval
// bound to the image's SHA-256. It is not in Actions: it takes an image,
// so it is neither a bare deploy word nor schedulable.
const ActionFlash Action = "flash"

// ValidImagePath reports whether p can name a flash image on the runner:
// an absolute, clean path of plain characters (letters, digits, and
// . _ + - /), so it reaches the runner's shell as one word and can never
// be read as an option.
func ValidImagePath(p string) bool {
	if len(p) < 2 || len(p) > 512 || p[0] != '/' || path.Clean(p) != p {
		return false
	}
	for _, r := range p {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '.' || r == '_' || r == '+' || r == '-' || r == '/':
		default:
			return false
		}
	}
	return true
}
