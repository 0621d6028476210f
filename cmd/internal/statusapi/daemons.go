package statusapi

import (
	"context"
	"net/http"
	"time"
)

// Daemon is one daemon sharing the store, as GET /v1/daemons lists it:
// its entry in the store's registry of daemons (kv.Cluster.Daemons),
// whose times are the store's clock (PostgreSQL's now()), and the claims
// it holds now. A daemon that stopped cleanly has left the registry; one
// that died stays in it, no longer Alive, its claims running out with
// their lease.
type Daemon struct {
	// ID is the daemon's holder id (random at every start, logged in its
	// "tagwatchd started" line as daemon).
	ID      string `json:"id"`
	Host    string `json:"host"`
	PID     int    `json:"pid"`
	Version string `json:"version"`
	// Started is when it started; Heartbeat when it last said it was
	// alive (every storage.lease/3).
	Started   time.Time `json:"started"`
	Heartbeat time.Time `json:"heartbeat"`
	// Alive: its last heartbeat is less than storage.lease old.
	Alive bool `json:"alive"`
	// Self marks the daemon that answered.
	Self bool `json:"self,omitempty"`
	// Watches is how many watch runs it holds claims on now; Outbox how
	// many notifications it is sending now.
	Watches int `json:"watches"`
	Outbox  int `json:"outbox"`
	// Holds counts every claim it holds now, by kind ("watch",
	// "outbox"); empty when it holds none.
	Holds map[string]int `json:"holds,omitempty"`
}

// DaemonsBackend is the part of a Backend that lists the daemons sharing
// the store: GET /v1/daemons. A Backend that implements it gets the
// route.
type DaemonsBackend interface {
	// Daemons lists the registry's daemons, oldest start first.
	Daemons(ctx context.Context) ([]Daemon, error)
}

// daemonsRoutes registers GET /v1/daemons when the backend has it.
func (h *Handler) daemonsRoutes() {
	b, ok := h.cfg.Backend.(DaemonsBackend)
	if !ok {
		return
	}
	h.mux.HandleFunc("GET /v1/daemons", h.wrap(func(ctx context.Context, r *http.Request) (any, error) {
		return nonNil(b.Daemons(ctx))
	}))
}

// Daemons lists the daemons sharing the store.
func (c *Client) Daemons(ctx context.Context) (d []Daemon, err error) {
	return d, c.do(ctx, http.MethodGet, "/v1/daemons", nil, &d)
}
