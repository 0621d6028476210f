package hydratest

import (
	"os/exec"
	"syscall"
)

var terminateSignal = syscall.SIGTERM

// setProcAttr makes the kernel kill Hydra when the test process dies
// without running its cleanups (a panic, a timeout, kill -9), so that no
// Hydra outlives its test binary.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
