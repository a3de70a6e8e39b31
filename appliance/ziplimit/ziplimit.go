// Package ziplimit opens uploaded zips (eggs, wheelhouses) reading a
// bounded directory. archive/zip keeps every entry in memory, some 300
// bytes for 47 bytes of directory, and reads entries for as long as they
// come, whatever the zip's end record says: a 64 MiB upload of empty
// entries would cost the daemon 400 MiB.
package ziplimit

import (
	"archive/zip"
	"errors"
	"io"
)

// MaxDirectory bounds the zip directory read: 4 MiB is some 40,000 files
// with real names, far more than a project or its wheels have.
const MaxDirectory = 4 << 20

// budget is what opening a zip may read: its directory, plus the end
// record archive/zip looks for in the last 65 KiB.
const budget = MaxDirectory + 128<<10

// ErrTooManyFiles: the zip's directory is larger than MaxDirectory.
var ErrTooManyFiles = errors.New("zip directory too large")

// Open reads a zip's directory, at most MaxDirectory of it; the entries'
// own reads are not bounded (their readers must be). Any error but
// ErrTooManyFiles is archive/zip's: not a zip.
func Open(r io.ReaderAt, size int64) (*zip.Reader, error) {
	br := &budgetReaderAt{r: r, left: budget}
	zr, err := zip.NewReader(br, size)
	if br.exhausted {
		return nil, ErrTooManyFiles
	}
	if err != nil {
		return nil, err
	}
	br.left = -1
	return zr, nil
}

// budgetReaderAt fails every read once left bytes were read (left < 0:
// no limit).
type budgetReaderAt struct {
	r         io.ReaderAt
	left      int64
	exhausted bool
}

var errBudget = errors.New("read budget exhausted")

func (b *budgetReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if b.left < 0 {
		return b.r.ReadAt(p, off)
	}
	if int64(len(p)) > b.left {
		b.exhausted = true
		return 0, errBudget
	}
	n, err := b.r.ReadAt(p, off)
	b.left -= int64(n)
	return n, err
}
