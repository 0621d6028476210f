package worker_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/worker"
	"tagwatch/worker/xapi"
	"tagwatch/worker/xapi/xsandbox"
)

// TestNoGapNoDuplicate: posts arrive before the watch, between the pages of
// a run and between runs; every post made after the watch was created is
// queued exactly once, the older one never, and X is asked for no post
// twice (posts read = posts queued).
func TestNoGapNoDuplicate(t *testing.T) {
	f := newFix(t, fixOpts{})
	f.post("100", "old news #golang") // before the watch: not wanted
	f.clock.Advance(time.Second)
	wid, _ := f.addWatch("100", vault.WatchSpec{Hashtags: []string{"golang", "rust"}}, time.Time{})
	f.clock.Advance(time.Second)
	var want []string
	for i := 0; i < 23; i++ {
		want = append(want, f.post("100", tagPost("golang", i)))
		f.post("100", "unrelated #python")
	}
	// Posts keep arriving while the run pages through its results.
	f.hook.set(func(n int) {
		want = append(want, f.post("100", tagPost("rust", 1000+n)))
	})
	ev := f.mustRun(wid)
	if ev.Pages != 3 || ev.Matches != 23 {
		t.Errorf("first run: pages %d, matches %d; want 3 and 23", ev.Pages, ev.Matches)
	}
	for run := 0; run < 4; run++ {
		f.clock.Advance(time.Minute)
		for i := 0; i < 7; i++ {
			want = append(want, f.post("100", tagPost("rust", run*100+i)))
		}
		f.mustRun(wid)
	}
	f.hook.set(nil)
	f.clock.Advance(time.Minute)
	f.mustRun(wid) // picks up the last posts made during the previous run
	f.checkExactlyOnce(wid, want)
	st := f.sb.Stats()
	if st.PostsRead["100"] != len(want) {
		t.Errorf("posts read = %d, want %d (each matching post read once)", st.PostsRead["100"], len(want))
	}
	c := f.cursor(wid)
	if c.PostsRead != int64(len(want)) || c.Matches != int64(len(want)) || c.Runs != 6 {
		t.Errorf("cursor counters = read %d matches %d runs %d, want %d %d 6", c.PostsRead, c.Matches, c.Runs, len(want), len(want))
	}
	if c.SinceID != want[len(want)-1] {
		t.Errorf("cursor since_id = %s, want newest post %s", c.SinceID, want[len(want)-1])
	}
}

// TestFirstRunStartsFromCreation: without backfill the first run reads only
// posts made since the watch was created; with backfill it reads the past.
func TestFirstRunStartsFromCreation(t *testing.T) {
	f := newFix(t, fixOpts{})
	old := f.post("100", "#golang from yesterday")
	f.clock.Advance(time.Hour)
	plain, _ := f.addWatch("100", vault.WatchSpec{Hashtags: []string{"golang"}}, time.Time{})
	back, _ := f.addWatch("200", vault.WatchSpec{Hashtags: []string{"golang"}, Backfill: true}, time.Time{})
	f.clock.Advance(time.Minute)
	f.mustRun(plain)
	f.mustRun(back)
	f.checkExactlyOnce(plain, nil)
	f.checkExactlyOnce(back, []string{old})
	if n := f.sb.Stats().PostsRead["100"]; n != 0 {
		t.Errorf("posts read by the watch without backfill = %d, want 0", n)
	}
	// Runs that find nothing keep searching from when they last searched.
	f.clock.Advance(time.Minute)
	f.mustRun(plain)
	f.clock.Advance(time.Minute)
	p := f.post("100", "#golang new")
	f.clock.Advance(time.Minute)
	f.mustRun(plain)
	f.checkExactlyOnce(plain, []string{p})
}

// TestDigestsPerTarget: matches are grouped MaxPerDigest to a row, one row
// per target, and each row's message names the posts it carries.
func TestDigestsPerTarget(t *testing.T) {
	f := newFix(t, fixOpts{wcfg: func(c *worker.Config) { c.MaxPerDigest = 4 }})
	wid, _ := f.addWatch("100", vault.WatchSpec{Hashtags: []string{"golang"}, Targets: []string{"console:", "mailto:a@example.com"}}, time.Time{})
	f.clock.Advance(time.Second)
	for i := 0; i < 10; i++ {
		f.post("100", tagPost("golang", i))
	}
	ev := f.mustRun(wid)
	if ev.Rows != 6 {
		t.Errorf("rows = %d, want 6 (3 digests x 2 targets)", ev.Rows)
	}
	counts, rows := f.queued(wid)
	if rows != 6 || len(counts) != 10 {
		t.Fatalf("outbox: %d rows, %d posts; want 6 and 10", rows, len(counts))
	}
	for id, n := range counts {
		if n != 2 {
			t.Errorf("post %s in %d rows, want 2 (one per target)", id, n)
		}
	}
}

// TestRateLimitRespectedToTheSecond: after a 429 no request reaches X before
// the reset; the first one after it succeeds. Within a window the client
// plans by x-rate-limit-remaining and never draws a 429 itself.
func TestRateLimitRespectedToTheSecond(t *testing.T) {
	f := newFix(t, fixOpts{})
	f.sb.SetRateLimit(xsandbox.EndpointSearch, 3, 0, 15*time.Minute)
	wid, _ := f.addWatch("100", vault.WatchSpec{Hashtags: []string{"golang"}}, time.Time{})
	// Someone else (another process with the same token) spends the window.
	at, _, err := f.sb.Grant("100", nil)
	if err != nil {
		t.Fatal(err)
	}
	windowStart := f.clock.Now()
	for i := 0; i < 3; i++ {
		req, _ := http.NewRequest("GET", f.sb.URL()+"/2/tweets/search/recent?query=%23x", nil)
		req.Header.Set("Authorization", "Bearer "+at)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	f.clock.Advance(time.Second)
	p := f.post("100", "#golang one")
	ev := f.run(wid)
	if ev.Kind != worker.EventRateLimited {
		t.Fatalf("run = %s %v, want rate_limited", ev.Kind, ev.Err)
	}
	reset := windowStart.Add(15 * time.Minute)
	if !ev.NotBefore.Equal(reset.Add(time.Second)) {
		t.Errorf("NotBefore = %s, want a second past the reset %s", ev.NotBefore, reset)
	}
	calls := f.searches("100")
	// Every second until the reset: the watch runs, X sees nothing.
	for f.clock.Now().Before(ev.NotBefore) {
		f.clock.Advance(time.Second)
		if f.clock.Now().Before(ev.NotBefore) {
			if e := f.run(wid); e.Kind != worker.EventRateLimited {
				t.Fatalf("run at %s = %s, want rate_limited", f.clock.Now(), e.Kind)
			}
		}
	}
	if n := f.searches("100"); n != calls {
		t.Fatalf("X saw %d searches before the reset, want 0", n-calls)
	}
	f.mustRun(wid)
	f.checkExactlyOnce(wid, []string{p})
	if c := f.cursor(wid); c.SinceID != p {
		t.Errorf("since_id = %q, want %s", c.SinceID, p)
	}
	st := f.sb.Stats()
	if st.RateLimited != 1 {
		t.Errorf("429s = %d, want exactly 1", st.RateLimited)
	}
	// Planning: spend the new window by our own requests; the fourth run is
	// held locally, with no 429.
	f.mustRun(wid)
	f.mustRun(wid)
	if ev := f.run(wid); ev.Kind != worker.EventRateLimited {
		t.Errorf("run with the window spent = %s, want rate_limited", ev.Kind)
	}
	if st := f.sb.Stats(); st.RateLimited != 1 || st.APICalls[xsandbox.EndpointSearch]["100"] != calls+3 {
		t.Errorf("after planning: 429s %d, searches %d; want 1 and %d", st.RateLimited, st.APICalls[xsandbox.EndpointSearch]["100"], calls+3)
	}
}

// TestUsageCapPausesProviderAndAlerts: a usage-capped 429 suspends every
// watch of the provider and raises one alert; capped watches make no
// request until the probe, and a successful probe resumes them all.
func TestUsageCapPausesProviderAndAlerts(t *testing.T) {
	f := newFix(t, fixOpts{wcfg: func(c *worker.Config) { c.CapProbeInterval = time.Hour }})
	w1, _ := f.addWatch("100", vault.WatchSpec{Hashtags: []string{"golang"}}, time.Time{})
	w2, _ := f.addWatch("200", vault.WatchSpec{Hashtags: []string{"rust"}}, time.Time{})
	f.sb.SetMonthlyPostBudget(2)
	f.clock.Advance(time.Second)
	f.post("100", "#golang a")
	f.post("100", "#golang b")
	f.mustRun(w1)
	f.clock.Advance(time.Second)
	p := f.post("100", "#rust c")
	c2 := f.cursor(w2)
	if ev := f.run(w2); ev.Kind != worker.EventRunFailed || !errors.Is(ev.Err, worker.ErrUsageCapped) || !errors.Is(ev.Err, xapi.ErrUsageCapped) {
		t.Fatalf("run over the cap = %s %v, want run_failed with ErrUsageCapped", ev.Kind, ev.Err)
	}
	if alerts := f.eventsOf(worker.EventUsageCapped); len(alerts) != 1 || alerts[0].Watches != 2 || alerts[0].Provider != "x" {
		t.Fatalf("usage-cap alerts = %+v, want one for provider x with 2 watches", alerts)
	}
	for _, id := range []string{w1, w2} {
		if wt := f.watch(id); wt.State != vault.WatchSuspended || wt.SuspendReason != vault.SuspendUsageCapped {
			t.Errorf("watch %s: %s %q, want suspended usage_capped", id, wt.State, wt.SuspendReason)
		}
	}
	if c := f.cursor(w2); c.SinceID != c2.SinceID {
		t.Errorf("capped run moved the cursor")
	}
	calls := f.sb.Stats().APICalls[xsandbox.EndpointSearch]
	f.clock.Advance(30 * time.Minute)
	for _, id := range []string{w1, w2} {
		if ev := f.run(id); ev.Kind != worker.EventSkipped || ev.Reason != worker.SkipUsageCapped {
			t.Errorf("run of capped watch = %s %s, want skipped usage_capped", ev.Kind, ev.Reason)
		}
	}
	if now := f.sb.Stats().APICalls[xsandbox.EndpointSearch]; now["100"] != calls["100"] || now["200"] != calls["200"] {
		t.Errorf("capped watches made requests before the probe")
	}
	f.sb.SetMonthlyPostBudget(0) // the operator raised the budget
	f.clock.Advance(31 * time.Minute)
	f.mustRun(w2) // the probe
	if len(f.eventsOf(worker.EventUsageCapLifted)) != 1 {
		t.Errorf("no usage_cap_lifted event")
	}
	if wt := f.watch(w1); wt.State != vault.WatchActive {
		t.Errorf("watch %s is %s after the probe, want active", w1, wt.State)
	}
	f.checkExactlyOnce(w2, []string{p})
}

// TestFailuresMoveNoCursor: 5xx after the retries, a timeout and a malformed
// body fail the run without touching the cursor or the outbox; the next run
// queues everything once. A single 5xx is retried within the run.
func TestFailuresMoveNoCursor(t *testing.T) {
	f := newFix(t, fixOpts{xcfg: func(c *xapi.Config) { c.Timeout = 200 * time.Millisecond }})
	wid, _ := f.addWatch("100", vault.WatchSpec{Hashtags: []string{"golang"}}, time.Time{})
	f.clock.Advance(time.Second)
	want := []string{f.post("100", "#golang 1")}
	f.mustRun(wid)
	before := f.cursor(wid)
	want = append(want, f.post("100", "#golang 2"), f.post("100", "#golang 3"))
	faults := []struct {
		name string
		arm  func()
	}{
		{"503 after retries", func() { f.sb.FailNext(xsandbox.EndpointSearch, 3, 503) }},
		{"malformed body", func() { f.sb.MalformedNext(xsandbox.EndpointSearch, 1) }},
		{"timeouts", func() { f.sb.HangNext(xsandbox.EndpointSearch, 3) }},
	}
	for _, tc := range faults {
		t.Run(tc.name, func(t *testing.T) {
			tc.arm()
			ev := f.run(wid)
			if ev.Kind != worker.EventRunFailed {
				t.Fatalf("run = %s, want run_failed", ev.Kind)
			}
			c := f.cursor(wid)
			if c.SinceID != before.SinceID || c.Matches != before.Matches || c.LastResult != vault.RunFailed || c.LastError == "" {
				t.Errorf("cursor after failure = %+v, want since_id %s and a recorded failure", c, before.SinceID)
			}
			if _, rows := f.queued(wid); rows != 1 {
				t.Errorf("outbox rows = %d, want 1 (the first run's)", rows)
			}
		})
	}
	f.sb.FailNext(xsandbox.EndpointSearch, 1, 502) // retried inside the run
	f.mustRun(wid)
	f.checkExactlyOnce(wid, want)
}

// TestUnauthorizedRefreshesOnce: X refuses a token the vault still thinks
// valid; the client asks renewal for one forced refresh and the run goes
// through. A token refused again after that fails the run.
func TestUnauthorizedRefreshesOnce(t *testing.T) {
	f := newFix(t, fixOpts{ttl: 10 * time.Minute})
	// The vault believes the token lives 2 hours; X says 10 minutes.
	wid, _ := f.addWatch("100", vault.WatchSpec{Hashtags: []string{"golang"}}, f.clock.Now().Add(2*time.Hour))
	f.clock.Advance(20 * time.Minute)
	p := f.post("100", "#golang hi")
	f.mustRun(wid)
	st := f.sb.Stats()
	if st.Unauthorized != 1 || st.TokenRequests["refresh_token"] != 1 {
		t.Errorf("401s %d, refreshes %d; want 1 and 1", st.Unauthorized, st.TokenRequests["refresh_token"])
	}
	f.checkExactlyOnce(wid, []string{p})

	// A user who revoked the app in X's settings: one refresh is tried
	// (and refused), the run fails, nothing moves.
	f.sb.RevokeUser("100")
	f.clock.Advance(time.Minute)
	before := f.cursor(wid)
	ev := f.run(wid)
	if ev.Kind != worker.EventSkipped || ev.Reason != worker.SkipNeedsConsent {
		t.Fatalf("run with a revoked grant = %s %s %v, want skipped needs_consent", ev.Kind, ev.Reason, ev.Err)
	}
	if n := f.sb.Stats().TokenRequests["refresh_token"]; n != 2 {
		t.Errorf("refreshes = %d, want 2 (one per 401)", n)
	}
	if c := f.cursor(wid); c.SinceID != before.SinceID {
		t.Errorf("cursor moved after a refused token")
	}
}

// TestExpiredTokenMidRun: the access token expires between two pages of a
// run; renewal refreshes it and the run completes with every post.
func TestExpiredTokenMidRun(t *testing.T) {
	f := newFix(t, fixOpts{})
	wid, _ := f.addWatch("100", vault.WatchSpec{Hashtags: []string{"golang"}}, time.Time{})
	f.clock.Advance(time.Second)
	var want []string
	for i := 0; i < 25; i++ {
		want = append(want, f.post("100", tagPost("golang", i)))
	}
	f.hook.set(func(n int) {
		if n == 1 {
			f.clock.Advance(3 * time.Hour)
		}
	})
	ev := f.mustRun(wid)
	if ev.Pages != 3 {
		t.Errorf("pages = %d, want 3", ev.Pages)
	}
	f.checkExactlyOnce(wid, want)
	if n := f.sb.Stats().TokenRequests["refresh_token"]; n != 1 {
		t.Errorf("refreshes = %d, want 1", n)
	}
}

// TestSkippedWithoutRequest: paused and suspended watches and watches whose
// grant needs a new consent make no request.
func TestSkippedWithoutRequest(t *testing.T) {
	f := newFix(t, fixOpts{})
	paused, _ := f.addWatch("100", vault.WatchSpec{Hashtags: []string{"golang"}}, time.Time{})
	susp, _ := f.addWatch("200", vault.WatchSpec{Hashtags: []string{"golang"}}, time.Time{})
	consent, gid := f.addWatch("300", vault.WatchSpec{Hashtags: []string{"golang"}}, time.Time{})
	if _, _, err := f.db.PauseWatch(paused, "test"); err != nil {
		t.Fatal(err)
	}
	// Suspended for its grant, whose consent is not cleared yet.
	forceWatchState(t, f.db, susp, vault.WatchSuspended, vault.SuspendNeedsReconsent)
	f.markNeedsReconsent(gid)
	f.post("100", "#golang")
	for id, reason := range map[string]string{paused: worker.SkipPaused, susp: worker.SkipSuspended, consent: worker.SkipNeedsConsent} {
		if ev := f.run(id); ev.Kind != worker.EventSkipped || ev.Reason != reason {
			t.Errorf("run = %s %s, want skipped %s", ev.Kind, ev.Reason, reason)
		}
	}
	st := f.sb.Stats()
	if n := len(st.APICalls[xsandbox.EndpointSearch]); n != 0 || st.TokenRequests["refresh_token"] != 0 {
		t.Errorf("skipped watches made requests: %v", st.APICalls)
	}
}

// TestWorkerRunsOnSchedule: the whole worker on real time: watches on
// `@every 1s` are loaded, run, changed and paused through Reload, and every
// post is queued once.
func TestWorkerRunsOnSchedule(t *testing.T) {
	f := newFix(t, fixOpts{realTime: true, wcfg: func(c *worker.Config) { c.CatchUpWindow = 300 * time.Millisecond }})
	var ids []string
	for i := 0; i < 5; i++ {
		id, _ := f.addWatch(strconv.Itoa(100+i), vault.WatchSpec{Hashtags: []string{"golang"}, Schedule: "@every 1s"}, time.Time{})
		ids = append(ids, id)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	time.Sleep(50 * time.Millisecond)
	var want []string
	for i := 0; i < 6; i++ {
		want = append(want, f.post("100", tagPost("golang", i)))
		time.Sleep(300 * time.Millisecond)
	}
	// Pause one watch: Reload takes it out of the schedule.
	if _, _, err := f.db.PauseWatch(ids[0], "test"); err != nil {
		t.Fatal(err)
	}
	if err := f.w.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := f.w.Status(ids[0]); st.Scheduled {
		t.Errorf("paused watch still scheduled")
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, id := range ids[1:] {
		for {
			got, _ := f.queued(id)
			if len(got) >= len(want) || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		f.checkExactlyOnce(id, want)
		st, err := f.w.Status(id)
		if err != nil || !st.Scheduled || st.Next.IsZero() || st.Cursor.Runs < 2 {
			t.Errorf("Status(%s) = %+v, %v; want scheduled with runs", id, st, err)
		}
	}
	if n := len(f.eventsOf(worker.EventRun)); n < 8 {
		t.Errorf("run events = %d, want at least 8", n)
	}
}
