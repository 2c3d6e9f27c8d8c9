package simfleet

// A host can hang after activation, as an RK1 node whose new kernel
// stalls does: it drops every connection and accepts none until its
// board's BMC power-cycles it (PowerReset). The demo drives this through
// a fake BMC; nothing here knows of BMCs.

// hangIfAsked hangs t after a switch's activation (or, for a guarded
// switch, after the boot loader update of its make-default step) when
// Options.HangAfterSwitch names it, once.
func (t *target) hangIfAsked() {
	t.mu.Lock()
	if !t.hangNext {
		t.mu.Unlock()
		return
	}
	t.hangNext, t.hung = false, true
	t.mu.Unlock()
	if t.f.opts.OnHang != nil {
		t.f.opts.OnHang(t.host.Name)
	}
	t.srv.dropConns()
}

// PowerReset power-cycles host: a hung host boots again (it refuses
// connections for three paces, like any reboot, then answers with its
// current system). It reports whether host is one of the fleet's.
func (f *Fleet) PowerReset(host string) bool {
	t := f.target(host)
	if t == nil {
		return false
	}
	t.mu.Lock()
	t.hung = false
	t.mu.Unlock()
	t.reboot(f.duration(3))
	return true
}

// Hung reports whether host hangs now.
func (f *Fleet) Hung(host string) bool {
	t := f.target(host)
	if t == nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.hung
}
