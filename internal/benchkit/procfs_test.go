package benchkit

import (
	"os"
	"testing"
	"time"
)

func TestStatCPU(t *testing.T) {
	stat := "4242 (clickhouse-serv (x)) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 130 0 0 20 0 40 0 100 0 0"
	d, err := statCPU(stat)
	if err != nil || d != 3800*time.Millisecond {
		t.Fatalf("statCPU: %v, %v; want 3.8s", d, err)
	}
	if _, err := statCPU("garbage"); err == nil {
		t.Fatal("no error for a line without a command name")
	}
}

func TestOwnProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	if _, err := PIDCPU(os.Getpid()); err != nil {
		t.Errorf("PIDCPU: %v", err)
	}
	if rss, err := PIDRSS(os.Getpid()); err != nil || rss <= 0 {
		t.Errorf("PIDRSS: %d, %v", rss, err)
	}
	if busy, total, err := MachineCPU(); err != nil || busy <= 0 || total < busy {
		t.Errorf("MachineCPU: %v of %v, %v", busy, total, err)
	}
}
