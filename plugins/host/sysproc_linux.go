package host

import (
	"os"
	"os/exec"
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

// runAs makes cmd run the open binary bin as user u. The child execs its
// inherited descriptor (/proc/self/fd/3, as fexecve does): the kernel
// checks only that u may execute the file, not that u may enter the
// directories on its path. The Credential is set before the parent-death
// signal in the child, which therefore survives the switch.
func runAs(cmd *exec.Cmd, bin *os.File, u *User) error {
	cmd.Args = []string{cmd.Path} // what ps shows
	cmd.Path = "/proc/self/fd/3"
	cmd.Err = nil
	cmd.ExtraFiles = []*os.File{bin}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}
	return nil
}
