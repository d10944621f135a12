// Package reportapi is tollgate's admin listener: health and readiness
// now; the AWS-compatible control API and usage reports build on the same
// router (github.com/go-chi/chi/v5).
package reportapi
