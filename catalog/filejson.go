package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Reading a configuration file written as JSON.
//
// JSON is YAML, so the YAML reading accepts these files too, but yaml.v3
// builds a node for every value before decoding it: ~20 µs and 3.5 kB a
// key, so half a minute for a million keys. encoding/json takes ~4 µs of
// CPU a key; readJSON decodes the parts of a long list on all cores
// (~2.5 s and 320 MB for a million keys on 2 cores, BenchmarkParseFile):
//
//  1. splitList finds where each entity of a list starts from brackets
//     and quotes alone, and checks the commas between entities, which is
//     all of the file that step 2 does not see (with the top-level
//     object's braces, keys and colons);
//  2. decodePart decodes a run of entities with a json.Decoder
//     (DisallowUnknownFields), which checks the syntax of every byte of
//     it, records each entity's line from the decoder's InputOffset, and
//     has jsonCheck walk each entity's bytes with its Go type.
//
// If step 1 finds something wrong, the file may not be JSON at all, and
// encoding/json's syntax error comes first.
//
// The YAML reading's rules hold:
//
//   - field names are the YAML ones (APIKey.Value is "value" although
//     its JSON tag hides it; ValueHash, CreatedDate... cannot be set),
//     matched exactly (encoding/json ignores case), each at most once in
//     an object: jsonCheck enforces this;
//   - where yaml.v3 reads a value that encoding/json refuses or reads
//     otherwise, jsonCheck notices: a number or boolean where a string is
//     expected (a customer id 4711) is decoded as the string of its text,
//     as yaml.v3 reads it; for the rest (1.5 or 1e3 for an integer, "yes"
//     for a boolean, null for a duration, a null entry of a nested list,
//     which YAML drops), that entity alone is decoded by yaml.v3, ~20 µs;
//     a null entity of a top-level list is dropped here directly;
//   - one value and nothing after it; a top-level field at most once.
//
// What differs: a file that starts as JSON must be JSON to the end (a
// comment or a trailing comma, which YAML allows, is a syntax error
// here). Only JSON reads `\/` and surrogate pairs (`\ud83d\ude00`):
// yaml.v3 refuses these escapes. A lone surrogate is refused here,
// rather than read as U+FFFD. Characters that YAML refuses or reads as
// line breaks (U+007F-U+009F, U+2028, U+2029, U+FFFE, U+FFFF) are
// refused.

// jsonObject reports whether the file (after a byte-order mark) starts
// as a JSON object does: `{` and then a quoted key or `}`. A YAML flow
// mapping with a bare key, `{apis: []}`, is left to the YAML reading.
func jsonObject(b []byte) ([]byte, bool) {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	i := skipSpace(b, 0)
	if i == len(b) || b[i] != '{' {
		return nil, false
	}
	j := skipSpace(b, i+1)
	return b, j < len(b) && (b[j] == '"' || b[j] == '}')
}

// minPart is the fewest entities worth a goroutine of their own.
const minPart = 1024

// jsonReader reads one JSON file.
type jsonReader struct {
	f *File
	b []byte
}

func (f *File) readJSON(b []byte) error {
	r := &jsonReader{f: f, b: b}
	if i, c := yamlUnsafeChar(b); i >= 0 {
		return r.errorAt(i, fmt.Sprintf("the character %U is not allowed: write it as \\u%04x", c, c))
	}
	seen := map[string]int{} // top-level field → its offset
	i := skipSpace(b, 0) + 1 // past the '{' jsonObject saw
	for first := true; ; first = false {
		i = skipSpace(b, i)
		if i < len(b) && b[i] == '}' && first {
			i++
			break
		}
		if i >= len(b) || b[i] != '"' {
			return r.structureError(i, "expected a quoted field name")
		}
		at := i
		key, end, ok := readKey(b, i)
		if !ok {
			return r.structureError(i, "expected a quoted field name")
		}
		if i = skipSpace(b, end); i >= len(b) || b[i] != ':' {
			return r.structureError(i, `expected ":" after the field name`)
		}
		i = skipSpace(b, i+1)
		if prev, dup := seen[key]; dup {
			return r.structureError(at, fmt.Sprintf("%q is already set on line %d: a field may appear once", key, r.position(prev).line))
		}
		seen[key] = at
		var err error
		switch key {
		case "gateway":
			f.hasGateway = true
			i, err = r.single(i, &f.Catalog.Gateway, key)
		case "apis":
			f.Catalog.APIs, i, err = readList[API](r, i, key)
		case "usagePlans":
			f.Catalog.UsagePlans, i, err = readList[UsagePlan](r, i, key)
		case "apiKeys":
			f.Catalog.APIKeys, i, err = readList[APIKey](r, i, key)
		default:
			return r.structureError(at, unknownField(key, reflect.TypeFor[Catalog]()))
		}
		if err != nil {
			return err
		}
		if i = skipSpace(b, i); i < len(b) && b[i] == '}' {
			i++
			break
		}
		if i >= len(b) || b[i] != ',' {
			return r.structureError(i, `expected "," or "}" after a field`)
		}
		i++
	}
	if i = skipSpace(b, i); i < len(b) {
		return r.structureError(i, "nothing after the top-level object: the file must hold one JSON value")
	}
	return nil
}

// single decodes the value at b[i:] into v; it returns where it ends.
func (r *jsonReader) single(i int, v any, place string) (int, error) {
	end, ok := skipValue(r.b, i)
	if !ok || end == i {
		return end, r.structureError(i, "expected a value")
	}
	dec := json.NewDecoder(bytes.NewReader(r.b[i:end]))
	dec.DisallowUnknownFields()
	d := decoder{r: r, dec: dec, base: i}
	if err := d.value(v, place, -1); err != nil {
		return end, err
	}
	if d.base+int(dec.InputOffset()) != end {
		return end, r.structureError(d.base+int(dec.InputOffset()), "expected the end of the value")
	}
	return end, nil
}

// readList reads the list at b[i:], the value of the top-level field key,
// and records where each entity starts. It returns where the list ends.
func readList[T any](r *jsonReader, i int, key string) ([]T, int, error) {
	if i == len(r.b) || r.b[i] != '[' { // null, or a type error
		var list []T
		end, err := r.single(i, &list, key)
		return list, end, err
	}
	starts, end, err := r.splitList(i)
	if err != nil {
		return nil, end, err
	}
	list := make([]T, len(starts))
	lines := make([]int, len(starts))
	parts := min(runtime.GOMAXPROCS(0), max(len(starts)/minPart, 1))
	errs := make([]error, parts)
	var wg sync.WaitGroup
	first := lineCounter{b: r.b, line: 1}
	for p := range parts {
		from, to := p*len(starts)/parts, (p+1)*len(starts)/parts
		if from == to {
			continue
		}
		line := first.at(starts[from])
		wg.Go(func() {
			errs[p] = decodePart(r, key, starts, from, to, list[from:to], lines[from:to], line)
		})
	}
	wg.Wait()
	for _, err := range errs { // the first in the file
		if err != nil {
			return nil, end, err
		}
	}
	r.f.lines[key] = lines
	return list, end, nil
}

// splitList returns the offsets where the entities of the list at b[i:]
// start, null entries left out, and where the list ends. It checks what
// lies between entities; decodePart checks the entities.
func (r *jsonReader) splitList(i int) (starts []int, end int, err error) {
	b := r.b
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return nil, i + 1, nil
	}
	for {
		end, ok := skipValue(b, i)
		switch {
		case !ok || end == i:
			return nil, i, r.structureError(i, "expected a value")
		case bytes.Equal(b[i:end], []byte("null")):
			// dropped, as yaml.v3 drops it
		default:
			starts = append(starts, i)
		}
		i = skipSpace(b, end)
		switch {
		case i < len(b) && b[i] == ']':
			return starts, i + 1, nil
		case i < len(b) && b[i] == ',':
			i = skipSpace(b, i+1)
		default:
			return nil, i, r.structureError(i, `expected "," or "]" after a list entry`)
		}
	}
}

// decodePart decodes the entities starts[from:to] of the list key into
// list, and their lines into lines; line is the line of the first one.
func decodePart[T any](r *jsonReader, key string, starts []int, from, to int, list []T, lines []int, line int) error {
	start := starts[from]
	end, _ := skipValue(r.b, starts[to-1])
	// The entities and what lies between them, as one JSON list.
	dec := json.NewDecoder(io.MultiReader(strings.NewReader("["), bytes.NewReader(r.b[start:end]), strings.NewReader("]")))
	dec.DisallowUnknownFields()
	d := decoder{r: r, dec: dec, base: start - 1, lines: lineCounter{b: r.b, off: start, line: line}}
	if _, err := dec.Token(); err != nil {
		return d.syntaxError(err)
	}
	for k := range list {
		for r.b[d.next()] == 'n' { // a null entry between two entities
			if tok, err := dec.Token(); err != nil || tok != nil {
				return d.syntaxError(err)
			}
		}
		lines[k] = d.lines.at(d.next())
		if err := d.value(&list[k], key, from+k); err != nil {
			return err
		}
	}
	// Nothing is left: the entities splitList found are the decoder's.
	if tok, err := dec.Token(); err != nil || tok != json.Delim(']') {
		return d.syntaxError(err)
	}
	return nil
}

// decoder decodes values from part of a file.
type decoder struct {
	r     *jsonReader
	dec   *json.Decoder
	base  int // the file offset of the decoder's input offset 0
	lines lineCounter
	key   struct { // see target
		*APIKey
		Value *string `json:"value"`
	}
}

// next returns the file offset where the decoder's next value starts,
// past white space and the ',' before it.
func (d *decoder) next() int {
	i := skipSpace(d.r.b, d.base+int(d.dec.InputOffset()))
	if i < len(d.r.b) && d.r.b[i] == ',' {
		i = skipSpace(d.r.b, i+1)
	}
	return min(i, len(d.r.b)-1)
}

// value decodes the next value into v (a pointer), as yaml.v3 would;
// it is the value of the top-level field list, or its entity index.
func (d *decoder) value(v any, list string, index int) error {
	place := func() string {
		if index < 0 {
			return list
		}
		return list + "[" + strconv.Itoa(index) + "]"
	}
	start := d.next()
	err := d.dec.Decode(d.target(v))
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) || errors.Is(err, io.ErrUnexpectedEOF) {
		return d.syntaxError(err)
	}
	end := d.base + int(d.dec.InputOffset())
	c := jsonCheck{b: d.r.b[:end], i: start}
	c.value(reflect.TypeOf(v).Elem())
	switch {
	case c.err != "":
		return d.r.errorAt(c.errAt, place()+": "+c.err)
	case c.yaml:
		reflect.ValueOf(v).Elem().SetZero()
		err = d.yamlValue(v, start, end)
	case c.quote != nil:
		reflect.ValueOf(v).Elem().SetZero()
		err = json.Unmarshal(c.quoted(start, end), d.target(v))
	}
	if err != nil {
		return fmt.Errorf("%s:%d: %s: %w", d.r.f.Name, d.r.position(start).line, place(), jsonMessage(err))
	}
	return nil
}

// yamlValue decodes b[start:end] with yaml.v3, the way the YAML reading
// would; its "line N" become lines of the file.
func (d *decoder) yamlValue(v any, start, end int) error {
	dec := yaml.NewDecoder(bytes.NewReader(d.r.b[start:end]))
	dec.KnownFields(true)
	err := dec.Decode(v)
	var te *yaml.TypeError
	if errors.As(err, &te) {
		first := d.r.position(start).line
		for i, e := range te.Errors {
			var n int
			if _, scanErr := fmt.Sscanf(e, "line %d:", &n); scanErr == nil {
				te.Errors[i] = "line " + strconv.Itoa(first+n-1) + e[len("line "+strconv.Itoa(n)):]
			}
		}
	}
	return err
}

// syntaxError reports a syntax error of the decoder, or (err nil) a value
// where there should be none.
func (d *decoder) syntaxError(err error) error {
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) {
		return d.r.errorAt(d.base+syntaxOffset(syntax), "not valid JSON: "+strings.TrimPrefix(err.Error(), "json: "))
	}
	return d.r.structureError(d.base+int(d.dec.InputOffset()), "not valid JSON here")
}

// target returns what encoding/json decodes into for v: v itself, or
// for an API key a view that also takes "value" (APIKey.Value's JSON tag
// hides it, since catalogs never hold values).
func (d *decoder) target(v any) any {
	if k, ok := v.(*APIKey); ok {
		d.key.APIKey, d.key.Value = k, &k.Value
		return &d.key
	}
	return v
}

// jsonMessage words encoding/json's type errors without Go type names.
func jsonMessage(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if field := strings.TrimPrefix(te.Field, "APIKey."); field != "" { // see target
			return fmt.Errorf("%s: cannot read a JSON %s as %s", field, te.Value, te.Type)
		}
		return fmt.Errorf("cannot read a JSON %s as %s", te.Value, te.Type)
	}
	return err
}

// structureError reports msg at offset i, unless the file is not JSON
// at all: then encoding/json's first complaint comes first, as it is
// earlier in the file or explains this one.
func (r *jsonReader) structureError(i int, msg string) error {
	var v struct{}
	var syntax *json.SyntaxError
	if err := json.Unmarshal(r.b, &v); errors.As(err, &syntax) {
		return r.errorAt(syntaxOffset(syntax), "not valid JSON: "+strings.TrimPrefix(err.Error(), "json: "))
	}
	return r.errorAt(i, msg)
}

// syntaxOffset returns the offset of the byte a syntax error is about:
// encoding/json counts the bytes read, that one included.
func syntaxOffset(e *json.SyntaxError) int { return max(int(e.Offset)-1, 0) }

// errorAt reports msg at offset off, as "name:line:column: msg".
func (r *jsonReader) errorAt(off int, msg string) error {
	p := r.position(off)
	return fmt.Errorf("%s:%d:%d: %s", r.f.Name, p.line, p.col, msg)
}

type position struct{ line, col int }

// position returns the line and column (in characters) of offset off.
func (r *jsonReader) position(off int) position {
	off = min(off, len(r.b))
	lc := lineCounter{b: r.b, line: 1}
	lineStart := bytes.LastIndexAny(r.b[:off], "\r\n") + 1
	return position{lc.at(off), utf8.RuneCount(r.b[lineStart:off]) + 1}
}

// lineCounter counts lines as YAML does (\n, \r\n, or \r alone) up to
// growing offsets, from where it last counted.
type lineCounter struct {
	b    []byte
	off  int // lines are counted up to here
	line int // the line at off
}

func (c *lineCounter) at(off int) int {
	seg := c.b[c.off:off]
	c.line += bytes.Count(seg, []byte("\n"))
	if bytes.IndexByte(seg, '\r') >= 0 {
		c.line += bytes.Count(seg, []byte("\r")) - bytes.Count(seg, []byte("\r\n"))
	}
	c.off = off
	return c.line
}

// skipSpace returns the index of the first byte from i on that is not
// JSON white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// skipValue returns where the JSON value at b[i:] ends, from its
// brackets and quotes alone (encoding/json checks the rest); ok is false
// if the file ends first or a bracket does not match.
func skipValue(b []byte, i int) (end int, ok bool) {
	var open []byte // the brackets to close, innermost last
	for ; i < len(b); i++ {
		switch c := b[i]; c {
		case '"':
			n, ok := stringEnd(b, i)
			if !ok {
				return len(b), false
			}
			i = n - 1
		case '{', '[':
			open = append(open, c+2) // '}' and ']' follow '{' and '[' by 2
		case '}', ']':
			if len(open) == 0 {
				return i, true // the end of a number or literal
			}
			if open[len(open)-1] != c {
				return i, false
			}
			open = open[:len(open)-1]
		case ',', ':', ' ', '\t', '\n', '\r':
			if len(open) == 0 {
				return i, true
			}
			continue
		default:
			continue
		}
		if len(open) == 0 {
			return i + 1, true
		}
	}
	return len(b), len(open) == 0
}

// stringEnd returns the offset past the string that starts at b[i].
func stringEnd(b []byte, i int) (int, bool) {
	for i++; ; {
		q := bytes.IndexByte(b[i:], '"')
		if q < 0 {
			return len(b), false
		}
		esc := bytes.IndexByte(b[i:i+q], '\\')
		if esc < 0 {
			return i + q + 1, true
		}
		i += esc + 2
		if i > len(b) {
			return len(b), false
		}
	}
}

// readKey reads the field name at b[i:]; it returns where it ends.
func readKey(b []byte, i int) (key string, end int, ok bool) {
	end, ok = stringEnd(b, i)
	if !ok {
		return "", end, false
	}
	raw := b[i:end]
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), end, true
	}
	return key, end, json.Unmarshal(raw, &key) == nil
}

// yamlUnsafeChar returns the offset of the first character that yaml.v3
// refuses (U+007F-U+009F but U+0085, U+FFFE, U+FFFF) or reads as a line
// break (U+0085, U+2028, U+2029) even inside a string, or -1: the same
// text must not mean one thing as JSON and another as YAML. The other
// control characters are not JSON.
func yamlUnsafeChar(b []byte) (int, rune) {
	first, char := -1, rune(0)
	for _, c := range []byte{0x7f, 0xc2, 0xe2, 0xef} { // the first byte of each
		for i := 0; first < 0 || i < first; i++ {
			j := bytes.IndexByte(b[i:], c)
			if j < 0 {
				break
			}
			i += j
			r, _ := utf8.DecodeRune(b[i:])
			if r == 0x7f || r >= 0x80 && r <= 0x9f || r == 0x2028 || r == 0x2029 || r == 0xfffe || r == 0xffff {
				first, char = i, r
				break
			}
		}
	}
	return first, char
}
