package catalog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
)

// jsonCheck walks one JSON value that encoding/json has just read (so it
// is well-formed) along with the Go type it was read into, and finds
// what the YAML reading would refuse or read otherwise: it sets err for
// an unknown or repeated field, quote for the numbers and booleans where
// a string is expected (yaml.v3 reads their text), and yaml for a value
// only yaml.v3 reads as the YAML reading does.
type jsonCheck struct {
	b     []byte // the file up to the end of the value
	i     int
	quote []int // start and end offsets
	yaml  bool
	err   string
	errAt int
	keys  [][]byte // keys of the maps being walked, innermost last
}

var (
	durationType = reflect.TypeFor[Duration]()
	anyType      = reflect.TypeFor[any]() // where the value is already a type error
)

func (c *jsonCheck) fail(at int, msg string) {
	if c.err == "" {
		c.err, c.errAt = msg, at
	}
}

func (c *jsonCheck) value(t reflect.Type) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	c.i = skipSpace(c.b, c.i)
	switch c.b[c.i] {
	case '{':
		c.object(t)
	case '[':
		c.array(t)
	case '"':
		c.str()
		// yaml.v3 reads "yes", "on", "n"... as booleans.
		c.yaml = c.yaml || t.Kind() == reflect.Bool
	case 'n':
		c.i += len("null")
		// yaml.v3 leaves a null duration at zero; Duration.UnmarshalJSON refuses it.
		c.yaml = c.yaml || t == durationType
	case 't', 'f':
		start := c.i
		c.i += len("true")
		if c.b[c.i-1] != 'e' {
			c.i++ // false
		}
		c.scalar(t, start)
	default:
		start := c.i
		for c.i < len(c.b) && strings.IndexByte("+-.0123456789Ee", c.b[c.i]) >= 0 {
			c.i++
		}
		c.scalar(t, start)
	}
}

// scalar notes the number or boolean b[start:c.i] read into a t.
func (c *jsonCheck) scalar(t reflect.Type, start int) {
	switch {
	case t.Kind() == reflect.String:
		c.quote = append(c.quote, start, c.i)
	case c.b[start] == 't' || c.b[start] == 'f':
		c.yaml = c.yaml || t == durationType // "true" is no duration either
	default:
		c.yaml = c.yaml || yamlReadsNumber(t, c.b[start:c.i])
	}
}

// yamlReadsNumber reports whether yaml.v3 reads the number lit into a
// t (not a string) where encoding/json refuses it or reads it otherwise.
func yamlReadsNumber(t reflect.Type, lit []byte) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if t == durationType {
			return true // "0" is a duration
		}
		// What encoding/json refuses is left to yaml.v3: 1.5 and 1e3
		// are integers to it (truncated), and some overflows.
		if t.Bits() == 64 && len(lit) < 19 && bytes.IndexAny(lit, ".eE") < 0 {
			return false // fits
		}
		_, err := strconv.ParseInt(string(lit), 10, t.Bits())
		return err != nil
	case reflect.Float32, reflect.Float64:
		return string(lit) == "-0" // an integer to yaml.v3: +0
	}
	return false
}

func (c *jsonCheck) object(t reflect.Type) {
	var fields map[string]yamlField
	switch t.Kind() {
	case reflect.Struct:
		fields = yamlFields(t)
	case reflect.Map:
	default:
		t = anyType
	}
	base := len(c.keys)
	defer func() { c.keys = c.keys[:base] }()
	var set uint64 // the struct fields met
	var many map[string]bool
	c.i++ // '{'
	for c.err == "" {
		c.i = skipSpace(c.b, c.i)
		switch c.b[c.i] {
		case '}':
			c.i++
			return
		case ',':
			c.i++
			continue
		}
		at := c.i
		key := c.key()
		c.i = skipSpace(c.b, c.i) + 1 // ':'
		elem := anyType
		switch t.Kind() {
		case reflect.Struct:
			f, ok := fields[string(key)]
			if !ok {
				c.fail(at, unknownField(string(key), t))
				return
			}
			if set&(1<<f.index) != 0 {
				c.fail(at, fmt.Sprintf("%q is set twice", key))
			}
			set |= 1 << f.index // the model's structs have fewer than 64 fields
			elem = f.typ
		case reflect.Map:
			// yaml.v3 refuses a repeated key; encoding/json keeps the last.
			if many == nil && len(c.keys)-base == 16 {
				many = map[string]bool{}
				for _, k := range c.keys[base:] {
					many[string(k)] = true
				}
			}
			if many != nil && many[string(key)] || many == nil && slicesContainBytes(c.keys[base:], key) {
				c.fail(at, fmt.Sprintf("%q is set twice", key))
			}
			if many != nil {
				many[string(key)] = true
			} else {
				c.keys = append(c.keys, key)
			}
			elem = t.Elem()
		}
		c.value(elem)
	}
}

func slicesContainBytes(list [][]byte, b []byte) bool {
	for _, x := range list {
		if bytes.Equal(x, b) {
			return true
		}
	}
	return false
}

func (c *jsonCheck) array(t reflect.Type) {
	elem := anyType
	if t.Kind() == reflect.Slice {
		elem = t.Elem()
	}
	c.i++ // '['
	for c.err == "" {
		c.i = skipSpace(c.b, c.i)
		switch c.b[c.i] {
		case ']':
			c.i++
			return
		case ',':
			c.i++
			continue
		case 'n':
			// yaml.v3 drops a null entry from a list of values
			// (encoding/json keeps a zero one).
			switch elem.Kind() {
			case reflect.Interface, reflect.Pointer, reflect.Map, reflect.Slice:
			default:
				c.yaml = true
			}
		}
		c.value(elem)
	}
}

// quoted returns the value b[start:end] with the literals at c.quote
// made strings of their text, as yaml.v3 reads them.
func (c *jsonCheck) quoted(start, end int) []byte {
	out := make([]byte, 0, end-start+len(c.quote))
	from := start
	for i := 0; i < len(c.quote); i += 2 {
		out = append(out, c.b[from:c.quote[i]]...)
		out = append(out, '"')
		out = append(out, c.b[c.quote[i]:c.quote[i+1]]...)
		out = append(out, '"')
		from = c.quote[i+1]
	}
	return append(out, c.b[from:end]...)
}

// key reads an object's key, unescaped.
func (c *jsonCheck) key() []byte {
	start := c.i
	if !c.str() {
		return c.b[start+1 : c.i-1]
	}
	var s string
	json.Unmarshal(c.b[start:c.i], &s) // well-formed: no error
	return []byte(s)
}

// str skips a string and reports whether it has escapes. A \u escape of
// half a surrogate pair alone is refused: encoding/json would read it as
// U+FFFD.
func (c *jsonCheck) str() (escaped bool) {
	c.i++ // '"'
	for {
		end := c.i + bytes.IndexByte(c.b[c.i:], '"')
		esc := bytes.IndexByte(c.b[c.i:end], '\\')
		if esc < 0 {
			c.i = end + 1
			return escaped
		}
		escaped = true
		c.i += esc
		if c.b[c.i+1] != 'u' {
			c.i += 2
			continue
		}
		switch r := hex4(c.b[c.i+2:]); {
		case r >= 0xd800 && r < 0xdc00 && c.b[c.i+6] == '\\' && c.b[c.i+7] == 'u' && hex4(c.b[c.i+8:])&0xfc00 == 0xdc00:
			c.i += 12 // a pair
		case r >= 0xd800 && r < 0xe000:
			c.fail(c.i, fmt.Sprintf(`\u%04x is half of a UTF-16 surrogate pair`, r))
			c.i += 6
		default:
			c.i += 6
		}
	}
}

func hex4(b []byte) rune {
	v, _ := strconv.ParseUint(string(b[:4]), 16, 16)
	return rune(v)
}

// yamlField is a field of a struct as the YAML reading knows it.
type yamlField struct {
	index int // among the struct's fields
	typ   reflect.Type
}

var yamlFieldCache sync.Map // reflect.Type → map[string]yamlField

// yamlFields returns a struct's fields by YAML name, as yaml.v3 names
// them (its tag, or the lowercased field name); yaml:"-" fields are not
// file fields.
func yamlFields(t reflect.Type) map[string]yamlField {
	if m, ok := yamlFieldCache.Load(t); ok {
		return m.(map[string]yamlField)
	}
	m := map[string]yamlField{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = yamlField{i, f.Type}
	}
	yamlFieldCache.Store(t, m)
	return m
}

// unknownField words an unknown field of t, with the field the writer
// probably meant when only the case differs.
func unknownField(key string, t reflect.Type) string {
	msg := fmt.Sprintf("unknown field %q", key)
	for name := range yamlFields(t) {
		if strings.EqualFold(name, key) {
			return msg + fmt.Sprintf(" (field names are case-sensitive: %q)", name)
		}
	}
	return msg
}
