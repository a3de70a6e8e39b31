// Package logscan reads a Scrapy log once and counts its records the way
// LogParser sorts them (critical, error, warning, redirect, retry,
// ignore), so that ScrapydWeb's Stats page and its alerts get the counts
// with no LogParser installed. It keeps only the line it is reading.
package logscan

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// Counts are LogParser's log_categories counts. The JSON names are the
// keys they are stored under in a finished job's stats.
type Counts struct {
	Critical int `json:"scrapyd/log_count/critical"`
	Error    int `json:"scrapyd/log_count/error"`
	Warning  int `json:"scrapyd/log_count/warning"`
	Redirect int `json:"scrapyd/log_count/redirect"`
	Retry    int `json:"scrapyd/log_count/retry"`
	Ignore   int `json:"scrapyd/log_count/ignore"`
}

// The patterns of LogParser's LOG_CATEGORIES_PATTERN_DICT
// (logparser/common.py), each looked for in a record's first line after
// its timestamp:
//
//	critical_logs=r'\][ ]CRITICAL:',
//	error_logs=r'\][ ]ERROR:',
//	warning_logs=r'\][ ]WARNING:',
//	redirect_logs=r':[ ]Redirecting[ ]\(',
//	retry_logs=r'[ ][Rr]etrying[ ]<',
//	ignore_logs=r':[ ]Ignoring[ ]response[ ]<'
var (
	critical = []byte("] CRITICAL:")
	errorLvl = []byte("] ERROR:")
	warning  = []byte("] WARNING:")
	redirect = []byte(": Redirecting (")
	retryLow = []byte(" retrying <")
	retryCap = []byte(" Retrying <")
	gaveUp   = []byte("Gave up retrying <") // not counted as a retry (scrapylogparser.py)
	ignore   = []byte(": Ignoring response <")
)

// Scan reads r to its end and counts its records. A line longer than the
// reader's buffer is judged by its start, where the level and message are.
func Scan(r io.Reader) (Counts, error) {
	var c Counts
	br := bufio.NewReaderSize(r, 64<<10)
	inLine := false // the rest of a line longer than the buffer
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 && !inLine {
			c.add(line)
		}
		inLine = errors.Is(err, bufio.ErrBufferFull)
		switch {
		case err == nil, inLine:
		case errors.Is(err, io.EOF):
			return c, nil
		default:
			return c, err
		}
	}
}

// add counts one line if it starts a record: "YYYY-MM-DD HH:MM:SS " and
// at least one character before the pattern (LogParser's
// `{time_}[ ][^\n]+?{pattern}`).
func (c *Counts) add(line []byte) {
	if !isRecord(line) {
		return
	}
	rest := line[21:] // past the timestamp, its space and one character
	// Each category is looked for on its own, as LogParser does.
	if bytes.Contains(rest, critical) {
		c.Critical++
	}
	if bytes.Contains(rest, errorLvl) {
		c.Error++
	}
	if bytes.Contains(rest, warning) {
		c.Warning++
	}
	if bytes.Contains(rest, redirect) {
		c.Redirect++
	}
	if (bytes.Contains(rest, retryLow) || bytes.Contains(rest, retryCap)) && !bytes.Contains(rest, gaveUp) {
		c.Retry++
	}
	if bytes.Contains(rest, ignore) {
		c.Ignore++
	}
}

// isRecord: LogParser's DATETIME_PATTERN `\d{4}-\d{2}-\d{2}[ ]\d{2}:\d{2}:\d{2}`
// and a space.
func isRecord(line []byte) bool {
	const shape = "dddd-dd-dd dd:dd:dd "
	if len(line) <= len(shape) {
		return false
	}
	for i := 0; i < len(shape); i++ {
		b := line[i]
		if shape[i] == 'd' {
			if b < '0' || b > '9' {
				return false
			}
		} else if b != shape[i] {
			return false
		}
	}
	return true
}
