//go:build unix

package backend

import (
	"os"
	"os/exec"
	"syscall"
)

// setProcessGroup starts the CLI in a process group of its own, so that
// stopping it stops every process it started.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// terminateTree asks the process group of p to stop.
func terminateTree(p *os.Process) { _ = syscall.Kill(-p.Pid, syscall.SIGTERM) }

// killTree stops the process group of p. A group that is gone already is
// not an error.
func killTree(p *os.Process) { _ = syscall.Kill(-p.Pid, syscall.SIGKILL) }

// ownedByUs reports whether fi belongs to this process's user.
func ownedByUs(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid()
}
