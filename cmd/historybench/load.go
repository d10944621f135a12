package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate/internal/benchkit"
	"github.com/tollgate/tollgate/usage/chstore"
)

// retentionLost is what the aggregator logs when the broker deleted
// records it had not stored (aggregator/partition.go).
const retentionLost = "records were deleted by retention before they were aggregated"

// dayResult is one day of the load.
type dayResult struct {
	day      time.Time
	events   int64 // records the day added to the events topic
	expected int64 // events the history has that day
	wall     time.Duration
	use      cpuUse
}

// loadResult is the whole load.
type loadResult struct {
	days           []dayResult
	retentionBytes int64
	peakHeld       int64 // most bytes the events topic held at once
	peakFullest    int64 // most bytes one partition held at once
	trimmed        int64 // records retention deleted (all of them stored first)
	deadLetters    int64
	aggErrors      []string // the aggregator's ERROR lines
}

func (l *loadResult) total() (events, expected int64, wall time.Duration) {
	for _, d := range l.days {
		events += d.events
		expected += d.expected
		wall += d.wall
	}
	return
}

// aggWatch follows the aggregator's log for errors.
type aggWatch struct {
	mu     sync.Mutex
	errors []string
	lost   string // the first retention loss line
}

func (w *aggWatch) line(s string) {
	if !strings.Contains(s, "level=ERROR") {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errors) < 20 {
		w.errors = append(w.errors, s)
	}
	if w.lost == "" && strings.Contains(s, retentionLost) {
		w.lost = s
	}
}

func (w *aggWatch) lostLine() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lost
}

// load writes the history a day at a time and waits after each until the
// aggregator has stored all of it.
func (b *bench) load(ctx context.Context, st *chstore.Store, retention int64) (*loadResult, error) {
	res := &loadResult{retentionBytes: retention}
	watch := &aggWatch{}
	agg, err := b.procs.Start("aggregator", b.cfg.tollgate, []string{"aggregator", "--kafka", b.broker.addr,
		"--clickhouse", b.dsn, "--data-dir", filepath.Join(b.work, "aggregator"), "--raw-retention", "0"},
		benchkit.ChildEnv(), filepath.Join(b.work, "aggregator.log"), watch.line)
	if err != nil {
		return res, err
	}
	defer func() {
		agg.Stop()
		res.aggErrors = watch.errors
	}()
	parts := make([]int, b.cfg.partitions)
	for i := range parts {
		parts[i] = i
	}
	for d := range b.cfg.days {
		day := b.cfg.start.AddDate(0, 0, d)
		r, err := b.loadDay(ctx, st, agg, watch, parts, day, res)
		if err != nil {
			return res, fmt.Errorf("day %s: %w", day.Format("2006-01-02"), err)
		}
		res.days = append(res.days, r)
		events, _, wall := res.total()
		b.logf("day %s: %s events in %.1f s (%s events/s); CPUs busy: clickhouse %.2f, aggregator %.2f, loader %.2f, broker %.2f, machine %.2f of %.0f (others %.2f); total %s events, %s events/s",
			day.Format("2006-01-02"), count(r.events), r.wall.Seconds(), count(int64(float64(r.events)/r.wall.Seconds())),
			r.use.clickhouse, r.use.aggregator, r.use.loader, r.use.broker, r.use.machine, r.use.cpus, r.use.others(),
			count(events), count(int64(float64(events)/wall.Seconds())))
	}
	res.deadLetters = b.broker.deadLetters()
	return res, nil
}

func (b *bench) loadDay(parent context.Context, st *chstore.Store, agg *benchkit.Proc, watch *aggWatch, parts []int, day time.Time, res *loadResult) (dayResult, error) {
	ctx, cancel := context.WithTimeout(parent, b.cfg.dayTimeout)
	defer cancel()
	r := dayResult{day: day, expected: b.cfg.history(day, 1).Total()}
	sum := func(m map[int]int64) (n int64) {
		for _, v := range m {
			n += v
		}
		return n
	}
	before := sum(b.broker.ends())
	s0 := sampleCPU(agg)
	loader, err := b.procs.Start("loader", b.cfg.tollgate, []string{"loadgen", "history", "--kafka", b.broker.addr,
		"--keys", strconv.Itoa(b.cfg.keys), "--days", "1", "--rate", strconv.FormatFloat(b.cfg.rate, 'g', -1, 64),
		"--start", day.Format("2006-01-02"), "--seed", strconv.FormatUint(b.cfg.seed, 10)},
		benchkit.ChildEnv(), filepath.Join(b.work, "loader.log"), nil)
	if err != nil {
		return r, err
	}
	loaded := make(chan error, 1)
	go func() { loaded <- loader.Wait(ctx) }()
	loading := true
	lastCheck, lastNote, lastLossCheck := time.Time{}, time.Now(), time.Time{}
	for {
		all, fullest, trimmed := b.broker.held()
		res.peakHeld, res.peakFullest, res.trimmed = max(res.peakHeld, all), max(res.peakFullest, fullest), trimmed
		if line := watch.lostLine(); line != "" {
			return r, fmt.Errorf("the broker deleted records before the aggregator stored them: %s", line)
		}
		if err := agg.Exited(); err != nil {
			return r, err
		}
		if time.Since(lastLossCheck) >= 5*time.Second {
			lastLossCheck = time.Now()
			if err := b.lostRecords(ctx, st, parts); err != nil {
				return r, err
			}
		}
		if loading {
			select {
			case err := <-loaded:
				if err != nil {
					return r, err
				}
				loading = false
			default:
			}
		}
		// The group's commits are the cheap sign; the watermarks, a scan
		// of usage_events, the proof (and the fallback every 15 s should
		// a commit have failed).
		if !loading && (b.broker.caughtUp() || time.Since(lastCheck) >= 15*time.Second) {
			lastCheck = time.Now()
			done, err := stored(ctx, st, parts, b.broker.ends())
			if err != nil {
				return r, err
			}
			if done {
				break
			}
		}
		if time.Since(lastNote) >= time.Minute {
			lastNote = time.Now()
			b.logf("  %s: %s events written, %s not yet committed by the aggregator, broker holds %.0f MB",
				day.Format("2006-01-02"), count(sum(b.broker.ends())-before), count(b.broker.lag()), float64(all)/1e6)
		}
		select {
		case <-ctx.Done():
			if parent.Err() != nil {
				return r, parent.Err()
			}
			return r, fmt.Errorf("not stored within --day-timeout %v: %s events not yet committed", b.cfg.dayTimeout, count(b.broker.lag()))
		case <-time.After(250 * time.Millisecond):
		}
	}
	s1 := sampleCPU(agg)
	loaderCPU, _ := loader.CPU()
	// Everything written is stored: let retention delete what it may now
	// rather than at kfake's next tick, so that the broker's memory stays
	// bounded by --retention-days whatever the tick's phase.
	b.broker.cluster.ApplyRetention()
	_, _, res.trimmed = b.broker.held()
	r.events = sum(b.broker.ends()) - before
	r.wall = s1.at.Sub(s0.at)
	r.use = useBetween(s0, s1, loaderCPU)
	if r.events != r.expected {
		b.logf("  note: the loader wrote %d records for the day's %d events (producer retries write copies, which the aggregator drops by id)", r.events, r.expected)
	}
	return r, nil
}

// lostRecords fails when the broker has deleted records of a partition
// that the tables do not hold: its log start offset past the partition's
// Watermark.Covered() + 1. The aggregator logs retentionLost too, but
// this check does not depend on its log (aggregators before 973e0f2
// retried the fetch of a deleted offset for ever, silently). The group's
// commits, which lag the store a little, say first whether the
// watermarks need reading.
func (b *bench) lostRecords(ctx context.Context, st *chstore.Store, parts []int) error {
	comm := b.broker.committed()
	starts := map[int]int64{}
	for _, p := range b.broker.partitions() {
		if c, ok := comm[int(p.Partition)]; p.LogStartOffset > 0 && (!ok || p.LogStartOffset > c) {
			starts[int(p.Partition)] = p.LogStartOffset
		}
	}
	if len(starts) == 0 {
		return nil
	}
	wms, err := st.Watermarks(ctx, parts) // read after the log starts: covered can only have grown
	if err != nil {
		return fmt.Errorf("read the watermarks: %w", err)
	}
	for p, start := range starts {
		if covered := wms[p].Covered(); start > covered+1 {
			return fmt.Errorf("the broker deleted records %d to %d of partition %d before the aggregator stored them (retention.bytes too small for the load's pace)",
				covered+1, start-1, p)
		}
	}
	return nil
}

// stored reports whether every table holds every partition up to its
// end (Watermark.Covered() ≥ end - 1).
func stored(ctx context.Context, st *chstore.Store, parts []int, ends map[int]int64) (bool, error) {
	wms, err := st.Watermarks(ctx, parts)
	if err != nil {
		return false, fmt.Errorf("read the watermarks: %w", err)
	}
	for _, p := range parts {
		if wms[p].Covered() < ends[p]-1 {
			return false, nil
		}
	}
	return true, nil
}
