// Package loadgen is a lean closed-loop HTTP/1.1 load generator, in the
// manner of wrk: a fixed number of keep-alive TCP connections, each with
// exactly one request in flight, sending the same prebuilt request again as
// soon as the previous response has been read in full.
//
// It speaks HTTP/1.1 over a raw net.Conn rather than through net/http so
// that the generator costs the machine as little as possible and allocates
// nothing per request: the request bytes are built once, responses are
// parsed in place from a bufio.Reader (status line, headers, then a body
// framed by Content-Length, chunked transfer-encoding, or connection close),
// and latencies go into a fixed log-linear Histogram.
//
// With Config.Rate set, the run is paced instead: every connection sends
// on a fixed schedule, so that the server sees a steady, moderate rate
// and the latency is the server's, not the queue's that a saturating
// closed loop builds (see Config.Rate for how a late slot is handled).
//
// A run has a warm-up period, whose responses are not counted, then a
// measured period; every read and write carries a deadline that never goes
// past the end of the run, so Run always returns on time. A connection the
// server closes (Connection: close, or an abrupt close) is dialled again.
//
//	g, err := loadgen.New(loadgen.Config{
//		Addr:     "127.0.0.1:8080",
//		Path:     "/prod/items",
//		Header:   http.Header{"X-Api-Key": {"secret"}},
//		Warmup:   2 * time.Second,
//		Duration: 10 * time.Second,
//	})
//	if err != nil { ... }
//	res, err := g.Run(ctx)
//	fmt.Println(res.RPS(), res.Latency.Quantile(0.99), res.Status[200])
package loadgen
