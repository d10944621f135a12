package ingest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/internal/atomicfile"
	"github.com/tollgate/tollgate/schemas"
)

// The config log's snapshot: where the view stopped in the topic, and
// the view itself in catalog's binary form (catalog.ViewSnapshot), which
// loads a million keys in a few seconds where replaying their records
// would cost a first start's time:
//
//	"tollgate config snapshot 2\n"
//	header length (4 bytes, little-endian), header (JSON), CRC-32C of
//	the header (4 bytes, little-endian)
//	the view snapshot (checksummed itself)
//
// Snapshots of earlier versions (one JSON document of records) are
// still read, once, by replaying their records.

var configSnapshotMagic = []byte("tollgate config snapshot 2\n")

// configSnapshotHeader says where the view of a snapshot stopped.
type configSnapshotHeader struct {
	Topic   string     `json:"topic"`
	Next    int64      `json:"next"`
	Last    lastRecord `json:"last"`
	SavedAt time.Time  `json:"savedAt"`
	Keys    int        `json:"keys"`
}

// writeConfigSnapshot replaces the snapshot at path: written to a
// temporary file, synced, renamed.
func writeConfigSnapshot(path string, h *configSnapshotHeader, view *catalog.ViewSnapshot) error {
	hb, err := json.Marshal(h)
	if err != nil {
		return err
	}
	err = atomicfile.Replace(path, func(f io.Writer) error {
		w := bufio.NewWriterSize(f, 1<<20)
		var n [4]byte
		w.Write(configSnapshotMagic)
		binary.LittleEndian.PutUint32(n[:], uint32(len(hb)))
		w.Write(n[:])
		w.Write(hb)
		binary.LittleEndian.PutUint32(n[:], crc32.Checksum(hb, crcTable))
		w.Write(n[:])
		if _, err := view.WriteTo(w); err != nil {
			return err
		}
		return w.Flush()
	})
	if err != nil {
		return fmt.Errorf("write catalog snapshot %s: %w", path, err)
	}
	return nil
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errNoSnapshot: no snapshot configured, or none written yet.
var errNoSnapshot = errors.New("no catalog snapshot")

// readConfigSnapshot reads the snapshot at path: its header and view.
func readConfigSnapshot(path string) (*configSnapshotHeader, *catalog.View, error) {
	if path == "" {
		return nil, nil, errNoSnapshot
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, errNoSnapshot
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read catalog snapshot: %w", err)
	}
	defer f.Close()
	bad := func(err error) error {
		return fmt.Errorf("read catalog snapshot %s: %w (delete it to rebuild from Kafka)", path, err)
	}
	magic := make([]byte, len(configSnapshotMagic))
	if _, err := io.ReadFull(f, magic); err != nil || !bytes.Equal(magic, configSnapshotMagic) {
		if len(magic) > 0 && magic[0] == '{' {
			h, v, err := readLegacySnapshot(path)
			if err != nil {
				return nil, nil, bad(err)
			}
			return h, v, nil
		}
		return nil, nil, bad(errors.New("not a catalog snapshot"))
	}
	var n [4]byte
	if _, err := io.ReadFull(f, n[:]); err != nil {
		return nil, nil, bad(err)
	}
	size := binary.LittleEndian.Uint32(n[:])
	if size > 1<<20 {
		return nil, nil, bad(errors.New("header too long"))
	}
	hb := make([]byte, size)
	if _, err := io.ReadFull(f, hb); err != nil {
		return nil, nil, bad(err)
	}
	if _, err := io.ReadFull(f, n[:]); err != nil {
		return nil, nil, bad(err)
	}
	if crc32.Checksum(hb, crcTable) != binary.LittleEndian.Uint32(n[:]) {
		return nil, nil, bad(errors.New("header checksum mismatch"))
	}
	var h configSnapshotHeader
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, nil, bad(err)
	}
	v, err := catalog.ReadView(f)
	if err != nil {
		return nil, nil, bad(err)
	}
	return &h, v, nil
}

// readLegacySnapshot reads a snapshot of the JSON form earlier versions
// wrote, replaying its records.
func readLegacySnapshot(path string) (*configSnapshotHeader, *catalog.View, error) {
	var s struct {
		configSnapshotHeader
		Records []struct {
			Offset int64           `json:"offset"`
			Value  json.RawMessage `json:"value"`
		} `json:"records"`
	}
	if ok, err := readSnapshot(path, "catalog", &s); !ok {
		return nil, nil, err
	}
	v := catalog.NewView()
	for _, r := range s.Records {
		var rec schemas.ConfigRecord
		if err := schemas.DecodeConfigRecord(r.Value, &rec); err != nil {
			return nil, nil, err
		}
		if err := v.Apply(r.Offset, []byte(rec.Key()), r.Value); err != nil {
			return nil, nil, err
		}
	}
	return &s.configSnapshotHeader, v, nil
}

// ReadCatalogSnapshot returns the catalog that the config log's snapshot
// at path holds (ConfigLogConfig.Snapshot), and the offset of the topic
// it reached: for tools and tests.
func ReadCatalogSnapshot(path string) (*catalog.State, int64, error) {
	h, v, err := readConfigSnapshot(path)
	if err != nil {
		return nil, 0, err
	}
	return v.State(), h.Next, nil
}
