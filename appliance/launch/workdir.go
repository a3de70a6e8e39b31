package launch

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// StartError names the real cause of a failed exec when it is the working
// directory: the child's chdir fails after the fork, and Go reports it as
// "fork/exec /usr/bin/python3: no such file or directory", which sends the
// user looking for a missing interpreter (issue 13).
func StartError(dir string, err error) error {
	if dir == "" || !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if _, serr := os.Stat(dir); errors.Is(serr, fs.ErrNotExist) {
		return fmt.Errorf("working directory %s (crawl_dir) does not exist: %w", dir, err)
	}
	return err
}
