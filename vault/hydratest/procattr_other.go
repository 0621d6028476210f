//go:build !linux

package hydratest

import (
	"os"
	"os/exec"
)

var terminateSignal = os.Interrupt

func setProcAttr(cmd *exec.Cmd) {}
