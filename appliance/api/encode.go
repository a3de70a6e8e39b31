package api

import (
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// obj is a JSON object whose keys keep their order: Scrapyd's envelope is
// handler keys, then "status", then "node_name".
type obj []kv

type kv struct {
	k string
	v any
}

// encode writes v as Python's json.dumps does with its defaults:
// separators ", " and ": ", ensure_ascii (non-ASCII as \uXXXX, astral
// characters as surrogate pairs), and no HTML escaping.
func encode(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case string:
		return encodeString(b, x)
	case *string:
		if x == nil {
			return append(b, "null"...)
		}
		return encodeString(b, *x)
	case bool:
		return strconv.AppendBool(b, x)
	case int:
		return strconv.AppendInt(b, int64(x), 10)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case *int:
		if x == nil {
			return append(b, "null"...)
		}
		return strconv.AppendInt(b, int64(*x), 10)
	case float64:
		return encodeFloat(b, x)
	case []string:
		return encodeList(b, x, encodeString)
	case []any:
		return encodeList(b, x, encode)
	case []obj:
		return encodeList(b, x, func(b []byte, o obj) []byte { return encode(b, o) })
	case obj:
		b = append(b, '{')
		b = encodeMembers(b, x)
		return append(b, '}')
	case rawJSON:
		return append(b, x...)
	case appender:
		return x.appendJSON(b)
	}
	panic(fmt.Sprintf("api: cannot encode %T", v))
}

// encodeMembers writes an object's members without its braces, so that
// an object can be encoded in parts.
func encodeMembers(b []byte, o obj) []byte {
	for i, e := range o {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = encodeString(b, e.k)
		b = append(b, ": "...)
		b = encode(b, e.v)
	}
	return b
}

// appender is a value that encodes itself, with encode's rules.
type appender interface {
	appendJSON(b []byte) []byte
}

// encodeList writes a JSON array with Python's ", " separator.
func encodeList[T any](b []byte, xs []T, one func([]byte, T) []byte) []byte {
	b = append(b, '[')
	for i, x := range xs {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = one(b, x)
	}
	return append(b, ']')
}

// rawJSON is already-encoded JSON (ASCII), inserted as is.
type rawJSON []byte

// encodeFloat follows Python's float repr: shortest round-trip digits,
// always with a decimal point or exponent, NaN and Infinity as Python
// writes them.
func encodeFloat(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, 1):
		return append(b, "Infinity"...)
	case math.IsInf(f, -1):
		return append(b, "-Infinity"...)
	}
	if f == math.Trunc(f) && math.Abs(f) < 1e16 {
		return append(strconv.AppendFloat(b, f, 'f', -1, 64), ".0"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

const hexDigits = "0123456789abcdef"

func encodeString(b []byte, s string) []byte {
	if plainASCII(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"':
			b = append(b, `\"`...)
		case r == '\\':
			b = append(b, `\\`...)
		case r == '\n':
			b = append(b, `\n`...)
		case r == '\r':
			b = append(b, `\r`...)
		case r == '\t':
			b = append(b, `\t`...)
		case r == '\b':
			b = append(b, `\b`...)
		case r == '\f':
			b = append(b, `\f`...)
		case r < 0x20 || r >= 0x7f && r < 0x10000:
			b = appendU(b, r)
		case r >= 0x10000:
			r -= 0x10000
			b = appendU(b, 0xd800+(r>>10))
			b = appendU(b, 0xdc00+(r&0x3ff))
		case r == utf8.RuneError:
			b = appendU(b, r)
		default:
			b = append(b, byte(r))
		}
	}
	return append(b, '"')
}

func appendU(b []byte, r rune) []byte {
	return append(b, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
}

// pyTime formats a time as Python's str() of a naive local datetime, the
// format listjobs.json has always used.
func pyTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	t = t.Local()
	if t.Nanosecond()/1000 == 0 {
		return t.Format("2006-01-02 15:04:05")
	}
	return t.Format("2006-01-02 15:04:05.000000")
}

// plainASCII: nothing in s needs escaping (the common case, and the hot
// path of listjobs.json).
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
