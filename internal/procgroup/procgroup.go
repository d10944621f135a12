// Package procgroup runs child processes of the benchmark and load-test
// harnesses in process groups of their own, so that a signal reaches
// the child and whatever it started, and (on Linux) the kernel kills the
// child if the harness dies first, even by SIGKILL.
package procgroup
