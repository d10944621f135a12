package benchkit

import (
	"strconv"
	"strings"
)

// ParseLogfmt splits a slog text line into its key=value pairs; values
// may be quoted as strconv.Quote quotes them. Malformed parts are
// skipped.
func ParseLogfmt(line string) map[string]string {
	fields := map[string]string{}
	eachField(line, func(key, value string) bool {
		fields[key] = value
		return true
	})
	return fields
}

// LogField is the value of key in a slog text line, and whether the line
// has it (the first, if it has it twice).
func LogField(line, key string) (value string, ok bool) {
	eachField(line, func(k, v string) bool {
		if k == key {
			value, ok = v, true
			return false
		}
		return true
	})
	return value, ok
}

// ListenLine recognises tollgate's slog text lines announcing a listener,
// such as
//
//	time=... level=INFO msg="gateway listening" addr=127.0.0.1:40123
//
// and returns the listener's kind ("gateway", "admin", ...: the message
// before " listening") with its address.
func ListenLine(line string) (kind, addr string, ok bool) {
	if !strings.Contains(line, " listening") { // most lines: no parsing
		return "", "", false
	}
	msg, _ := LogField(line, "msg")
	kind, found := strings.CutSuffix(msg, " listening")
	if !found || kind == "" {
		return "", "", false
	}
	addr, _ = LogField(line, "addr")
	if addr == "" {
		return "", "", false
	}
	return kind, addr, true
}

// eachField calls f with each key=value pair of a slog text line until
// f returns false.
func eachField(line string, f func(key, value string) bool) {
	s := line
	for {
		s = strings.TrimLeft(s, " ")
		if s == "" {
			return
		}
		eq := strings.IndexAny(s, "= ")
		if eq <= 0 || s[eq] != '=' {
			_, s, _ = strings.Cut(s, " ") // a bare word; skip it
			continue
		}
		key, rest := s[:eq], s[eq+1:]
		var value string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return // an unterminated quote ends the line
			}
			value, _ = strconv.Unquote(q)
			s = rest[len(q):]
		} else {
			value, s, _ = strings.Cut(rest, " ")
		}
		if !f(key, value) {
			return
		}
	}
}
