package main

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"tagwatch/notify"
	"tagwatch/worker/sched"
	"tagwatch/worker/xapi/xsandbox"
)

// The peer is everything of the e2e bench that is not the daemon: the X
// sandbox, the seeding, the post generator and the webhook receiver. It is
// this program run again in a hidden mode (peerMode), so the measured
// process's CPU and RSS are the daemon's own. The bench talks to it over
// its stdin and stdout, one JSON object a line each way: a peerRequest,
// then its peerReply. Its stderr is the bench's.

// peerMode is the hidden first argument that runs the peer; peerEnv, set
// to "1", does the same for a test binary (TestMain).
const (
	peerMode = "e2e-peer"
	peerEnv  = "TAGWATCH_BENCH_PEER"
)

// peerRequest is one request of the bench to the peer.
type peerRequest struct {
	Op string `json:"op"` // seed | post | mark | finish
	// seed
	Plan seedPlan `json:"plan,omitzero"`
	// post: make one post for each fire of a watch in [From+Lead, Until],
	// Lead before the fire.
	From  time.Time     `json:"from,omitzero"`
	Until time.Time     `json:"until,omitzero"`
	Lead  time.Duration `json:"lead,omitempty"`
	// mark: start ("start") or stop ("stop") the peer's CPU profile,
	// written to Profile.
	Profile string `json:"profile,omitempty"`
	Action  string `json:"action,omitempty"`
}

// peerReply is the peer's answer to one request.
type peerReply struct {
	Err string `json:"err,omitempty"`
	// seed
	SandboxURL string        `json:"sandbox_url,omitempty"`
	HookURLs   []string      `json:"hook_urls,omitempty"`
	SeedX      time.Duration `json:"seed_x,omitempty"`     // sandbox users and grants
	SeedVault  time.Duration `json:"seed_vault,omitempty"` // the vault file
	VaultBytes int64         `json:"vault_bytes,omitempty"`
	// post
	Planned int `json:"planned,omitempty"`
	// mark, finish: the peer's CPU time (user+system) so far.
	CPU time.Duration `json:"cpu,omitempty"`
	// finish
	Posts      []ledgerPost `json:"posts,omitempty"`
	Deliveries []delivery   `json:"deliveries,omitempty"`
	BadSigs    int          `json:"bad_sigs,omitempty"`
	Searches   int          `json:"searches,omitempty"`
	PostsRead  int          `json:"posts_read,omitempty"`
	Refreshes  int          `json:"refreshes,omitempty"`
	Limited    int          `json:"limited,omitempty"`
	Unauth     int          `json:"unauth,omitempty"`
	PostLate   int          `json:"post_late,omitempty"` // posts made at or after the fire they were for
}

// ledgerPost is one post the generator made: [post id, watch number,
// made (Unix ns), the fire it was made for (Unix ns)].
type ledgerPost [4]int64

// delivery is one webhook delivery the receiver accepted: [post id,
// received (Unix ns), delivery number]. A digest of several posts is one
// row per post with the same delivery number.
type delivery [3]int64

// runPeer serves the bench's requests on in and out until in ends.
func runPeer(in io.Reader, out io.Writer) error {
	p := &peer{}
	defer p.close()
	dec := json.NewDecoder(bufio.NewReader(in))
	enc := json.NewEncoder(out)
	for {
		var req peerRequest
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("peer: read request: %w", err)
		}
		rep, err := p.handle(req)
		if err != nil {
			rep = peerReply{Err: err.Error()}
		}
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("peer: write reply: %w", err)
		}
	}
}

type peer struct {
	plan   seedPlan
	sb     *xsandbox.Server
	hooks  *http.Server
	hookLn net.Listener
	xids   []string
	eng    *sched.Engine // computes fires only: never run
	every  time.Duration

	postCancel context.CancelFunc
	postDone   chan struct{}
	prof       *os.File

	mu      sync.Mutex
	posts   []ledgerPost
	late    int
	recv    []delivery
	ids     map[string]bool // webhook-ids seen
	badSigs int
	key     []byte
}

func (p *peer) close() {
	if p.postCancel != nil {
		p.postCancel()
		<-p.postDone
	}
	if p.hooks != nil {
		_ = p.hooks.Close()
	}
	if p.sb != nil {
		p.sb.Close()
	}
}

func (p *peer) handle(req peerRequest) (peerReply, error) {
	switch req.Op {
	case "seed":
		return p.seed(req.Plan)
	case "post":
		return p.startPosting(req.From, req.Until, req.Lead)
	case "mark":
		if err := p.profile(req.Action, req.Profile); err != nil {
			return peerReply{}, err
		}
		return peerReply{CPU: cpuTime()}, nil
	case "finish":
		return p.finish()
	}
	return peerReply{}, fmt.Errorf("peer: unknown op %q", req.Op)
}

// seed starts the sandbox and the receiver, adds the users and their
// grants to the sandbox, and writes the vault file (seed.go).
func (p *peer) seed(plan seedPlan) (peerReply, error) {
	var rep peerReply
	if p.sb != nil {
		return rep, errors.New("peer: seeded already")
	}
	every, err := everyOf(plan.Schedule)
	if err != nil {
		return rep, err
	}
	p.plan, p.every = plan, every
	quiet := slog.New(slog.DiscardHandler)
	p.sb, err = xsandbox.Start(xsandbox.Config{ClientID: benchClientID, ClientSecret: benchClientSecret,
		RedirectURIs: []string{"http://127.0.0.1:1/cb"}, Logger: quiet})
	if err != nil {
		return rep, err
	}
	// X's app-wide 450 searches per 15 minutes cannot serve a million
	// watches; the bench measures tagwatch, so only the per-user limit
	// stays, and only while the schedule keeps within it.
	perUser := 300
	if float64(plan.PerUser)*float64(15*time.Minute)/float64(every) > 300 {
		perUser = 0
	}
	p.sb.SetRateLimit(xsandbox.EndpointSearch, perUser, 0, 15*time.Minute)
	if err := p.startHooks(plan.HookSecret); err != nil {
		return rep, err
	}
	for i := range max(plan.Hooks, 1) {
		rep.HookURLs = append(rep.HookURLs, fmt.Sprintf("http://%s/hook/%d", p.hookLn.Addr(), i))
	}
	p.eng, err = sched.New(sched.Config{Job: func(context.Context, sched.Fire) {}})
	if err != nil {
		return rep, err
	}
	for i := range plan.Watches {
		if err := p.eng.Upsert(sched.Entry{Key: watchKey(i), User: userKey(i / plan.PerUser), Provider: "x", Schedule: plan.Schedule}); err != nil {
			return rep, err
		}
	}
	st, err := seedAll(p.sb, plan, rep.HookURLs, p.lastFire)
	if err != nil {
		return rep, err
	}
	p.xids = st.xids
	rep.SandboxURL = p.sb.URL()
	rep.SeedX, rep.SeedVault, rep.VaultBytes = st.x, st.vault, st.bytes
	return rep, nil
}

// lastFire returns watch i's last fire at or before t.
func (p *peer) lastFire(i int, t time.Time) time.Time {
	f, err := p.eng.FireFrom(watchKey(i), t.Add(-p.every+1))
	if err != nil {
		panic(err) // every watch was added
	}
	return f
}

// plannedPost is a post to make at At for watch W's fire Fire.
type plannedPost struct {
	at, fire int64
	w        int32
}

// startPosting plans one post per fire of each watch in [from+lead,
// until], lead before it, and starts making them.
func (p *peer) startPosting(from, until time.Time, lead time.Duration) (peerReply, error) {
	if p.sb == nil || p.postCancel != nil {
		return peerReply{}, errors.New("peer: post before seed, or twice")
	}
	var plan []plannedPost
	for i := range p.plan.Watches {
		f, err := p.eng.FireFrom(watchKey(i), from.Add(lead))
		if err != nil {
			return peerReply{}, err
		}
		for ; !f.After(until); f = f.Add(p.every) {
			plan = append(plan, plannedPost{at: f.Add(-lead).UnixNano(), fire: f.UnixNano(), w: int32(i)})
		}
	}
	slices.SortFunc(plan, func(a, b plannedPost) int { return cmpInt64(a.at, b.at) })
	ctx, cancel := context.WithCancel(context.Background())
	p.postCancel, p.postDone = cancel, make(chan struct{})
	p.mu.Lock()
	p.posts = make([]ledgerPost, 0, len(plan))
	p.mu.Unlock()
	go func() {
		defer close(p.postDone)
		p.post(ctx, plan)
	}()
	return peerReply{Planned: len(plan)}, nil
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// post makes the planned posts, each at its time (1 ms timer).
func (p *peer) post(ctx context.Context, plan []plannedPost) {
	t := time.NewTimer(0)
	defer t.Stop()
	for len(plan) > 0 {
		if d := time.Until(time.Unix(0, plan[0].at)); d > 0 {
			t.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		now := time.Now().UnixNano()
		n := 0
		for n < len(plan) && plan[n].at <= now {
			n++
		}
		for _, pp := range plan[:n] {
			i := int(pp.w)
			id := p.sb.Post(xsandbox.Post{AuthorID: p.xids[i/p.plan.PerUser], Text: "bench post #" + hashtagOf(i)})
			made := time.Now().UnixNano()
			n, _ := strconv.ParseInt(id, 10, 64)
			p.mu.Lock()
			p.posts = append(p.posts, ledgerPost{n, int64(i), made, pp.fire})
			if made >= pp.fire {
				p.late++ // the fire's run may have searched before it
			}
			p.mu.Unlock()
		}
		plan = plan[n:]
	}
}

// startHooks serves the webhook receiver: it checks each delivery's
// Standard Webhooks signature and records its posts.
func (p *peer) startHooks(whsec string) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(whsec, "whsec_"))
	if err != nil {
		return err
	}
	p.key, p.ids = key, map[string]bool{}
	p.hookLn, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hook/{n}", p.receive)
	p.hooks = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.hooks.Serve(p.hookLn) }()
	return nil
}

func (p *peer) receive(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
	mac := hmac.New(sha256.New, p.key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	ok := false
	for s := range strings.FieldsSeq(r.Header.Get("webhook-signature")) {
		ok = ok || hmac.Equal([]byte(s), []byte(want))
	}
	if !ok {
		p.mu.Lock()
		p.badSigs++
		p.mu.Unlock()
		http.Error(w, "signature", http.StatusUnauthorized)
		return
	}
	var b notify.WebhookBody
	if err := json.Unmarshal(body, &b); err != nil {
		http.Error(w, "body", http.StatusBadRequest)
		return
	}
	now := time.Now().UnixNano()
	p.mu.Lock()
	retry := p.ids[id]
	p.ids[id] = true
	if !retry { // a retry of an accepted delivery would be the notifier's, not a new post's
		num := int64(len(p.ids))
		for _, pid := range b.Data.PostIDs {
			n, _ := strconv.ParseInt(pid, 10, 64)
			p.recv = append(p.recv, delivery{n, now, num})
		}
	}
	p.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// profile starts or stops the peer's CPU profile.
func (p *peer) profile(action, path string) error {
	switch {
	case action == "start" && path != "":
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		p.prof = f
		return pprof.StartCPUProfile(f)
	case action == "stop" && p.prof != nil:
		pprof.StopCPUProfile()
		err := p.prof.Close()
		p.prof = nil
		return err
	}
	return nil
}

// finish stops posting and returns the ledger, the deliveries and the
// sandbox's counters.
func (p *peer) finish() (peerReply, error) {
	if p.postCancel != nil {
		p.postCancel()
		<-p.postDone
		p.postCancel = nil
	}
	rep := peerReply{CPU: cpuTime()}
	if p.sb != nil {
		st := p.sb.Stats()
		for _, m := range st.APICalls[xsandbox.EndpointSearch] {
			rep.Searches += m
		}
		rep.PostsRead, rep.Refreshes = st.PostsReadTotal, st.TokenRequests["refresh_token"]
		rep.Limited, rep.Unauth = st.RateLimited, st.Unauthorized
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	rep.Posts, rep.Deliveries, rep.BadSigs, rep.PostLate = p.posts, p.recv, p.badSigs, p.late
	return rep, nil
}

// peerMain runs the peer on the process's stdin and stdout.
func peerMain() int {
	if err := runPeer(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tagwatch-bench peer:", err)
		return 1
	}
	return 0
}
