package host

import (
	"os"
	"syscall"
)

// sysProcAttr makes the kernel kill the plugin when the daemon dies, even
// by SIGKILL. The signal fires when the *thread* that forked the plugin
// exits, so plugins are started from a goroutine locked to its thread for
// the plugin's whole life (see launch).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// fileOwner returns the uid that owns fi's file.
func fileOwner(fi os.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
