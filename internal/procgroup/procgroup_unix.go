//go:build unix && !linux

package procgroup

import (
	"os"
	"os/exec"
	"syscall"
)

// Set puts the child in a process group of its own.
func Set(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// Signal sends sig to the process group p leads.
func Signal(p *os.Process, sig syscall.Signal) error {
	return syscall.Kill(-p.Pid, sig)
}
