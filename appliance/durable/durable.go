// Package durable writes files so that a crash leaves the old content or
// the new, never a torn file or a lost rename: data goes to a temporary
// file beside the target, synced and renamed into place, and a directory
// is synced once the names in it have changed. The egg store and the
// Python environments both keep their state this way.
package durable

import (
	"os"
	"path/filepath"
)

// WriteFile replaces path with data atomically. The file's mode is
// CreateTemp's 0600; SyncDir the directory afterwards to keep the rename.
func WriteFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// SyncDir flushes dir's entries (renames, creations, removals) to disk.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
