//go:build !unix

package backend

import (
	"os"
	"os/exec"
)

// setProcessGroup does nothing where there are no process groups.
func setProcessGroup(*exec.Cmd) {}

// terminateTree stops p; without process groups its children are not reached.
func terminateTree(p *os.Process) { _ = p.Kill() }

// killTree stops p.
func killTree(p *os.Process) { _ = p.Kill() }

// ownedByUs cannot tell owners apart here; the mode check still applies.
func ownedByUs(os.FileInfo) bool { return true }
