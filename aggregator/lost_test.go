package aggregator

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/tollgate/tollgate/aggregator/aggstore"
	"github.com/tollgate/tollgate/ingest"
	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/internal/utc"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
	"github.com/tollgate/tollgate/usage/chstore"
)

// reportLost writes lost-usage records as an enforcer does
// (ingest.LostProducer).
func (r *rig) reportLost(lost ...schemas.LostUsage) {
	r.t.Helper()
	p := ingest.NewLostProducer(r.k)
	defer p.Close()
	if err := p.ReportLost(context.Background(), lost); err != nil {
		r.t.Fatal(err)
	}
}

// lostRows reads lost_usage's report of every day.
func (r *rig) lostRows() []usage.LostRow {
	r.t.Helper()
	rows, err := r.direct.Lost(context.Background(), usage.MinDay, usage.MaxDay, "", "")
	if err != nil {
		r.t.Fatal(err)
	}
	return rows
}

// waitLost waits until the aggregators' stats say they stored records
// records of the lost-usage topic between them.
func waitLost(t *testing.T, records uint64, runs ...*aggregatorRun) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n uint64
		for _, run := range runs {
			n = max(n, run.a.Stats().LostRecords)
		}
		if n >= records {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("aggregators stored %d lost-usage records in 30s, want %d", n, records)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The lost-usage topic reaches the store: its records summed per day,
// key, plan, node and reason, a queue-full record (no times) on the day
// it was produced; a record that does not decode goes to the dead-letter
// topic, naming the lost-usage topic, and the records after it still
// arrive; the metrics count them. An aggregator started again, and two
// at once, read nothing twice: the store's offsets say where to resume,
// and a record two of them store counts once.
func TestLostUsageIsStoredOnce(t *testing.T) {
	r := newRigN(t, 2)
	ctx := context.Background()
	at := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC).UnixNano()
	day := utc.Day(at)
	spill := func(key string, n, admitted int64) schemas.LostUsage {
		return schemas.LostUsage{Node: "edge1", KeyID: key, PlanID: "p1", APIID: "api", Stage: "prod", Count: n, Admitted: admitted,
			From: at, To: at + int64(time.Minute), Reason: schemas.LostSpillFull}
	}
	r.reportLost(spill("k1", 10, 8), spill("k2", 3, 3))
	w := &kafka.Writer{Addr: kafka.TCP(r.k.Brokers...), Topic: r.k.Topics().LostUsage, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	if err := w.WriteMessages(ctx, kafka.Message{Key: []byte("k1"), Value: []byte(`{"type":"tollgate.lost_usage.v1","count":-5}`)}); err != nil {
		t.Fatal(err)
	}
	r.reportLost(spill("k1", 5, 5), schemas.LostUsage{Node: "edge2", Count: 40, Reason: schemas.LostQueueFull})
	today := utc.Day(time.Now().UnixNano())

	reg := prometheus.NewRegistry()
	a := r.start(Config{Metrics: reg})
	waitLost(t, 4, a)
	want := []usage.LostRow{
		{Day: day, KeyID: "k1", PlanID: "p1", Node: "edge1", Reason: schemas.LostSpillFull, Requests: 15, Admitted: 13},
		{Day: day, KeyID: "k2", PlanID: "p1", Node: "edge1", Reason: schemas.LostSpillFull, Requests: 3, Admitted: 3},
		{Day: today, Node: "edge2", Reason: schemas.LostQueueFull, Requests: 40},
	}
	if got := r.lostRows(); !slices.Equal(got, want) {
		t.Fatalf("lost usage stored:\n%+v\nwant\n%+v", got, want)
	}
	if st := a.a.Stats(); st.LostRecords != 4 || st.LostRequests != 58 || st.Poison != 1 || st.DeadLetterFailures != 0 {
		t.Errorf("stats %+v, want 4 lost records of 58 requests, 1 poison record sent", st)
	}
	m := promtest.Gather(t, reg)
	if m["tollgate_aggregator_lost_requests_total"] != 58 || m["tollgate_aggregator_lost_records_total"] != 4 || m["tollgate_aggregator_dead_letters_total"] != 1 {
		t.Errorf("metrics %v, want lost requests 58, lost records 4, dead letters 1", m.With("tollgate_aggregator_"))
	}
	dlq := kafka.NewReader(kafka.ReaderConfig{Brokers: r.k.Brokers, Topic: r.k.Topics().DeadLetter, Partition: 0, MaxWait: 50 * time.Millisecond})
	defer dlq.Close()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	msg, err := dlq.ReadMessage(rctx)
	cancel()
	if err != nil {
		t.Fatalf("dead letter: %v", err)
	}
	headers := map[string]string{}
	for _, h := range msg.Headers {
		headers[h.Key] = string(h.Value)
	}
	if headers[HeaderSourceTopic] != r.k.Topics().LostUsage || headers[HeaderSourceOffset] != "2" || headers[HeaderError] == "" {
		t.Errorf("dead letter headers %v, want the lost-usage topic, offset 2 and a reason", headers)
	}
	a.stop(t)

	// Two more, read by two aggregators at once, both started after the
	// first stopped: neither reads the first five records again.
	r.reportLost(spill("k2", 7, 0), spill("k3", 1, 1))
	b := r.start(Config{Name: "b"})
	defer b.stop(t)
	c := r.start(Config{Name: "c"})
	defer c.stop(t)
	waitLost(t, 2, b, c)
	time.Sleep(500 * time.Millisecond) // the other one's insert, if it read them too
	want = []usage.LostRow{want[0],
		{Day: day, KeyID: "k2", PlanID: "p1", Node: "edge1", Reason: schemas.LostSpillFull, Requests: 10, Admitted: 3},
		{Day: day, KeyID: "k3", PlanID: "p1", Node: "edge1", Reason: schemas.LostSpillFull, Requests: 1, Admitted: 1},
		want[2]}
	if got := r.lostRows(); !slices.Equal(got, want) {
		t.Fatalf("lost usage stored after the restart:\n%+v\nwant\n%+v", got, want)
	}
	for _, run := range []*aggregatorRun{b, c} {
		if st := run.a.Stats(); st.LostRecords > 2 || st.Poison != 0 {
			t.Errorf("restarted aggregator %s: stats %+v, want at most the 2 new records and no dead letter", run.a.cfg.Name, st)
		}
	}
	rctx, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
	if msg, err := dlq.ReadMessage(rctx); err == nil {
		t.Errorf("a second dead letter after the restart: %+v", msg)
	}
	cancel()
}

// lostReplies is a store whose first InsertLost calls land but answer an
// error, as an insert whose reply was lost.
type lostReplies struct {
	*chstore.Store
	fail atomic.Int64
}

func (s *lostReplies) InsertLost(ctx context.Context, recs []aggstore.LostRecord) error {
	if err := s.Store.InsertLost(ctx, recs); err != nil {
		return err
	}
	if s.fail.Add(-1) >= 0 {
		return errors.New("connection reset: the reply was lost")
	}
	return nil
}

// An insert of lost usage whose reply was lost is retried (with
// backoff), and the records it wrote twice count once.
func TestLostUsageInsertRetriedAfterALostReply(t *testing.T) {
	r := newRigN(t, 1)
	store := &lostReplies{Store: r.direct}
	store.fail.Store(2)
	r.reportLost(schemas.LostUsage{Node: "edge1", KeyID: "k1", PlanID: "p1", Count: 9, Admitted: 4, From: 1e18, To: 1e18,
		Reason: schemas.LostSpillFull})
	a := r.start(Config{Store: store})
	defer a.stop(t)
	waitLost(t, 1, a)
	want := []usage.LostRow{{Day: utc.Day(1e18), KeyID: "k1", PlanID: "p1", Node: "edge1", Reason: schemas.LostSpillFull, Requests: 9, Admitted: 4}}
	if got := r.lostRows(); !slices.Equal(got, want) {
		t.Errorf("lost usage stored: %+v, want %+v", got, want)
	}
	if st := a.a.Stats(); st.InsertFailures != 2 || st.LostRecords != 1 || st.LostRequests != 9 {
		t.Errorf("stats %+v, want 2 insert failures, then 1 record of 9 requests", st)
	}
}
