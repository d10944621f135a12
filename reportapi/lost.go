package reportapi

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/tollgate/tollgate/internal/utc"
	"github.com/tollgate/tollgate/usage"
)

// LostStore reports the usage enforcers said they dropped (the
// lost-usage topic, which the aggregators keep: usage/chstore). A
// MinuteStore that is also a LostStore answers /v1/usage/lost; others
// answer 501.
type LostStore interface {
	Lost(ctx context.Context, fromDay, toDay int64, keyID, planID string) ([]usage.LostRow, error)
}

// errNoLostUsage is /v1/usage/lost's answer on a store that keeps no lost
// usage: the embedded store (usage/sqlitestore).
var errNoLostUsage = &apiError{status: http.StatusNotImplemented, errType: "NotImplementedException",
	msg: "this report API's usage store keeps no lost usage: serve writes events straight to its own store, with no lost-usage topic, " +
		"and a report API without --clickhouse loads only the events topic; in a fleet the aggregators keep the lost-usage topic in ClickHouse: ask a report API run with --clickhouse"}

// lostRow is one row of /v1/usage/lost.
type lostRow struct {
	Day      string `json:"day"`
	KeyID    string `json:"key_id"`
	PlanID   string `json:"plan_id"`
	Node     string `json:"node"`
	Reason   string `json:"reason"`
	Requests int64  `json:"requests"`
	Admitted int64  `json:"admitted"`
}

// lost answers /v1/usage/lost?from=&to=[&keyId=][&planId=][&format=]:
// the requests enforcers reported they dropped the usage events of (their
// spill log or queue full), per UTC day, key, plan, enforcer and reason,
// and how many of them were admitted (quota used that /v1/usage, GetUsage
// and billing do not show). The range is /v1/usage's (from and to, at
// most 92 days); losses are dated by day (a record covers a span of
// time), so the answer holds every UTC day the range touches. keyId and
// planId are ids, matched as they are: a loss may name a key or plan
// deleted since, and a queue-full loss names neither (the enforcer counts
// those per node only).
func (n *native) lost(w http.ResponseWriter, r *http.Request) {
	ls, ok := n.minutes.(LostStore)
	if !ok {
		errNoLostUsage.write(w)
		return
	}
	q := r.URL.Query()
	u, perr := parseRange(q.Get, n.now())
	if perr == nil {
		perr = checkSpan(u, maxSpan["day"], "/v1/usage/lost")
	}
	if perr != nil {
		perr.write(w)
		return
	}
	format, perr := outputFormat(r)
	if perr != nil {
		perr.write(w)
		return
	}
	fromDay, toDay := utc.Day(u.from.UnixNano()), utc.Day(u.to.UnixNano()-1)
	rows, err := ls.Lost(r.Context(), fromDay, toDay, q.Get("keyId"), q.Get("planId"))
	if err != nil {
		internalError("read lost usage: ", err).write(w)
		return
	}
	out := make([]lostRow, len(rows))
	var requests, admitted int64
	for i, l := range rows {
		out[i] = lostRow{Day: usage.FormatDay(l.Day), KeyID: l.KeyID, PlanID: l.PlanID, Node: l.Node, Reason: l.Reason,
			Requests: l.Requests, Admitted: l.Admitted}
		requests += l.Requests
		admitted += l.Admitted
	}
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	switch format {
	case "csv":
		w.Header().Set("Content-Type", "text/csv")
		cw := csv.NewWriter(bw)
		cw.Write([]string{"day", "key_id", "plan_id", "node", "reason", "requests", "admitted"})
		for _, l := range out {
			cw.Write([]string{l.Day, l.KeyID, l.PlanID, l.Node, l.Reason, strconv.FormatInt(l.Requests, 10), strconv.FormatInt(l.Admitted, 10)})
		}
		cw.Flush()
	case "ndjson":
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(bw)
		for _, l := range out {
			enc.Encode(l)
		}
	default:
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(bw, `{"from":%q,"to":%q,"requests":%d,"admitted":%d,"rows":`, u.from.UTC().Format(time.RFC3339), u.to.UTC().Format(time.RFC3339),
			requests, admitted)
		json.NewEncoder(bw).Encode(out)
		bw.WriteString("}\n")
	}
}
