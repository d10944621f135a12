//go:build !unix

package procgroup

import (
	"os"
	"os/exec"
	"syscall"
)

// Set does nothing where process groups do not exist.
func Set(*exec.Cmd) {}

// Signal kills p; other signals cannot be sent here.
func Signal(p *os.Process, _ syscall.Signal) error { return p.Kill() }
