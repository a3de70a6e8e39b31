package launch

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestStartErrorNamesAMissingWorkingDirectory: Go blames the executable
// for a chdir that fails in the child (issue 13).
func TestStartErrorNamesAMissingWorkingDirectory(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "gone")
	cmd := exec.Command("/bin/true")
	cmd.Dir = missing
	err := StartError(missing, cmd.Run())
	if err == nil || !strings.Contains(err.Error(), "working directory "+missing+" (crawl_dir) does not exist") {
		t.Fatalf("err = %v", err)
	}
	cmd = exec.Command("/nonexistent/python3")
	cmd.Dir = t.TempDir()
	if err := StartError(cmd.Dir, cmd.Run()); err == nil || strings.Contains(err.Error(), "working directory") {
		t.Fatalf("a missing interpreter blamed on the directory: %v", err)
	}
}
