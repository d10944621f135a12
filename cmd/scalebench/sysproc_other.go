//go:build !unix

package main

import (
	"os"
	"os/exec"
	"syscall"
)

// setProcessGroup does nothing where process groups do not exist.
func setProcessGroup(*exec.Cmd) {}

// signalGroup kills p: other signals cannot be sent here.
func signalGroup(p *os.Process, _ syscall.Signal) error { return p.Kill() }
