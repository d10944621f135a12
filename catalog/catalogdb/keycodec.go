package catalogdb

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"unsafe"

	"github.com/tollgate/tollgate/catalog"
)

// Keys are the bulk of a catalog (a million rows where plans and APIs
// are a handful), so their rows are encoded compactly rather than as
// JSON: JSON decoding cost 4 µs a key, a third of a restart at 1M keys.
//
//	'K' 1 | strings: id, name, description, customerId, valueHash,
//	valuePrefix, tags (JSON, "" when none) | enabled byte |
//	createdDate, lastUpdatedDate (varint) | plan count, plan ids
//
// Each string is a uvarint length and its bytes. A row that starts with
// '{' is JSON (the encoding of every other kind).
//
// A key with a rotation (catalog.APIKey.PreviousValueHash) is written as
// version 2: the same fields, then
//
//	strings: previousValueHash, previousValuePrefix |
//	previousValueUntil (varint)
//
// Keys without one stay version 1, byte for byte as before, so that
// rows written before rotations existed, and by a binary that knows no
// rotation, read the same, and a binary of before can still read every
// key row but those of keys in a rotation.
const keyFormat1 = 'K'

const (
	keyVersion1        = 1
	keyVersionRotation = 2
)

func encodeKey(k *catalog.APIKey) ([]byte, error) {
	var tags []byte
	if len(k.Tags) > 0 {
		var err error
		if tags, err = json.Marshal(k.Tags); err != nil {
			return nil, err
		}
	}
	version := byte(keyVersion1)
	if k.HasRotation() {
		version = keyVersionRotation
	}
	b := make([]byte, 0, 2+len(k.ID)+len(k.Name)+len(k.Description)+len(k.CustomerID)+len(k.ValueHash)+len(k.ValuePrefix)+len(tags)+40)
	b = append(b, keyFormat1, version)
	for _, s := range []string{k.ID, k.Name, k.Description, k.CustomerID, k.ValueHash, k.ValuePrefix} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, uint64(len(tags)))
	b = append(b, tags...)
	if k.Enabled {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendVarint(b, k.CreatedDate)
	b = binary.AppendVarint(b, k.LastUpdatedDate)
	b = binary.AppendUvarint(b, uint64(len(k.UsagePlans)))
	for _, p := range k.UsagePlans {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	if version == keyVersionRotation {
		for _, s := range []string{k.PreviousValueHash, k.PreviousValuePrefix} {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
		b = binary.AppendVarint(b, k.PreviousValueUntil)
	}
	return b, nil
}

var errKeyRow = errors.New("malformed key row")

// decodeKey decodes a key row. Its strings point into s, the row as
// read (one allocation for the whole key's text).
func decodeKey(s string) (*catalog.APIKey, error) {
	if len(s) > 0 && s[0] == '{' {
		k := new(catalog.APIKey)
		return k, json.Unmarshal([]byte(s), k)
	}
	if len(s) < 2 || s[0] != keyFormat1 || s[1] != keyVersion1 && s[1] != keyVersionRotation {
		return nil, errKeyRow
	}
	version := s[1]
	b := unsafe.Slice(unsafe.StringData(s), len(s)) // read only
	i := 2
	str := func() (string, bool) {
		n, w := binary.Uvarint(b[i:])
		if w <= 0 || uint64(len(b)-i-w) < n {
			return "", false
		}
		i += w
		v := s[i : i+int(n)]
		i += int(n)
		return v, true
	}
	k := new(catalog.APIKey)
	var tags string
	for _, dst := range []*string{&k.ID, &k.Name, &k.Description, &k.CustomerID, &k.ValueHash, &k.ValuePrefix, &tags} {
		v, ok := str()
		if !ok {
			return nil, errKeyRow
		}
		*dst = v
	}
	if tags != "" {
		if err := json.Unmarshal([]byte(tags), &k.Tags); err != nil {
			return nil, err
		}
	}
	if i >= len(b) {
		return nil, errKeyRow
	}
	k.Enabled = b[i] == 1
	i++
	var w int
	if k.CreatedDate, w = binary.Varint(b[i:]); w <= 0 {
		return nil, errKeyRow
	}
	i += w
	if k.LastUpdatedDate, w = binary.Varint(b[i:]); w <= 0 {
		return nil, errKeyRow
	}
	i += w
	n, w := binary.Uvarint(b[i:])
	if w <= 0 || n > uint64(len(b)) {
		return nil, errKeyRow
	}
	i += w
	k.UsagePlans = make([]string, 0, n)
	for range n {
		v, ok := str()
		if !ok {
			return nil, errKeyRow
		}
		k.UsagePlans = append(k.UsagePlans, v)
	}
	if version == keyVersionRotation {
		for _, dst := range []*string{&k.PreviousValueHash, &k.PreviousValuePrefix} {
			v, ok := str()
			if !ok {
				return nil, errKeyRow
			}
			*dst = v
		}
		if i >= len(b) {
			return nil, errKeyRow
		}
		if k.PreviousValueUntil, w = binary.Varint(b[i:]); w <= 0 {
			return nil, errKeyRow
		}
		i += w
	}
	if i != len(b) {
		return nil, errKeyRow
	}
	return k, nil
}
