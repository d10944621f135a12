package benchkit

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of /proc's CPU times (USER_HZ, 100 on Linux).
const userHZ = 100

func ticks(n int64) time.Duration { return time.Duration(n) * time.Second / userHZ }

// PIDCPU is the CPU time (user + system) process pid has used, from
// /proc/<pid>/stat.
func PIDCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return statCPU(string(b))
}

// statCPU reads utime and stime (fields 14 and 15) of a /proc/<pid>/stat
// line.
func statCPU(stat string) (time.Duration, error) {
	s, err := parseStat(stat)
	return s.cpu, err
}

// procStat is what this package reads of a /proc/<pid>/stat line.
type procStat struct {
	ppid int
	// cpu is utime + stime: the process's own CPU time, all its threads.
	cpu time.Duration
	// reaped is cutime + cstime: the CPU time of its children that have
	// exited and been waited for.
	reaped time.Duration
}

// parseStat reads a /proc/<pid>/stat line; the command name (field 2) may
// hold spaces and parentheses, so the fields are counted from its last
// ')'.
func parseStat(stat string) (procStat, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return procStat{}, errors.New("/proc stat: no command name")
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3 (state)
	if len(f) < 15 {
		return procStat{}, errors.New("/proc stat: too few fields")
	}
	var v [5]int64 // ppid (field 4), utime, stime, cutime, cstime (14-17)
	var errs []error
	for j, k := range [5]int{1, 11, 12, 13, 14} {
		var err error
		v[j], err = strconv.ParseInt(f[k], 10, 64)
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return procStat{}, fmt.Errorf("/proc stat: %w", err)
	}
	return procStat{ppid: int(v[0]), cpu: ticks(v[1] + v[2]), reaped: ticks(v[3] + v[4])}, nil
}

// TreeCPU is the CPU time (user + system) process pid and all its
// descendants have used: each one's own time and that of its children
// already reaped (cutime + cstime), from /proc/*/stat. A server made of
// processes, such as nginx's master and workers, is measured whole this
// way; a worker that exits and is reaped between two readings moves its
// time into its parent's reaped time, so the sum never goes back.
func TreeCPU(pid int) (time.Duration, error) {
	d, err := TreeCPUs(pid)
	if err != nil {
		return 0, err
	}
	return d[0], nil
}

// TreeCPUs is TreeCPU of each of pids, read from one pass over /proc.
func TreeCPUs(pids ...int) ([]time.Duration, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	stats := map[int]procStat{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue // not a process
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // it exited since the listing
		}
		if s, err := parseStat(string(b)); err == nil {
			stats[p] = s
		}
	}
	out := make([]time.Duration, len(pids))
	for i, pid := range pids {
		if _, ok := stats[pid]; !ok {
			return nil, fmt.Errorf("process %d: not in /proc", pid)
		}
		out[i] = treeCPU(pid, stats)
	}
	return out, nil
}

// treeCPU sums the CPU time of pid and its descendants in stats.
func treeCPU(pid int, stats map[int]procStat) time.Duration {
	children := map[int][]int{}
	for p, s := range stats {
		children[s.ppid] = append(children[s.ppid], p)
	}
	var sum time.Duration
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		sum += stats[p].cpu + stats[p].reaped
		queue = append(queue, children[p]...)
	}
	return sum
}

// MachineCPU is the machine's CPU time, busy and in all, from the first
// line of /proc/stat (summed over its CPUs).
func MachineCPU() (busy, total time.Duration, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0, errors.New("/proc/stat: no cpu line")
	}
	var v [10]int64
	for i := 1; i < len(f) && i <= len(v); i++ {
		v[i-1], _ = strconv.ParseInt(f[i], 10, 64)
	}
	// user nice system idle iowait irq softirq steal (guest time is in user)
	idle := v[3] + v[4]
	all := v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7]
	return ticks(all - idle), ticks(all), nil
}

// TasksCPU is the CPU time the machine's processes used, all of them:
// user, nice and system time from the first line of /proc/stat (summed
// over its CPUs), and the machine's time in all. Interrupt time, which
// the kernel charges to no process (loopback packets are mostly handled
// in softirq), is left out of the first, so that it compares with the
// processes' own times (TreeCPU).
func TasksCPU() (tasks, total time.Duration, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, errors.New("/proc/stat: no cpu line")
	}
	var v [8]int64 // user nice system idle iowait irq softirq steal
	for i := range v {
		v[i], _ = strconv.ParseInt(f[i+1], 10, 64)
	}
	return ticks(v[0] + v[1] + v[2]), ticks(v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7]), nil
}

// PIDRSS is process pid's resident set size (VmRSS of
// /proc/<pid>/status), in bytes.
func PIDRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("read RSS: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("read RSS: %q: %w", line, err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("read RSS: no VmRSS line")
}
