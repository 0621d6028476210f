package pgkv

// ClaimSQL is Claim's statement, for the benchmark's bare loop.
const ClaimSQL = claimSQL

// Micros is the lease parameter of ClaimSQL.
var Micros = micros
