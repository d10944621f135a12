package benchkit

import "testing"

func TestListenLine(t *testing.T) {
	tests := []struct {
		name     string
		line     string
		wantKind string
		wantAddr string
		wantOK   bool
	}{
		{
			name:     "gateway",
			line:     `time=2025-01-02T03:04:05.678Z level=INFO msg="gateway listening" addr=127.0.0.1:40123`,
			wantKind: "gateway", wantAddr: "127.0.0.1:40123", wantOK: true,
		},
		{
			name:     "admin with more attributes after",
			line:     `time=2025-01-02T03:04:05.678Z level=INFO msg="admin listening" addr=127.0.0.1:40124 tls=false`,
			wantKind: "admin", wantAddr: "127.0.0.1:40124", wantOK: true,
		},
		{
			name:     "quoted address, attributes before",
			line:     `time=x level=INFO component=gw msg="gateway listening" addr="[::1]:8080"`,
			wantKind: "gateway", wantAddr: "[::1]:8080", wantOK: true,
		},
		{
			name:     "attributes between message and address",
			line:     `time=x level=INFO msg="admin listening" component=reportapi addr=127.0.0.1:1`,
			wantKind: "admin", wantAddr: "127.0.0.1:1", wantOK: true,
		},
		{
			name: "other message",
			line: `time=x level=INFO msg="catalog loaded" apis=1 addr=127.0.0.1:1`,
		},
		{
			name: "message in another attribute",
			line: `time=x level=WARN msg=retry err="gateway listening" addr=127.0.0.1:1`,
		},
		{
			name: "no address",
			line: `time=x level=INFO msg="gateway listening"`,
		},
		{
			name: "not logfmt",
			line: `panic: runtime error: invalid memory address`,
		},
		{
			name: "unterminated quote",
			line: `time=x msg="gateway listening addr=127.0.0.1:1`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind, addr, ok := ListenLine(tt.line)
			if kind != tt.wantKind || addr != tt.wantAddr || ok != tt.wantOK {
				t.Errorf("ListenLine() = %q, %q, %v; want %q, %q, %v", kind, addr, ok, tt.wantKind, tt.wantAddr, tt.wantOK)
			}
		})
	}
}

func TestParseLogfmt(t *testing.T) {
	line := `time=t level=INFO msg="a \"quoted\" = value" empty= n=3 bare`
	got := ParseLogfmt(line)
	want := map[string]string{"time": "t", "level": "INFO", "msg": `a "quoted" = value`, "empty": "", "n": "3"}
	if len(got) != len(want) {
		t.Fatalf("ParseLogfmt() = %q, want %q", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("ParseLogfmt()[%q] = %q, want %q", k, got[k], v)
		}
		if f, ok := LogField(line, k); !ok || f != v {
			t.Errorf("LogField(%q) = %q, %v; want %q", k, f, ok, v)
		}
	}
	if _, ok := LogField(line, "bare"); ok {
		t.Error("LogField found a bare word")
	}
}
