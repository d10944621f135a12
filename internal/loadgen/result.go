package loadgen

import "time"

// Result is what one Run measured.
type Result struct {
	// Duration is the measured period (Config.Duration).
	Duration time.Duration

	// Responses counts the responses completed in the measured period.
	Responses uint64

	// Status counts those responses by status code.
	Status map[int]uint64

	// Latency holds their latencies, from writing the request to having
	// read the whole response.
	Latency *Histogram

	// Errors counts failed requests over the whole run, warm-up included,
	// since any of them is a sign of trouble. Requests cut off by the end
	// of the run are not errors.
	Errors Errors

	// Reconnects counts connections dialled again after the server closed
	// one or a request on it failed, over the whole run.
	Reconnects uint64

	// Late counts, in a paced run (Config.Rate), the requests of the
	// measured period sent after their slot because the previous response
	// on their connection came in after it. 0 in a closed-loop run.
	Late uint64
}

// RPS is the number of responses per second in the measured period.
func (r *Result) RPS() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Responses) / r.Duration.Seconds()
}

// Errors counts failed requests by what failed.
type Errors struct {
	Connect uint64 // dialling failed
	Write   uint64 // writing the request failed
	Read    uint64 // reading the response failed, e.g. the server closed
	Timeout uint64 // a dial or request took longer than Config.Timeout
	Parse   uint64 // the response was not valid HTTP/1.x
}

// Total is the sum of all errors.
func (e Errors) Total() uint64 { return e.Connect + e.Write + e.Read + e.Timeout + e.Parse }

func (e *Errors) add(o Errors) {
	e.Connect += o.Connect
	e.Write += o.Write
	e.Read += o.Read
	e.Timeout += o.Timeout
	e.Parse += o.Parse
}
