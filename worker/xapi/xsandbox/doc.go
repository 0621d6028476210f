// Package xsandbox is a faithful in-process fake of X (formerly Twitter): the
// OAuth 2.0 authorization server (authorization code with PKCE, rotating
// refresh tokens) and the API v2 endpoints tagwatch depends on
// (GET /2/users/me and GET /2/tweets/search/recent), served over real TCP on
// loopback.
//
// The facts it reproduces are listed in shared/docs/X_API.md: exact JSON
// bodies for errors, rate-limit headers and windows, the usage cap, the
// polling contract of recent search, and the faults X is known for. Every
// behaviour can be switched by a test while the server runs, and the server
// keeps counts of what it was asked (see [Stats]). Answers that carry
// x-rate-limit headers carry a Date from the sandbox's clock too, as X's
// carry X's: a sandbox whose [Config.Now] differs from the client's clock
// is a server whose clock is skewed.
//
// Start a server with [Start]; every method of [Server] is safe for
// concurrent use, also while requests are being served. Time comes from
// [Config.Now]; [Clock] is a settable clock for tests.
//
// Posts are stored in memory, indexed by lower-cased hashtag in posting lists
// of ascending ids, so a search touches only the posts it returns. Readers take
// a snapshot of the index under a read lock and evaluate the query without
// holding it, so searches do not contend with each other or with writers.
package xsandbox
