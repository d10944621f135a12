package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// userHZ is the unit of /proc's CPU times (USER_HZ, 100 on Linux).
const userHZ = 100

func ticks(n int64) time.Duration { return time.Duration(n) * time.Second / userHZ }

// pidCPU is the CPU time (user + system) process pid has used, from
// /proc/<pid>/stat.
func pidCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return statCPU(string(b))
}

// statCPU reads utime and stime (fields 14 and 15) of a /proc/<pid>/stat
// line; the command name (field 2) may hold spaces and parentheses, so
// the fields are counted from its last ')'.
func statCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("/proc stat: no command name")
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, errors.New("/proc stat: too few fields")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc stat: %w", err)
	}
	return ticks(utime + stime), nil
}

// clickhousePIDs are the processes named clickhouse-server (their
// command name, as /proc/<pid>/comm cuts it to 15 bytes).
func clickhousePIDs() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(comm)), "clickhouse-serv") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// selfCPU is the CPU time this process (the broker, and the benchmark's
// polling) has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineCPU is the machine's CPU time, busy and in all, from the first
// line of /proc/stat (summed over its CPUs).
func machineCPU() (busy, total time.Duration, err error) {
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

// cpuSample is the CPU time of the load's processes at one instant.
type cpuSample struct {
	at                     time.Time
	clickhouse, aggregator time.Duration
	self                   time.Duration
	busy, total            time.Duration
}

func sampleCPU(agg *proc) cpuSample {
	s := cpuSample{at: time.Now(), self: selfCPU()}
	for _, pid := range clickhousePIDs() {
		if d, err := pidCPU(pid); err == nil {
			s.clickhouse += d
		}
	}
	if agg != nil {
		s.aggregator, _ = agg.cpu()
	}
	s.busy, s.total, _ = machineCPU()
	return s
}

// cpuUse is how many CPUs each process kept busy over an interval (CPU
// time / wall time), and the machine in all.
type cpuUse struct {
	clickhouse, aggregator, loader, broker float64
	machine                                float64 // busy CPUs of the whole machine
	cpus                                   float64 // CPUs the machine has (total / wall)
}

func useBetween(a, b cpuSample, loader time.Duration) cpuUse {
	wall := b.at.Sub(a.at).Seconds()
	if wall <= 0 {
		return cpuUse{}
	}
	per := func(d time.Duration) float64 { return d.Seconds() / wall }
	return cpuUse{clickhouse: per(b.clickhouse - a.clickhouse), aggregator: per(b.aggregator - a.aggregator),
		loader: per(loader), broker: per(b.self - a.self), machine: per(b.busy - a.busy), cpus: per(b.total - a.total)}
}

// others is the busy CPUs the load's processes do not account for: other
// work on the machine.
func (u cpuUse) others() float64 {
	return max(u.machine-u.clickhouse-u.aggregator-u.loader-u.broker, 0)
}
