package benchkit

import (
	"context"
	"errors"
	"os"
	"strconv"
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
	if tasks, total, err := TasksCPU(); err != nil || tasks <= 0 || total < tasks {
		t.Errorf("TasksCPU: %v of %v, %v", tasks, total, err)
	}
}

func TestParseStat(t *testing.T) {
	stat := "4242 (nginx: worker (x)) S 4200 4200 4200 0 -1 4194560 1 0 0 0 250 130 7 3 20 0 40 0 100 0 0"
	got, err := parseStat(stat)
	want := procStat{ppid: 4200, cpu: 3800 * time.Millisecond, reaped: 100 * time.Millisecond}
	if err != nil || got != want {
		t.Fatalf("parseStat = %+v, %v; want %+v", got, err, want)
	}
	if _, err := parseStat("1 (x) S 0 1 1 0 -1 0 0 0 0 0 1 2"); err == nil {
		t.Fatal("no error for a line without cutime and cstime")
	}
}

func TestTreeCPUSumsDescendants(t *testing.T) {
	ms := time.Millisecond
	stats := map[int]procStat{
		10: {ppid: 1, cpu: 5 * ms, reaped: 2 * ms}, // the master, one worker reaped
		11: {ppid: 10, cpu: 100 * ms},              // workers
		12: {ppid: 10, cpu: 200 * ms},
		13: {ppid: 12, cpu: 1 * ms},  // a worker's child
		20: {ppid: 1, cpu: 999 * ms}, // not in the tree
		1:  {ppid: 0, cpu: 50 * ms},
	}
	if got, want := treeCPU(10, stats), 308*ms; got != want {
		t.Errorf("treeCPU(10) = %v, want %v", got, want)
	}
	if got, want := treeCPU(13, stats), 1*ms; got != want {
		t.Errorf("treeCPU(13) = %v, want %v", got, want)
	}
}

// TestTreeCPUOfARealTree runs a shell whose child spins, and finds the
// child's CPU time in the shell's tree but not in the shell's own.
func TestTreeCPUOfARealTree(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pids := make(chan int, 1)
	var ps Procs
	defer ps.StopAll()
	p, err := ps.StartProc(ctx, ProcConfig{Name: "tree", Path: shell(t),
		Args: []string{"-c", `sh -c 'while :; do :; done' & echo $!; wait`},
		OnLine: func(l string) {
			if pid, err := strconv.Atoi(l); err == nil {
				pids <- pid
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	var child int
	select {
	case child = <-pids:
	case <-p.Done():
		t.Fatalf("exited at once\n%s", p.Failure())
	case <-ctx.Done():
		t.Fatal("the child's pid never came")
	}
	for { // until the spinning child has used 50 ms
		d, err := PIDCPU(child)
		if err != nil {
			t.Fatalf("PIDCPU(child): %v", err)
		}
		if d >= 50*time.Millisecond {
			break
		}
		if err := Pause(ctx, 10*time.Millisecond); err != nil {
			t.Fatal("the child did not spin")
		}
	}
	own, err1 := p.CPU()
	tree, err2 := TreeCPU(p.PID())
	childCPU, err3 := PIDCPU(child)
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	if own >= 50*time.Millisecond || tree < childCPU || tree < 50*time.Millisecond {
		t.Errorf("shell's own CPU %v, tree %v, child %v; want the child's time in the tree only", own, tree, childCPU)
	}
	if _, err := TreeCPU(1 << 30); err == nil {
		t.Error("TreeCPU of no process: no error")
	}
	both, err := TreeCPUs(child, p.PID())
	if err != nil || len(both) != 2 || both[0] > both[1] || both[1] < childCPU {
		t.Errorf("TreeCPUs(child, shell) = %v, %v; want the child's time within the shell's", both, err)
	}
}
