package xsandbox

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	benchUsers = 10_000
	benchPosts = 1_000_000
	benchTags  = 1_000
)

var (
	benchOnce   sync.Once
	benchSrv    *Server
	benchTokens []string
	benchSetupT time.Duration
)

func TestMain(m *testing.M) {
	code := m.Run()
	if benchSrv != nil {
		benchSrv.Close()
	}
	os.Exit(code)
}

// benchServer builds, once per process, a sandbox with 10,000 users holding
// a grant each and 1,000,000 posts over the last 6 days.
func benchServer(b *testing.B) (*Server, []string) {
	benchOnce.Do(func() {
		start := time.Now()
		s, err := Start(Config{ClientID: "bench", ClientSecret: "bench", RedirectURIs: []string{"http://127.0.0.1/cb"}})
		if err != nil {
			b.Fatal(err)
		}
		// Limits high enough never to bind, so headers are still computed.
		s.SetRateLimit(EndpointSearch, 1<<40, 1<<40, 15*time.Minute)
		ids := make([]string, benchUsers)
		for i := range ids {
			ids[i] = strconv.Itoa(1_000_000 + i)
			if err := s.AddUser(User{ID: ids[i], Username: "u" + ids[i], Name: "User " + ids[i]}); err != nil {
				b.Fatal(err)
			}
		}
		t0 := time.Now().Add(-6 * 24 * time.Hour)
		step := 6 * 24 * time.Hour / benchPosts
		batch := make([]Post, 0, 10_000)
		for i := range benchPosts {
			batch = append(batch, Post{
				AuthorID:  ids[i%benchUsers],
				Text:      fmt.Sprintf("post %d about #tag%d and #tag%d", i, i%benchTags, (i*7+3)%benchTags),
				IsRetweet: i%5 == 0,
				CreatedAt: t0.Add(time.Duration(i) * step),
			})
			if len(batch) == cap(batch) {
				s.PostBatch(batch)
				batch = batch[:0]
			}
		}
		s.PostBatch(batch)
		for _, id := range ids {
			a, _, err := s.Grant(id, nil)
			if err != nil {
				b.Fatal(err)
			}
			benchTokens = append(benchTokens, a)
		}
		benchSrv = s
		benchSetupT = time.Since(start)
		b.Logf("setup of %d users and %d posts: %v", benchUsers, benchPosts, benchSetupT.Round(time.Millisecond))
	})
	if benchSrv == nil {
		b.Fatal("bench setup failed earlier")
	}
	return benchSrv, benchTokens
}

func benchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512}}
}

func runLoad(b *testing.B, c *http.Client, mkReq func(i int64) *http.Request) {
	var n atomic.Int64
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Do(mkReq(n.Add(1)))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkSearchLoopback measures recent-search requests per second over
// loopback: 10,000 users, 1,000,000 posts, a keep-alive client, queries
// like tagwatch's polls (a hashtag, -is:retweet, author expansion).
func BenchmarkSearchLoopback(b *testing.B) {
	s, tokens := benchServer(b)
	c := benchClient()
	defer c.CloseIdleConnections()
	// URLs and headers are made up front so that the client, which shares
	// the CPUs with the server, costs the same as in BenchmarkHelloLoopback.
	urls := make([]string, benchTags)
	for i := range urls {
		urls[i] = s.URL() + string(EndpointSearch) + "?" + url.Values{
			"query":        {"#tag" + strconv.Itoa(i) + " -is:retweet"},
			"max_results":  {"10"},
			"expansions":   {"author_id"},
			"tweet.fields": {"created_at,author_id"},
		}.Encode()
	}
	auth := make([]string, len(tokens))
	for i, t := range tokens {
		auth[i] = "Bearer " + t
	}
	runLoad(b, c, func(i int64) *http.Request {
		req, _ := http.NewRequest("GET", urls[i%benchTags], nil)
		req.Header["Authorization"] = []string{auth[i%int64(len(auth))]}
		return req
	})
}

// BenchmarkHelloLoopback is the baseline for BenchmarkSearchLoopback: a bare
// net/http handler on loopback with the same client and concurrency.
func BenchmarkHelloLoopback(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "hello")
	}))
	defer srv.Close()
	c := benchClient()
	defer c.CloseIdleConnections()
	u := srv.URL + "/hello?query=%23tag1+-is%3Aretweet"
	runLoad(b, c, func(i int64) *http.Request {
		req, _ := http.NewRequest("GET", u, nil)
		req.Header["Authorization"] = []string{"Bearer x"}
		return req
	})
}

// BenchmarkSearchHandler measures the search handler alone, without the
// network: what the sandbox itself costs per request.
func BenchmarkSearchHandler(b *testing.B) {
	s, tokens := benchServer(b)
	h := s.srv.Handler
	urls := make([]string, benchTags)
	for i := range urls {
		urls[i] = string(EndpointSearch) + "?" + url.Values{"query": {"#tag" + strconv.Itoa(i) + " -is:retweet"}, "max_results": {"10"}, "expansions": {"author_id"}, "tweet.fields": {"created_at,author_id"}}.Encode()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		req := httptest.NewRequest("GET", urls[i%benchTags], nil)
		req.Header["Authorization"] = []string{"Bearer " + tokens[i%len(tokens)]}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code, w.Body.String())
		}
	}
}
