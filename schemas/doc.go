// Package schemas holds the wire formats tollgate components exchange: the
// usage event every request produces, and (later) configuration changes and
// quota signals.
//
// Record types carry versioned names (see EventTypeUsage) so that a consumer
// can tell which layout it reads and old records stay readable after a
// change.
package schemas
