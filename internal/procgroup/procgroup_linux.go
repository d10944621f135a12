package procgroup

import (
	"os"
	"os/exec"
	"syscall"
)

// Set puts the child in a process group of its own and has
// the kernel kill it if the harness dies first, even by SIGKILL.
func Set(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// Signal sends sig to the process group p leads.
func Signal(p *os.Process, sig syscall.Signal) error {
	return syscall.Kill(-p.Pid, sig)
}
