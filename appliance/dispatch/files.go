package dispatch

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
)

// prune keeps the newest keep files of a per-spider directory (Scrapyd's
// jobs_to_keep, applied before a new job's file exists; 0 keeps all).
func prune(dir string, keep int) {
	if keep <= 0 {
		return
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) <= keep {
		return
	}
	type file struct {
		name  string
		mtime int64
	}
	var files []file
	for _, e := range ents {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
			files = append(files, file{e.Name(), info.ModTime().UnixNano()})
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].mtime > files[j].mtime })
	for i := keep; i < len(files); i++ {
		os.Remove(filepath.Join(dir, files[i].name))
	}
}

var finishReasonRE = regexp.MustCompile(`'finish_reason': '([a-z_]+)'`)

// finishReason reads Scrapy's finish_reason from the stats it dumps at the
// end of its log ("" if the log has none): it tells a graceful cancel
// ("shutdown", "cancelled") from a finished crawl when no exit status is
// known.
func finishReason(logFile string) string {
	if logFile == "" {
		return ""
	}
	f, err := os.Open(logFile)
	if err != nil {
		return ""
	}
	defer f.Close()
	const tail = 16 << 10
	if info, err := f.Stat(); err == nil && info.Size() > tail {
		f.Seek(info.Size()-tail, io.SeekStart)
	}
	data, _ := io.ReadAll(f)
	m := finishReasonRE.FindAllSubmatch(data, -1)
	if len(m) == 0 {
		return ""
	}
	return string(bytes.TrimSpace(m[len(m)-1][1]))
}

func appendLine(path, line string) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return
	}
	defer f.Close()
	f.WriteString(line + "\n")
}
