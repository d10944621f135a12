package catalog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// File is a declarative configuration file as read from disk: a Catalog
// whose keys may carry values and whose plan references may be names.
type File struct {
	Name    string // the path, for error messages
	Catalog Catalog
	// lines maps an entity's place ("usagePlans[1]") to its line in the
	// file so that errors point at it.
	lines map[string]int
	// hasGateway records whether the file has a gateway block at all.
	hasGateway bool
}

// ParseFile parses a configuration file's content; name is used in
// error messages. Unknown fields are errors, so a misspelt setting is
// never silently ignored.
//
// The file must be UTF-8 (a byte-order mark is allowed) and hold exactly
// one YAML document: a second one (after "---") would be ignored by the
// decoder, and with it whatever the operator meant by it.
func ParseFile(name string, b []byte) (*File, error) {
	f := &File{Name: name, lines: map[string]int{}}
	if err := checkUTF8(b); err != nil {
		return nil, fmt.Errorf("%s:%w", name, err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s: the file is empty", name)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f.Catalog); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, fmt.Errorf("%s: %w", name, err)
	default:
		return nil, fmt.Errorf("%s:%d: a second YAML document: the file must hold one (remove the \"---\" and what follows, or merge it into the first)", name, next.Line)
	}
	// Remember where each entity starts.
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Value == "gateway" {
			f.hasGateway = true
		}
		if v.Kind != yaml.SequenceNode {
			continue
		}
		for j, item := range v.Content {
			f.lines[k.Value+"["+strconv.Itoa(j)+"]"] = item.Line
		}
	}
	return f, nil
}

// checkUTF8 reports the line and column of the first byte that is not
// UTF-8. YAML must be Unicode, and the parser's own message names no line.
func checkUTF8(b []byte) error {
	if utf8.Valid(b) {
		return nil
	}
	line, col := 1, 1
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n <= 1 {
			hint := ""
			if len(b) >= 2 && (b[0] == 0xff && b[1] == 0xfe || b[0] == 0xfe && b[1] == 0xff) {
				hint = " (the file looks like UTF-16)"
			}
			return fmt.Errorf("%d:%d: byte 0x%02x is not UTF-8%s: save the file as UTF-8", line, col, b[0], hint)
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		b = b[n:]
	}
	return nil
}

// Line returns the line of an entity such as "apiKeys[0]", or 0.
func (f *File) Line(place string) int { return f.lines[place] }

// FieldError is one problem with one field of one entity.
type FieldError struct {
	File   string // file name, "" when the catalog did not come from a file
	Line   int    // line of the entity in File, 0 if unknown
	Entity string // e.g. `usagePlans[0] "Free Tier"`
	Field  string // e.g. "quota.period"
	Msg    string
}

func (e *FieldError) Error() string {
	var b bytes.Buffer
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Entity)
	if e.Field != "" {
		b.WriteString(": " + e.Field)
	}
	b.WriteString(": " + e.Msg)
	return b.String()
}

// ValidationError lists every problem found; nothing was applied.
type ValidationError struct{ Problems []*FieldError }

func (e *ValidationError) Error() string {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return "invalid configuration:\n" + errors.Join(errs...).Error()
}
