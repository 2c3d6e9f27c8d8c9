package simfleet

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/nixdeploy/nixdeploy/deployer"
)

// hostKeyFile is where nixos-anywhere's --extra-files must hold the key.
const hostKeyFile = "etc/ssh/ssh_host_ed25519_key"

// revision is what the simulated runner's flakes are locked at.
const revision = "5f3c9a1e7b2d4c6e8a0b1d3f5e7c9a2b4d6f8e01"

// runnerExec runs a command on the runner.
func (f *Fleet) runnerExec(ctx context.Context, p *proc) int {
	argv := p.argv
	switch argv[0] {
	case "mktemp":
		return f.mktemp(p)
	case "sh":
		return f.upload(p)
	case "rm":
		return f.rm(p)
	case "env":
		return f.env(ctx, p)
	case "nixos-anywhere":
		return f.anywhere(ctx, p)
	case "nixos-rebuild":
		return f.rebuild(ctx, p, 22, "")
	case "nix":
		return f.nix(p)
	case "uname":
		if len(p.argv) == 2 && p.argv[1] == "-m" {
			fmt.Fprintln(p.stdout, "x86_64")
			return 0
		}
		fmt.Fprintln(p.stderr, "uname: only uname -m is simulated")
		return 1
	}
	return notFound(p, argv[0])
}

func (f *Fleet) mktemp(p *proc) int {
	if len(p.argv) != 2 || p.argv[1] != "-d" {
		fmt.Fprintln(p.stderr, "mktemp: only mktemp -d is simulated")
		return 1
	}
	const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 10)
	rand.Read(b)
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	dir := "/tmp/tmp." + string(b)
	f.mu.Lock()
	f.dirs[dir] = true
	f.mu.Unlock()
	fmt.Fprintln(p.stdout, dir)
	return 0
}

// upload is the deployer's upload script (deployer.UploadScript): $1 is
// a temp dir, $2 the file under it, $3 its mode, then the directories it
// creates 0755; the content comes on stdin.
func (f *Fleet) upload(p *proc) int {
	a := p.argv
	if len(a) < 7 || a[1] != "-c" || a[2] != deployer.UploadScript || a[3] != "sh" {
		fmt.Fprintln(p.stderr, "sh: only nixdeploy's upload script is simulated")
		return 2
	}
	dir, name, modeArg := a[4], a[5], a[6]
	mode, err := strconv.ParseUint(modeArg, 8, 32)
	if err != nil {
		fmt.Fprintf(p.stderr, "chmod: invalid mode: '%s'\n", modeArg)
		return 1
	}
	f.mu.Lock()
	known := f.dirs[dir]
	f.mu.Unlock()
	if !known || path.Clean(name) != name || strings.HasPrefix(name, "/") || strings.HasPrefix(name, "..") {
		fmt.Fprintf(p.stderr, "sh: 1: cannot create %s/%s: Directory nonexistent\n", dir, name)
		return 2
	}
	data, err := io.ReadAll(io.LimitReader(p.stdin, 1<<20))
	if err != nil {
		fmt.Fprintf(p.stderr, "cat: -: %v\n", err)
		return 1
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range a[7:] {
		f.files[dir+"/"+d+"/"] = file{mode: 0o755}
	}
	// The script's mkdir -p of the file's parent runs under umask 077.
	for d := path.Dir(name); d != "." && d != "/"; d = path.Dir(d) {
		if _, ok := f.files[dir+"/"+d+"/"]; !ok {
			f.files[dir+"/"+d+"/"] = file{mode: 0o700}
		}
	}
	f.files[dir+"/"+name] = file{data: data, mode: mode}
	return 0
}

func (f *Fleet) rm(p *proc) int {
	a := p.argv
	if len(a) < 4 || a[1] != "-rf" || a[2] != "--" {
		fmt.Fprintln(p.stderr, "rm: only rm -rf -- <paths in a temp dir> is simulated")
		return 1
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, target := range a[3:] {
		if !strings.HasPrefix(target, "/tmp/tmp.") {
			fmt.Fprintf(p.stderr, "rm: refusing to remove %s outside a temp dir\n", target)
			return 1
		}
		delete(f.dirs, target)
		for name := range f.files {
			if name == target || strings.HasPrefix(name, target+"/") {
				delete(f.files, name)
			}
		}
	}
	return 0
}

// env runs nixos-rebuild with NIX_SSHOPTS, split into words as
// nixos-rebuild-ng does (shlex). Its ssh needs the pinned known_hosts the
// deployer wrote, StrictHostKeyChecking=yes and the port, as real OpenSSH
// on a runner with an empty ~/.ssh would.
func (f *Fleet) env(ctx context.Context, p *proc) int {
	a := p.argv[1:]
	port := 22
	knownHosts := ""
	for len(a) > 0 && strings.Contains(a[0], "=") {
		k, v, _ := strings.Cut(a[0], "=")
		if k == "NIX_SSHOPTS" {
			fs := strings.Fields(v)
			for i := 0; i < len(fs); i++ {
				switch {
				case fs[i] == "-p" && i+1 < len(fs):
					n, err := strconv.Atoi(fs[i+1])
					if err != nil {
						fmt.Fprintf(p.stderr, "Bad port '%s'\n", fs[i+1])
						return 255
					}
					port = n
					i++
				case fs[i] == "-o" && i+1 < len(fs):
					if kh, ok := strings.CutPrefix(fs[i+1], "UserKnownHostsFile="); ok {
						knownHosts = kh
					}
					i++
				default:
					fmt.Fprintf(p.stderr, "ssh: unsupported option %q in NIX_SSHOPTS\n", fs[i])
					return 255
				}
			}
		}
		a = a[1:]
	}
	if len(a) == 0 || a[0] != "nixos-rebuild" {
		if len(a) == 0 {
			return 0
		}
		fmt.Fprintf(p.stderr, "env: '%s': No such file or directory\n", a[0])
		return 127
	}
	p.argv = a
	return f.rebuild(ctx, p, port, knownHosts)
}

// pinned reports whether the known_hosts file the runner has at path pins
// t's key for addr:port.
func (f *Fleet) pinned(path string, t *target, addr string, port int) bool {
	f.mu.Lock()
	kh, ok := f.files[path]
	f.mu.Unlock()
	if !ok {
		return false
	}
	want := strings.TrimSpace(deployer.KnownHostsLine(addr, port, t.host.HostKey.PublicKey()))
	for _, l := range strings.Split(string(kh.data), "\n") {
		if strings.TrimSpace(l) == want {
			return true
		}
	}
	return false
}

// nix answers the deployer's two questions, strictly: flake metadata
// --json (the fields of nix3-flake-metadata(1)) and the disko disks eval.
func (f *Fleet) nix(p *proc) int {
	a := p.argv[1:]
	for len(a) >= 2 && a[0] == "--extra-experimental-features" {
		a = a[2:]
	}
	switch {
	case len(a) == 4 && a[0] == "flake" && a[1] == "metadata" && a[2] == "--json":
		fl := a[3]
		fmt.Fprintf(p.stdout, `{"description":"fleet","lastModified":1764547200,"locked":{"rev":%q,"type":"git","url":"file://%s"},"path":"/nix/store/%s-source","revision":%q,"url":"git+file://%s?rev=%s"}`+"\n",
			revision, fl, storeHash(fl), revision, fl, revision)
		return 0
	case len(a) == 5 && a[0] == "eval" && a[1] == "--json" && a[3] == "--apply" && a[4] == "builtins.mapAttrs (n: d: d.device)":
		ref, attrPath, _ := strings.Cut(a[2], "#nixosConfigurations.")
		name, ok := strings.CutSuffix(attrPath, ".config.disko.devices.disk")
		if !ok {
			fmt.Fprintf(p.stderr, "error: flake '%s' does not provide attribute '%s'\n", ref, attrPath)
			return 1
		}
		for _, t := range f.targets {
			if t.host.Name == name {
				fmt.Fprintf(p.stdout, "{\"main\":%q}\n", t.host.Disk)
				return 0
			}
		}
		fmt.Fprintf(p.stderr, "error: flake '%s' does not provide attribute 'nixosConfigurations.%s'\n", ref, name)
		return 1
	case len(a) == 5 && a[0] == "eval" && a[1] == "--json" && strings.HasSuffix(a[2], "#nixosConfigurations") && a[3] == "--apply":
		return f.toplevels(p, strings.TrimSuffix(a[2], "#nixosConfigurations"), a[4])
	}
	if len(a) > 0 && strings.HasPrefix(a[0], "-") {
		fmt.Fprintf(p.stderr, "error: unrecognised flag '%s'\n", a[0])
	} else {
		fmt.Fprintf(p.stderr, "error: '%s' is not a recognised command\n", strings.Join(a, " "))
	}
	return 1
}

// applyNameRE finds the configuration names in deployer.ToplevelsApply.
var applyNameRE = regexp.MustCompile(`"([^"]*)" = null;`)

// toplevels answers the drift board's eval (deployer.ToplevelsArgv): each
// named configuration's system as JSON (the path a switch at that locked
// revision builds), leaving out names the flake lacks;
// a configuration that does not evaluate (FailRebuild) fails the whole
// eval, as nix stops at the first error.
func (f *Fleet) toplevels(p *proc, flake, apply string) int {
	var names []string
	for _, m := range applyNameRE.FindAllStringSubmatch(apply, -1) {
		names = append(names, m[1])
	}
	if apply != deployer.ToplevelsApply(names) {
		fmt.Fprintln(p.stderr, "error: the simulator evaluates only nixdeploy's toplevels expression")
		return 1
	}
	if !strings.Contains(flake, "rev="+revision) {
		fmt.Fprintf(p.stderr, "error: the simulator evaluates only the locked flake, not '%s'\n", flake)
		return 1
	}
	out := map[string]string{}
	for _, n := range names {
		t := f.target(n)
		if t == nil {
			continue
		}
		if t.fail {
			fmt.Fprintf(p.stderr, "error: The option `fileSystems.\"/\".device' has conflicting definition values:\n")
			fmt.Fprintf(p.stderr, "       … while evaluating the attribute 'nixosConfigurations.%s.config.system.build.toplevel'\n", n)
			return 1
		}
		out[n] = t.build(flake + "#" + n)
	}
	b, _ := json.Marshal(out)
	fmt.Fprintln(p.stdout, string(b))
	return 0
}

// line is one line of simulated output, after a pause of the given units.
type line struct {
	pause  float64
	stderr bool
	text   string
}

// play prints lines, pausing before each as it says; it stops when ctx
// ends.
func (f *Fleet) play(ctx context.Context, p *proc, lines []line) error {
	for _, l := range lines {
		if err := f.pause(ctx, l.pause); err != nil {
			return err
		}
		w := p.stdout
		if l.stderr {
			w = p.stderr
		}
		fmt.Fprintln(w, l.text)
	}
	return nil
}

// targetOf finds the host of a root@ADDR argument and port.
func (f *Fleet) targetOf(arg string, port int) (*target, string, bool) {
	addr, ok := strings.CutPrefix(arg, "root@")
	if !ok || addr == "" {
		return nil, "", false
	}
	return f.targetAt(addr, port), addr, true
}

// anywhereArgs is what nixos-anywhere's parseArgs keeps of its arguments
// (src/nixos-anywhere.sh, 1.13): every flag it knows with its arity, the
// first other word as the host, a second one refused with the usage.
type anywhereArgs struct {
	flake, host, extra, kexecFlags string
	port                           int
	phases                         map[string]bool
	diskKeys                       map[string]string
}

func parseAnywhere(a []string) (anywhereArgs, string) {
	r := anywhereArgs{port: 22, phases: map[string]bool{"kexec": true, "disko": true, "install": true, "reboot": true}, diskKeys: map[string]string{}}
	arity := map[string]int{"-i": 1, "--ssh-option": 1, "-s": 2, "--store-paths": 2, "--kexec": 1, "--force-kexec": 1,
		"--ssh-store-setting": 2, "--post-kexec-ssh-port": 1, "--chown": 2, "--from": 1, "--option": 2, "--disko-mode": 1,
		"--generate-hardware-config": 2}
	flags := map[string]bool{"-L": true, "--print-build-logs": true, "--copy-host-keys": true, "--show-trace": true, "--debug": true,
		"--no-disko-deps": true, "--no-substitute-on-destination": true, "--no-use-machine-substituters": true,
		"--build-on-remote": true, "--env-password": true, "--vm-test": true, "-t": true, "--tty": true}
	need := func(i, n int) bool { return i+n < len(a) }
	for i := 0; i < len(a); i++ {
		switch f := a[i]; {
		case f == "-f" || f == "--flake":
			if !need(i, 1) {
				return r, "aborted: missing value for " + f
			}
			r.flake = a[i+1]
			i++
		case f == "--target-host":
			r.host = a[i+1]
			i++
		case f == "-p" || f == "--ssh-port":
			n, err := strconv.Atoi(a[i+1])
			if err != nil {
				return r, "Bad port '" + a[i+1] + "'"
			}
			r.port = n
			i++
		case f == "--extra-files":
			r.extra = a[i+1]
			i++
		case f == "--kexec-extra-flags":
			r.kexecFlags = a[i+1]
			i++
		case f == "--disk-encryption-keys":
			if !need(i, 2) {
				return r, "aborted: missing value for " + f
			}
			r.diskKeys[a[i+1]] = a[i+2]
			i += 2
		case f == "--build-on":
			switch a[i+1] {
			case "auto", "local", "remote":
			default:
				return r, "aborted: Supported values for --build-on are auto, local and remote. Unknown mode : " + a[i+1]
			}
			i++
		case f == "--phases":
			r.phases = map[string]bool{}
			for _, ph := range strings.Split(a[i+1], ",") {
				switch ph {
				case "kexec", "disko", "install", "reboot":
					r.phases[ph] = true
				default:
					return r, "aborted: Unknown phase: " + ph
				}
			}
			i++
		case arity[f] > 0:
			if !need(i, arity[f]) {
				return r, "aborted: missing value for " + f
			}
			i += arity[f]
		case flags[f]:
		default:
			if r.host != "" {
				return r, "Usage: nixos-anywhere [options] [<ssh-host>]"
			}
			r.host = f
		}
	}
	if r.host == "" {
		return r, "aborted: ssh-host must be set"
	}
	return r, ""
}

// anywhere is nixos-anywhere against the simulated fleet. A LUKS layout
// (the x86_64 desktop's, nix/hosts/common/disks/standard-btrfs.nix) whose
// passwordFile was not uploaded with --disk-encryption-keys fails as
// disko's luksFormat does, after the wipe.
func (f *Fleet) anywhere(ctx context.Context, p *proc) int {
	r, msg := parseAnywhere(p.argv[1:])
	if msg != "" {
		fmt.Fprintln(p.stderr, msg)
		return 1
	}
	port := r.port
	ref := r.flake
	flake, attr, ok := strings.Cut(ref, "#")
	if !ok || attr == "" {
		fmt.Fprintln(p.stderr, "Please specify the name of the NixOS configuration to be installed, as a URI fragment in the flake-uri.")
		return 1
	}
	abort := func(format string, args ...any) int {
		fmt.Fprintf(p.stderr, "aborted: "+format+"\n", args...)
		return 1
	}
	t, addr, ok := f.targetOf(r.host, port)
	if !ok {
		return abort("the target %s is not root@host", r.host)
	}
	if r.extra != "" {
		if problem := f.checkExtraFiles(r.extra, t); problem != "" {
			return abort("%s", problem)
		}
	}
	if t == nil || !t.isUp() {
		fmt.Fprintln(p.stdout, "### Uploading install SSH keys ###")
		fmt.Fprintf(p.stderr, "ssh: connect to host %s port %d: Connection refused\n", addr, port)
		return 255
	}
	if !p.agent {
		fmt.Fprintln(p.stdout, "### Uploading install SSH keys ###")
		fmt.Fprintf(p.stderr, "root@%s: Permission denied (publickey).\n", addr)
		return 255
	}
	h := t.host
	if h.System == "x86_64-linux" {
		local, ok := r.diskKeys[luksPasswordFile]
		f.mu.Lock()
		key, have := f.files[local]
		f.mu.Unlock()
		if !ok || !have || len(key.data) == 0 || key.mode != 0o600 {
			f.play(ctx, p, []line{
				{0.3, false, "### Formatting hard drive with disko ###"},
				{0.1, true, "+ sgdisk --zap-all " + h.Disk},
				{0.3, true, "+ cryptsetup -q luksFormat /dev/disk/by-partlabel/disk-main-luks"},
				{0, true, "Nothing to read on input."},
			})
			return 1
		}
	}
	sshDest := "ssh://root@" + net.JoinHostPort(addr, strconv.Itoa(port))
	if attr != h.Name {
		fmt.Fprintf(p.stderr, "error: flake '%s' does not provide attribute 'nixosConfigurations.%s'\n", flake, attr)
		return 1
	}
	system := t.build(ref)
	arch := strings.TrimSuffix(h.System, "-linux")
	seed := h.Name + ref
	out := []line{
		{0.2, false, "### Uploading install SSH keys ###"},
		{0.3, true, fmt.Sprintf("Warning: Permanently added '[%s]:%d' (ED25519) to the list of known hosts.", addr, port)},
		{0, false, fmt.Sprintf("/nix/store/%s-openssh-9.9p2/bin/ssh-copy-id: INFO: 1 key(s) remain to be installed -- if you are prompted now it is to install the new keys", storeHash(seed+"ssh"))},
		{0.2, false, "Number of key(s) added: 1"},
		{0.3, false, "### Gathering machine facts ###"},
		{0.5, false, "### Switching system into kexec ###"},
		{0.2, false, fmt.Sprintf("Downloading kexec tarball nixos-kexec-installer-noninteractive-%s-linux.tar.gz (this may take a while)...", arch)},
		{1, false, "machine will boot into nixos in 6s..."},
		{0.3, false, "### Waiting for the machine to become unreachable due to reboot ###"},
		{1.5, true, fmt.Sprintf("Warning: Permanently added '[%s]:%d' (ED25519) to the list of known hosts.", addr, port)},
		{0.3, false, "### Formatting hard drive with disko ###"},
		{0.2, true, "umount: /mnt: not mounted"},
		{0.1, true, fmt.Sprintf("++ realpath %s", h.Disk)},
		{0, true, "+ disk=" + h.Disk},
		{0.1, true, "+ sgdisk --zap-all " + h.Disk},
		{0.1, false, "GPT data structures destroyed! You may now partition the disk using fdisk or"},
		{0, false, "other utilities."},
	}
	out = append(out, diskoLines(h)...)
	out = append(out,
		line{0.3, false, "### Uploading the system closure ###"},
		line{0.2, true, "copying 1263 paths..."},
		line{1.5, true, fmt.Sprintf("copying path '%s' to '%s'...", system, sshDest)},
		line{0.3, false, "### Installing NixOS ###"},
		line{0.3, false, "installing the boot loader..."},
		line{0.3, false, "setting up /etc..."},
	)
	out = append(out, bootLoaderLines(h)...)
	out = append(out,
		line{0.2, false, "installation finished!"},
		line{0.2, false, "### Rebooting ###"},
		line{0.2, false, "### Done! ###"},
	)
	if err := f.play(ctx, p, out); err != nil {
		return 1
	}
	t.install(system)
	// The new system boots from its disk, which takes a while; until then
	// the host refuses connections.
	t.reboot(f.duration(3))
	return 0
}

// checkExtraFiles says what is wrong with an --extra-files directory, if
// anything: it must hold the host's pinned key, 0600, and its .pub, 0644.
func (f *Fleet) checkExtraFiles(dir string, t *target) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d, ok := f.files[dir+"/"]; !f.dirs[dir] && (!ok || d.mode != 0o755) {
		return fmt.Sprintf("--extra-files %s does not exist or is not mode 0755", dir)
	}
	if t == nil {
		return ""
	}
	key, ok := f.files[dir+"/"+hostKeyFile]
	if !ok || key.mode != 0o600 {
		return fmt.Sprintf("%s/%s is missing or not mode 0600", dir, hostKeyFile)
	}
	pub, ok := f.files[dir+"/"+hostKeyFile+".pub"]
	if !ok || pub.mode != 0o644 {
		return fmt.Sprintf("%s/%s.pub is missing or not mode 0644", dir, hostKeyFile)
	}
	want := t.host.HostKey.PublicKey().Marshal()
	signer, err := ssh.ParsePrivateKey(key.data)
	if err != nil || !bytes.Equal(signer.PublicKey().Marshal(), want) {
		return fmt.Sprintf("the host key in --extra-files is not the pinned key of %s", t.host.Name)
	}
	pk, _, _, _, err := ssh.ParseAuthorizedKey(pub.data)
	if err != nil || !bytes.Equal(pk.Marshal(), want) {
		return fmt.Sprintf("the .pub in --extra-files is not the pinned key of %s", t.host.Name)
	}
	return ""
}

func (f *Fleet) duration(units float64) time.Duration {
	return time.Duration(units * float64(f.opts.Pace))
}

// luksPasswordFile is the passwordFile of nix/'s LUKS layout
// (nix/hosts/common/disks/standard-btrfs.nix).
const luksPasswordFile = "/tmp/secret.key"

// diskoLines is disko formatting the host's disk: LUKS and btrfs on the
// x86_64 desktop, plain ext4 on the boards' eMMC.
func diskoLines(h Host) []line {
	part := func(n int) string {
		if strings.HasPrefix(path.Base(h.Disk), "nvme") || strings.HasPrefix(path.Base(h.Disk), "mmcblk") {
			return fmt.Sprintf("%sp%d", h.Disk, n)
		}
		return fmt.Sprintf("%s%d", h.Disk, n)
	}
	if h.System == "x86_64-linux" {
		return []line{
			{0.2, true, "+ sgdisk --align-end --new=1:0:+1G --change-name=1:disk-main-ESP --typecode=1:EF00 " + h.Disk},
			{0.1, true, "+ sgdisk --align-end --new=2:0:-0 --change-name=2:disk-main-luks --typecode=2:8300 " + h.Disk},
			{0.1, true, "+ mkfs.vfat " + part(1)},
			{0.3, true, "+ cryptsetup -q luksFormat /dev/disk/by-partlabel/disk-main-luks --key-file " + luksPasswordFile},
			{0.5, true, "+ cryptsetup open /dev/disk/by-partlabel/disk-main-luks cryptroot --allow-discards --key-file " + luksPasswordFile},
			{0.2, true, "+ mkfs.btrfs /dev/mapper/cryptroot -f"},
			{0.3, false, "btrfs-progs v6.14"},
			{0, false, "Create subvolume '/mnt/@root'"},
			{0, false, "Create subvolume '/mnt/@nix'"},
			{0, false, "Create subvolume '/mnt/@home'"},
			{0, false, "Create subvolume '/mnt/@swap'"},
			{0.2, true, "+ btrfs filesystem mkswapfile --size 16G /mnt/.swapvol/swapfile"},
			{0.1, true, "+ mount -t btrfs /dev/mapper/cryptroot /mnt -o subvol=@root,compress=zstd,noatime"},
		}
	}
	return []line{
		{0.2, true, "+ sgdisk --align-end --new=1:16M:+512M --change-name=1:disk-main-ESP --typecode=1:EF00 " + h.Disk},
		{0.1, true, "+ sgdisk --align-end --new=2:0:-0 --change-name=2:disk-main-root --typecode=2:8300 " + h.Disk},
		{0.1, true, "+ mkfs.vfat " + part(1)},
		{0.3, true, "+ mkfs.ext4 -L nixos " + part(2)},
		{0.5, false, "Writing superblocks and filesystem accounting information: done"},
		{0.1, true, "+ mount " + part(2) + " /mnt"},
	}
}

// bootLoaderLines is the boot loader being installed: GRUB, which finds
// the Windows install on the other drive, on the desktop; extlinux for
// U-Boot on the boards.
func bootLoaderLines(h Host) []line {
	if h.System == "x86_64-linux" {
		return []line{
			{0.3, false, "updating GRUB 2 menu..."},
			{0.5, false, "Found Windows Boot Manager on /dev/nvme1n1p1@/EFI/Microsoft/Boot/bootmgfw.efi"},
			{0.1, false, "Installing for x86_64-efi platform."},
			{0.2, false, "Installation finished. No error reported."},
		}
	}
	return []line{{0.3, false, "Installing extlinux.conf for U-Boot into /mnt/boot..."}}
}

// rebuild is nixos-rebuild as nixos-rebuild-ng's argparse takes the
// flags the deployer uses (unknown ones refused), the host on port. Its
// ssh needs knownHosts to pin the target, as on a runner with an empty
// ~/.ssh.
func (f *Fleet) rebuild(ctx context.Context, p *proc, port int, knownHosts string) int {
	usage := func(format string, args ...any) int {
		fmt.Fprintln(p.stderr, "usage: nixos-rebuild [--verbose] [--flake FLAKE] ... {switch,boot,test,build,dry-build,dry-activate,...}")
		fmt.Fprintf(p.stderr, "nixos-rebuild: error: "+format+"\n", args...)
		return 2
	}
	var action, ref, targetArg, buildHost string
	rollback := false
	a := p.argv[1:]
	for i := 0; i < len(a); i++ {
		switch a[i] {
		case "switch", "boot", "test", "dry-activate", "dry-build", "build":
			if action != "" {
				return usage("unrecognized arguments: %s", a[i])
			}
			action = a[i]
		case "--rollback":
			rollback = true
		case "--fast", "--no-reexec":
		case "--flake", "--target-host", "--build-host":
			if i+1 >= len(a) {
				return usage("argument %s: expected one argument", a[i])
			}
			switch a[i] {
			case "--flake":
				ref = a[i+1]
			case "--target-host":
				targetArg = a[i+1]
			default:
				buildHost = a[i+1]
			}
			i++
		default:
			return usage("unrecognized arguments: %s", a[i])
		}
	}
	if action == "" {
		return usage("the following arguments are required: action")
	}
	flake, attr, ok := strings.Cut(ref, "#")
	if !ok || attr == "" {
		fmt.Fprintf(p.stderr, "error: flake %q has no #attribute\n", ref)
		return 1
	}
	t, addr, ok := f.targetOf(targetArg, port)
	if !ok {
		fmt.Fprintf(p.stderr, "error: --target-host %q is not root@host\n", targetArg)
		return 1
	}
	if buildHost != "" && buildHost != targetArg {
		fmt.Fprintf(p.stderr, "error: the simulator builds only on the target, not on %s\n", buildHost)
		return 1
	}
	if t != nil && t.isUp() && !f.pinned(knownHosts, t, addr, port) {
		fmt.Fprintln(p.stderr, "Host key verification failed.")
		fmt.Fprintln(p.stderr, "error: failed to run command: ssh exited with status 255")
		return 1
	}
	if t != nil && t.isUp() && !p.agent {
		fmt.Fprintf(p.stderr, "root@%s: Permission denied (publickey).\n", addr)
		fmt.Fprintln(p.stderr, "error: failed to run command: ssh exited with status 255")
		return 1
	}
	if t == nil || !t.isUp() {
		fmt.Fprintf(p.stderr, "ssh: connect to host %s port %d: Connection refused\n", addr, port)
		fmt.Fprintln(p.stderr, "error: failed to run command: ssh exited with status 255")
		return 1
	}
	h := t.host
	if attr != h.Name {
		fmt.Fprintf(p.stderr, "error: flake '%s' does not provide attribute 'packages.%s.nixosConfigurations.%s'\n", flake, h.System, attr)
		return 1
	}
	dest := "ssh://root@" + addr
	if err := f.play(ctx, p, []line{{0, true, "building the system configuration..."}}); err != nil {
		return 1
	}
	if t.fail {
		return f.evalError(ctx, p, h, flake)
	}
	if rollback {
		prev, ok := t.rollback()
		if !ok {
			fmt.Fprintln(p.stderr, "error: no previous generation to roll back to")
			return 1
		}
		f.play(ctx, p, []line{{0.3, true, "switching to the previous generation"}, {0.3, true, "activating the configuration..."}, {0.2, true, "setting up /etc..."}})
		fmt.Fprintf(p.stderr, "Done. The new configuration is %s\n", prev)
		return 0
	}
	system := t.buildFor(ref, action)
	seed := system
	on := ""
	if buildHost != "" {
		on = fmt.Sprintf(" on '%s'", dest)
	}
	out := []line{{0.3, true, "these 3 derivations will be built:"}}
	for _, n := range []string{"etc-os-release", "etc", "nixos-system-" + h.Name + "-" + nixosRelease} {
		out = append(out, line{0, true, "  " + drv(seed, n)})
	}
	for _, n := range []string{"etc-os-release", "etc", "nixos-system-" + h.Name + "-" + nixosRelease} {
		out = append(out, line{1, true, fmt.Sprintf("building '%s'%s...", drv(seed, n), on)})
	}
	if buildHost == "" {
		out = append(out, line{0.3, true, "copying 4 paths..."}, line{0.4, true, fmt.Sprintf("copying path '%s' to '%s'...", system, dest)})
	}
	if err := f.play(ctx, p, out); err != nil {
		return 1
	}
	switch action {
	case "build", "dry-build":
		return 0
	case "dry-activate":
		f.play(ctx, p, []line{{0.3, true, "would restart the following units: nix-daemon.service"}, {0, true, "would start the following units: sysinit-reactivation.target"}})
		return 0
	case "boot":
		t.activate(system, false)
		f.play(ctx, p, []line{{0.4, true, "updating the boot loader..."}})
		// A guarded switch ends with boot (make-default): its host hangs
		// there, after the boot loader update, where an unguarded one
		// hangs after switch.
		t.hangIfAsked()
		return 0
	}
	if err := f.play(ctx, p, []line{
		{0.3, true, "activating the configuration..."},
		{0.2, true, "setting up /etc..."},
		{0.2, true, "reloading user units for root..."},
		{0.1, true, "restarting sysinit-reactivation.target"},
		{0.2, true, "the following new units were started: sysinit-reactivation.target, systemd-tmpfiles-resetup.service"},
	}); err != nil {
		return 1
	}
	t.activate(system, action == "switch" || action == "test")
	fmt.Fprintf(p.stderr, "Done. The new configuration is %s\n", system)
	if action == "switch" {
		t.hangIfAsked()
	}
	return 0
}

// evalError is the injected failure: the host's configuration does not
// evaluate, as when a hardware configuration and a module disagree.
func (f *Fleet) evalError(ctx context.Context, p *proc, h Host, flake string) int {
	src := "/nix/store/" + storeHash(flake) + "-source"
	f.play(ctx, p, []line{
		{0.5, true, "error:"},
		{0, true, "       … while calling the 'head' builtin"},
		{0, true, "         at /nix/store/" + storeHash("nixpkgs") + "-source/lib/attrsets.nix:1574:11:"},
		{0, true, "       … while evaluating the attribute 'value'"},
		{0, true, "         at /nix/store/" + storeHash("nixpkgs") + "-source/lib/modules.nix:1083:7:"},
		{0, true, "       (stack trace truncated; use '--show-trace' to show the full, detailed trace)"},
		{0, true, ""},
		{0, true, "       error: The option `fileSystems.\"/\".device' has conflicting definition values:"},
		{0, true, "       - In `" + src + "/nix/hosts/nixos/" + h.Name + "/configuration.nix': \"/dev/disk/by-uuid/8c1f2e9a-4d2b-4f4e-9a51-0b6c1d7e3f21\""},
		{0, true, "       - In `" + src + "/nix/hosts/common/disks/rk1-emmc.nix': \"/dev/disk/by-partlabel/disk-main-root\""},
		{0, true, "       Use `lib.mkForce value` or `lib.mkDefault value` to change the priority on any of these definitions."},
	})
	return 1
}
