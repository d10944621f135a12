// Package catalog holds what tollgate enforces: APIs with their stages and
// resources, usage plans, and API keys, with the names and field names of
// AWS API Gateway so that a file written here reads like `aws apigateway`
// output.
//
// A Catalog is a plain value. Apply merges a declarative file into the
// current catalog (matching plans and keys by name, keeping their ids and
// creation dates, so applying the same file twice changes nothing) and
// validates the result as a whole; an invalid result is refused entirely.
// API key values never enter a Catalog: only their SHA-256 hashes do.
//
//	cat, changes, err := catalog.Apply(current, file, time.Now())
package catalog
