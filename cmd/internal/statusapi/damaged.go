package statusapi

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// DamagedRecord is one stored record the daemon cannot use (it does not
// decode, or a sealed field of it does not open): skipped by everything
// that reads, so the other users keep working, until an operator deletes
// it. GET /v1/damaged lists them; Status.Damaged carries them too.
type DamagedRecord struct {
	// Kind is user, grant, watch, cursor, link, outbox, revocation or
	// audit.
	Kind string `json:"kind"`
	// ID is the record's id (a link's: "sha256:" and the start of its
	// token's hash; an audit event's: its sequence number).
	ID string `json:"id"`
	// Problem says what is wrong, never the record's bytes.
	Problem string `json:"problem"`
	// FirstSeen is when the daemon first found it.
	FirstSeen time.Time `json:"first_seen,omitzero"`
	// UserID is the user it belongs to, when known.
	UserID string `json:"user_id,omitempty"`
}

// DamagedBackend is the part of a Backend that lists and repairs damaged
// records: GET /v1/damaged, DELETE /v1/damaged/{kind}/{id} and POST
// /v1/damaged/grant/{id}/reset. A Backend that implements it gets those
// routes.
type DamagedBackend interface {
	// Damaged checks the stored records and lists the damaged ones.
	Damaged(ctx context.Context) ([]DamagedRecord, error)
	// DeleteDamaged deletes one damaged record (with its index entries)
	// and returns it. A record that is not damaged is ErrConflict.
	DeleteDamaged(ctx context.Context, kind, id, actor string) (DamagedRecord, error)
	// ResetDamagedGrant resets a grant whose sealed tokens do not open
	// to needs_reconsent and sends its user a new consent link.
	ResetDamagedGrant(ctx context.Context, id, actor string) (GrantReset, error)
}

// GrantReset answers POST /v1/damaged/grant/{id}/reset: the grant as it
// is now (needs_reconsent, no tokens) and the consent link queued to its
// user (the link itself only goes to the user).
type GrantReset struct {
	Grant Grant `json:"grant"`
	// LinkID is the re-consent link's id (tagwatchctl enroll list).
	LinkID string `json:"link_id"`
	// Notices is how many notifications carry the link to the user.
	Notices int `json:"notices"`
}

// damagedRoutes registers the damaged-record endpoints when the backend
// has them.
func (h *Handler) damagedRoutes() {
	b, ok := h.cfg.Backend.(DamagedBackend)
	if !ok {
		return
	}
	h.mux.HandleFunc("GET /v1/damaged", h.wrap(func(ctx context.Context, r *http.Request) (any, error) {
		return nonNil(b.Damaged(ctx))
	}))
	h.mux.HandleFunc("DELETE /v1/damaged/{kind}/{id}", h.wrap(func(ctx context.Context, r *http.Request) (any, error) {
		return b.DeleteDamaged(ctx, r.PathValue("kind"), r.PathValue("id"), peerOf(r).Actor())
	}))
	h.mux.HandleFunc("POST /v1/damaged/grant/{id}/reset", h.wrap(func(ctx context.Context, r *http.Request) (any, error) {
		return b.ResetDamagedGrant(ctx, r.PathValue("id"), peerOf(r).Actor())
	}))
}

// Damaged lists the damaged records.
func (c *Client) Damaged(ctx context.Context) (d []DamagedRecord, err error) {
	return d, c.do(ctx, http.MethodGet, "/v1/damaged", nil, &d)
}

// ResetDamagedGrant resets a grant whose sealed tokens do not open.
func (c *Client) ResetDamagedGrant(ctx context.Context, id string) (g GrantReset, err error) {
	return g, c.do(ctx, http.MethodPost, "/v1/damaged/grant/"+url.PathEscape(id)+"/reset", nil, &g)
}

// DeleteDamaged deletes one damaged record.
func (c *Client) DeleteDamaged(ctx context.Context, kind, id string) (d DamagedRecord, err error) {
	return d, c.do(ctx, http.MethodDelete, "/v1/damaged/"+url.PathEscape(kind)+"/"+url.PathEscape(id), nil, &d)
}
