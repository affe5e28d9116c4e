package host

import "syscall"

// sysProcAttr makes the kernel kill the plugin when the daemon dies, even
// by SIGKILL. The signal fires when the *thread* that forked the plugin
// exits, so plugins are started from a goroutine locked to its thread for
// the plugin's whole life (see launch).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
