// Package jsonw writes JSON by hand where encoding/json's reflection
// costs too much (audit lines of a million keys, report rows by the
// hundred thousand), byte for byte as encoding/json writes it.
package jsonw

import "unicode/utf8"

// AppendString appends s as a JSON string the way encoding/json
// writes a string with its default HTML escaping (Marshal, and an
// Encoder not told otherwise): control characters as \b \f \n \r \t or
// else \u00XX in lower-case hex; " and \ backslashed; <, > and & as
// \u003c, \u003e and \u0026; U+2028 and U+2029 as \u2028 and \u2029
// (they end lines in JavaScript); each byte that is not part of valid
// UTF-8 as \ufffd. Everything else, DEL included, is copied.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	copied := 0 // s[:copied] is in b
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonPlain[c] {
				i++
				continue
			}
			b = append(b, s[copied:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', lowerHex[c>>4], lowerHex[c&0xf])
			}
			i++
			copied = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[copied:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[copied:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', lowerHex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		copied = i
	}
	b = append(b, s[copied:]...)
	return append(b, '"')
}

const lowerHex = "0123456789abcdef"

// jsonPlain[c] reports whether AppendString copies the ASCII byte c:
// not a control character (DEL is not one to encoding/json), ", \, <, >
// or &.
var jsonPlain = func() (t [utf8.RuneSelf]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()
