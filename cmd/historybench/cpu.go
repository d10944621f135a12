package main

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/internal/benchkit"
)

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

// cpuSample is the CPU time of the load's processes at one instant.
type cpuSample struct {
	at                     time.Time
	clickhouse, aggregator time.Duration
	self                   time.Duration
	busy, total            time.Duration
}

func sampleCPU(agg *benchkit.Proc) cpuSample {
	s := cpuSample{at: time.Now(), self: selfCPU()}
	for _, pid := range clickhousePIDs() {
		if d, err := benchkit.PIDCPU(pid); err == nil {
			s.clickhouse += d
		}
	}
	if agg != nil {
		s.aggregator, _ = agg.CPU()
	}
	s.busy, s.total, _ = benchkit.MachineCPU()
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
