package catalog

import (
	"bytes"

	"github.com/tollgate/tollgate/schemas"
)

// A large log is almost all keys and memberships, written by the admin
// API: plain records. decodePlain reads those, without reflection and
// with few allocations (a membership's ids share the record key's
// memory), a few times faster than encoding/json. It reads a strict
// subset of JSON: printable ASCII strings without escapes, integers
// without fraction or exponent, every member known and present once,
// nothing after the record. Anything else it leaves to decodeFast and
// decodeSlow; what it reads, they read the same
// (TestPlainDecodingMatchesJSON, FuzzPlainDecoding).

// decodePlain decodes a plain apiKey or usagePlanKey record (ok false:
// not one).
func decodePlain(key, value []byte) (*decodedRecord, bool) {
	if value == nil {
		return nil, false
	}
	slash := bytes.IndexByte(key, '/')
	if slash < 0 || slash == len(key)-1 {
		return nil, false
	}
	switch string(key[:slash]) {
	case schemas.KindAPIKey, schemas.KindUsagePlanKey:
	default:
		return nil, false
	}
	k := string(key)
	d := &decodedRecord{logKey: k, kind: k[:slash], id: k[slash+1:]}
	p := plainJSON{b: value}
	var seen uint8
	ok := p.object(func(name []byte) bool {
		var bit uint8
		ok := false
		switch string(name) {
		case "type":
			v, vok := p.str()
			bit, ok = 1, vok && string(v) == schemas.EventTypeConfig
		case "kind":
			v, vok := p.str()
			bit, ok = 2, vok && string(v) == d.kind
		case "id":
			v, vok := p.str()
			bit, ok = 4, vok && string(v) == d.id
		case "entity":
			bit = 8
			switch {
			case p.lit("null"):
				d.tomb, ok = true, true
			case d.kind == schemas.KindAPIKey:
				d.key, ok = p.apiKey(d.id)
			default:
				d.member, ok = p.planKey(d.id)
			}
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return ok
	})
	p.ws()
	if !ok || seen != 15 || p.i != len(p.b) {
		return nil, false
	}
	return d, true
}

// plainJSON reads the strict subset of JSON decodePlain accepts.
type plainJSON struct {
	b []byte
	i int
}

func (p *plainJSON) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// next consumes c, the next byte but for white space.
func (p *plainJSON) next(c byte) bool {
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// lit consumes a literal (null, true, false).
func (p *plainJSON) lit(s string) bool {
	p.ws()
	if bytes.HasPrefix(p.b[p.i:], []byte(s)) {
		p.i += len(s)
		return true
	}
	return false
}

// str returns the contents of a string of printable ASCII without
// escapes (they are the same bytes as the string it stands for).
func (p *plainJSON) str() ([]byte, bool) {
	if !p.next('"') {
		return nil, false
	}
	for j := p.i; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			s := p.b[p.i:j]
			p.i = j + 1
			return s, true
		case c < 0x20 || c > 0x7e || c == '\\':
			return nil, false
		}
	}
	return nil, false
}

// int64 reads an integer without fraction or exponent that fits.
func (p *plainJSON) int64() (int64, bool) {
	p.ws()
	neg := p.i < len(p.b) && p.b[p.i] == '-'
	if neg {
		p.i++
	}
	start := p.i
	var n uint64
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		if n > (1<<63)/10 {
			return 0, false
		}
		n = n*10 + uint64(p.b[p.i]-'0')
		p.i++
	}
	digits := p.i - start
	// A fraction or an exponent that follows is no member's end: the
	// object is not read.
	switch {
	case digits == 0, digits > 1 && p.b[start] == '0':
		return 0, false
	case neg && n <= 1<<63:
		return -int64(n), true
	case !neg && n < 1<<63:
		return int64(n), true
	}
	return 0, false
}

// object reads an object, calling member for each member's name with
// the reader at its value, which member consumes.
func (p *plainJSON) object(member func(name []byte) bool) bool {
	if !p.next('{') {
		return false
	}
	if p.next('}') {
		return true
	}
	for {
		name, ok := p.str()
		if !ok || !p.next(':') || !member(name) {
			return false
		}
		if p.next('}') {
			return true
		}
		if !p.next(',') {
			return false
		}
	}
}

// apiKey reads a key's entity; id is the record's, shared when the
// entity's is the same.
func (p *plainJSON) apiKey(id string) (*APIKey, bool) {
	k := new(APIKey)
	var seen uint16
	ok := p.object(func(name []byte) bool {
		var (
			bit uint16
			dst *string
			ok  bool
		)
		switch string(name) {
		case "id":
			bit = 1 << 0
			v, vok := p.str()
			if ok = vok; ok && string(v) == id {
				k.ID = id
			} else {
				k.ID = string(v)
			}
		case "name":
			bit, dst = 1<<1, &k.Name
		case "description":
			bit, dst = 1<<2, &k.Description
		case "customerId":
			bit, dst = 1<<3, &k.CustomerID
		case "valueHash":
			bit, dst = 1<<4, &k.ValueHash
		case "valuePrefix":
			bit, dst = 1<<5, &k.ValuePrefix
		case "enabled":
			bit = 1 << 6
			k.Enabled = p.lit("true")
			ok = k.Enabled || p.lit("false")
		case "createdDate":
			bit = 1 << 7
			k.CreatedDate, ok = p.int64()
		case "lastUpdatedDate":
			bit = 1 << 8
			k.LastUpdatedDate, ok = p.int64()
		case "tags":
			bit = 1 << 9
			if ok = p.lit("null"); !ok {
				k.Tags = map[string]string{}
				ok = p.object(func(tag []byte) bool {
					v, ok := p.str()
					k.Tags[string(tag)] = string(v)
					return ok
				})
			}
		case "usagePlans":
			// Memberships are records of their own: read, not kept.
			bit, ok = 1<<10, p.lit("null") || p.strings()
		case "previousValueHash":
			bit, dst = 1<<11, &k.PreviousValueHash
		case "previousValuePrefix":
			bit, dst = 1<<12, &k.PreviousValuePrefix
		case "previousValueUntil":
			bit = 1 << 13
			k.PreviousValueUntil, ok = p.int64()
		}
		if dst != nil {
			v, vok := p.str()
			*dst, ok = string(v), vok
		}
		if seen&bit != 0 || bit == 0 {
			return false
		}
		seen |= bit
		return ok
	})
	return k, ok
}

// strings reads an array of strings.
func (p *plainJSON) strings() bool {
	if !p.next('[') {
		return false
	}
	if p.next(']') {
		return true
	}
	for {
		if _, ok := p.str(); !ok {
			return false
		}
		if p.next(']') {
			return true
		}
		if !p.next(',') {
			return false
		}
	}
}

// planKey reads a membership's entity; when it matches the record id
// (planID/keyID), its ids share the id's memory.
func (p *plainJSON) planKey(id string) (planKeyEntity, bool) {
	var plan, key []byte
	var seen uint8
	ok := p.object(func(name []byte) bool {
		var (
			bit uint8
			ok  bool
		)
		switch string(name) {
		case "usagePlanId":
			bit = 1
			plan, ok = p.str()
		case "keyId":
			bit = 2
			key, ok = p.str()
		}
		if seen&bit != 0 || bit == 0 {
			return false
		}
		seen |= bit
		return ok
	})
	if !ok {
		return planKeyEntity{}, false
	}
	if n := len(plan); len(id) == n+1+len(key) && id[:n] == string(plan) && id[n] == '/' && id[n+1:] == string(key) {
		return planKeyEntity{UsagePlanID: id[:n], KeyID: id[n+1:]}, true
	}
	return planKeyEntity{UsagePlanID: string(plan), KeyID: string(key)}, true
}
