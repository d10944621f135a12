package benchkit

import (
	"slices"
	"testing"
)

func TestLineWriterSplitsLines(t *testing.T) {
	var got []string
	w := &lineWriter{onLine: func(l string) { got = append(got, l) }}
	for _, chunk := range []string{"listening on 127.", "0.0.1:9\r\nsecond\n\nthi", "rd\nunfinis", "hed"} {
		w.Write([]byte(chunk))
	}
	w.end()
	want := []string{"listening on 127.0.0.1:9", "second", "", "third", "unfinished"}
	if !slices.Equal(got, want) {
		t.Errorf("lines = %q, want %q", got, want)
	}
}
