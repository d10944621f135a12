package catalog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// File is a declarative configuration file as read from disk: a Catalog
// whose keys may carry values and whose plan references may be names.
type File struct {
	Name    string // the path, for error messages
	Catalog Catalog
	// lines holds the line where each entity of a list starts, so that
	// errors point at it: lines["usagePlans"][1] for usagePlans[1]. (A
	// slice a list, not a map entry an entity: a million keys would
	// cost a million map entries and strings.)
	lines map[string][]int
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
//
// A file that starts as a JSON object does (`{` and a quoted key, or
// `{}`) is read as JSON, with encoding/json: programs that import a whole
// customer base write JSON, and yaml.v3 would take half a minute over a
// million keys. The JSON reading accepts what the YAML reading of the same
// text accepts, with the same result (filejson.go lists the few
// differences).
func ParseFile(name string, b []byte) (*File, error) {
	f := &File{Name: name, lines: map[string][]int{}}
	if err := checkUTF8(b); err != nil {
		return nil, fmt.Errorf("%s:%w", name, err)
	}
	if body, ok := jsonObject(b); ok {
		if err := f.readJSON(body); err != nil {
			return nil, err
		}
		return f, nil
	}
	if err := f.readYAML(b); err != nil {
		return nil, err
	}
	return f, nil
}

// readYAML reads a YAML file in one parse: the decoder checks the fields
// (KnownFields) and fills the catalog, then decodes the same parsed
// document again into yamlLines for where each entity starts.
func (f *File) readYAML(b []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var doc yamlDoc
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		return fmt.Errorf("%s: the file is empty", f.Name)
	case err != nil:
		return fmt.Errorf("%s: %w", f.Name, err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return fmt.Errorf("%s: %w", f.Name, err)
	default:
		return fmt.Errorf("%s:%d: a second YAML document: the file must hold one (remove the \"---\" and what follows, or merge it into the first)", f.Name, next.Line)
	}
	f.Catalog = doc.cat
	f.hasGateway = doc.lines.Gateway.Kind != 0
	for _, l := range []struct {
		list string
		node *yaml.Node
	}{{"apis", &doc.lines.APIs}, {"usagePlans", &doc.lines.UsagePlans}, {"apiKeys", &doc.lines.APIKeys}} {
		if l.node.Kind != yaml.SequenceNode {
			continue
		}
		lines := make([]int, 0, len(l.node.Content))
		for _, item := range l.node.Content {
			if !isNull(item) { // the decoder drops a null from the list
				lines = append(lines, item.Line)
			}
		}
		f.lines[l.list] = lines
	}
	return nil
}

// yamlDoc decodes one document twice without parsing it twice: yaml.v3
// hands the old-style UnmarshalYAML a function that decodes the parsed
// document with the decoder itself, KnownFields included (Node.Decode
// would lose it).
type yamlDoc struct {
	cat   Catalog
	lines yamlLines
}

func (d *yamlDoc) UnmarshalYAML(unmarshal func(any) error) error {
	if err := unmarshal(&d.cat); err != nil {
		return err
	}
	return unmarshal(&d.lines)
}

// yamlLines has Catalog's fields (KnownFields applies to it too), as
// nodes: where each entity starts.
type yamlLines struct {
	Gateway    yaml.Node `yaml:"gateway"`
	APIs       yaml.Node `yaml:"apis"`
	UsagePlans yaml.Node `yaml:"usagePlans"`
	APIKeys    yaml.Node `yaml:"apiKeys"`
}

// isNull reports whether a list item is null (directly or through an
// alias), which yaml.v3 drops from a list of structs.
func isNull(n *yaml.Node) bool {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n.ShortTag() == "!!null"
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
func (f *File) Line(place string) int {
	list, index, _ := strings.Cut(strings.TrimSuffix(place, "]"), "[")
	i, err := strconv.Atoi(index)
	if err != nil || i < 0 || i >= len(f.lines[list]) {
		return 0
	}
	return f.lines[list][i]
}

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
