package simfleet

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"path"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// uploadScript is the deployer's key upload (deployer/plan.go), verbatim.
const uploadScript = `umask 077 && mkdir -p "$1/etc/ssh" && chmod 0755 "$1" "$1/etc" "$1/etc/ssh" && cat >"$1/$2" && chmod "$3" "$1/$2"`

// hostKeyFile is where nixos-anywhere's --extra-files must hold the key.
const hostKeyFile = "etc/ssh/ssh_host_ed25519_key"

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
		return f.rebuild(ctx, p, 22)
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

// upload is the key upload script: $1 is a temp dir, $2 the file under
// it, $3 its mode; the content comes on stdin.
func (f *Fleet) upload(p *proc) int {
	a := p.argv
	if len(a) != 7 || a[1] != "-c" || a[2] != uploadScript || a[3] != "sh" {
		fmt.Fprintln(p.stderr, "sh: only nixdeploy's key upload script is simulated")
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
	f.files[dir+"/"+name] = file{data: data, mode: mode}
	return 0
}

func (f *Fleet) rm(p *proc) int {
	a := p.argv
	if len(a) != 4 || a[1] != "-rf" || a[2] != "--" || !strings.HasPrefix(a[3], "/tmp/tmp.") {
		fmt.Fprintln(p.stderr, "rm: only rm -rf -- <temp dir> is simulated")
		return 1
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.dirs, a[3])
	for name := range f.files {
		if strings.HasPrefix(name, a[3]+"/") {
			delete(f.files, name)
		}
	}
	return 0
}

// env runs nixos-rebuild with NIX_SSHOPTS=-p PORT, which is how the
// deployer gives it a port other than 22.
func (f *Fleet) env(ctx context.Context, p *proc) int {
	a := p.argv[1:]
	port := 22
	for len(a) > 0 && strings.Contains(a[0], "=") {
		k, v, _ := strings.Cut(a[0], "=")
		if k == "NIX_SSHOPTS" {
			fs := strings.Fields(v)
			if len(fs) != 2 || fs[0] != "-p" {
				fmt.Fprintf(p.stderr, "ssh: unsupported NIX_SSHOPTS %q\n", v)
				return 255
			}
			n, err := strconv.Atoi(fs[1])
			if err != nil {
				fmt.Fprintf(p.stderr, "Bad port '%s'\n", fs[1])
				return 255
			}
			port = n
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
	return f.rebuild(ctx, p, port)
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

// anywhere is nixos-anywhere as the deployer calls it:
// --ssh-port P --extra-files DIR --flake URI#ATTR root@HOST, host last.
func (f *Fleet) anywhere(ctx context.Context, p *proc) int {
	a := p.argv
	abort := func(format string, args ...any) int {
		fmt.Fprintf(p.stderr, "aborted: "+format+"\n", args...)
		return 1
	}
	if len(a) != 8 || a[1] != "--ssh-port" || a[3] != "--extra-files" || a[5] != "--flake" {
		return abort("unexpected arguments %q (the simulator takes --ssh-port P --extra-files DIR --flake URI#ATTR root@HOST)", strings.Join(a[1:], " "))
	}
	port, err := strconv.Atoi(a[2])
	if err != nil {
		return abort("--ssh-port %s is not a number", a[2])
	}
	ref := a[6]
	flake, attr, ok := strings.Cut(ref, "#")
	if !ok || attr == "" {
		return abort("flake %s has no #attribute", ref)
	}
	t, addr, ok := f.targetOf(a[7], port)
	if !ok {
		return abort("the target %s is not root@host", a[7])
	}
	if problem := f.checkExtraFiles(a[4], t); problem != "" {
		return abort("%s", problem)
	}
	if t == nil || !t.isUp() {
		fmt.Fprintln(p.stdout, "### Uploading install SSH keys ###")
		fmt.Fprintf(p.stderr, "ssh: connect to host %s port %d: Connection refused\n", addr, port)
		return 255
	}
	h := t.host
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
	if !f.dirs[dir] {
		return fmt.Sprintf("--extra-files %s does not exist", dir)
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
			{0.2, true, "+ sgdisk --align-end --new=1:0:+512M --change-name=1:disk-main-ESP --typecode=1:EF00 " + h.Disk},
			{0.1, true, "+ sgdisk --align-end --new=2:0:-0 --change-name=2:disk-main-luks --typecode=2:8309 " + h.Disk},
			{0.1, true, "+ mkfs.vfat " + part(1)},
			{0.3, true, "+ cryptsetup -q luksFormat /dev/disk/by-partlabel/disk-main-luks --key-file /tmp/secret.key"},
			{0.5, true, "+ cryptsetup open /dev/disk/by-partlabel/disk-main-luks crypted --key-file /tmp/secret.key"},
			{0.2, true, "+ mkfs.btrfs /dev/mapper/crypted -f"},
			{0.3, false, "btrfs-progs v6.14"},
			{0, false, "Create subvolume '/mnt/@root'"},
			{0, false, "Create subvolume '/mnt/@nix'"},
			{0, false, "Create subvolume '/mnt/@home'"},
			{0.1, true, "+ mount -t btrfs /dev/mapper/crypted /mnt -o subvol=@root,compress=zstd,noatime"},
		}
	}
	return []line{
		{0.2, true, "+ sgdisk --align-end --new=1:16M:+512M --change-name=1:disk-emmc-boot --typecode=1:EF00 " + h.Disk},
		{0.1, true, "+ sgdisk --align-end --new=2:0:-0 --change-name=2:disk-emmc-root --typecode=2:8300 " + h.Disk},
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

// rebuild is nixos-rebuild ACTION [--rollback] --flake URI#ATTR
// --target-host root@HOST [--build-host root@HOST], the host on port.
func (f *Fleet) rebuild(ctx context.Context, p *proc, port int) int {
	a := p.argv[1:]
	bad := func(format string, args ...any) int {
		fmt.Fprintf(p.stderr, "nixos-rebuild: "+format+"\n", args...)
		return 1
	}
	if len(a) == 0 {
		return bad("no action given")
	}
	action := a[0]
	a = a[1:]
	switch action {
	case "switch", "boot", "test", "dry-activate", "dry-build", "build":
	default:
		return bad("unknown action %q", action)
	}
	rollback := len(a) > 0 && a[0] == "--rollback"
	if rollback {
		a = a[1:]
	}
	if len(a) < 4 || a[0] != "--flake" || a[2] != "--target-host" {
		return bad("the simulator takes --flake URI#ATTR --target-host root@HOST [--build-host root@HOST]")
	}
	ref := a[1]
	flake, attr, ok := strings.Cut(ref, "#")
	if !ok || attr == "" {
		return bad("flake %s has no #attribute", ref)
	}
	t, addr, ok := f.targetOf(a[3], port)
	if !ok {
		return bad("--target-host %s is not root@host", a[3])
	}
	buildHost := ""
	if rest := a[4:]; len(rest) > 0 {
		if len(rest) != 2 || rest[0] != "--build-host" || rest[1] != a[3] {
			return bad("unexpected arguments %q", strings.Join(rest, " "))
		}
		buildHost = rest[1]
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
	system := t.build(ref)
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
		{0, true, "       - In `" + src + "/hosts/" + h.Name + "/hardware-configuration.nix': \"/dev/disk/by-uuid/8c1f2e9a-4d2b-4f4e-9a51-0b6c1d7e3f21\""},
		{0, true, "       - In `" + src + "/modules/rk1.nix': \"/dev/disk/by-label/nixos\""},
		{0, true, "       Use `lib.mkForce value` or `lib.mkDefault value` to change the priority on any of these definitions."},
	})
	return 1
}
