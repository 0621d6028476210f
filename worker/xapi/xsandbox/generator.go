package xsandbox

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Generator describes a stream of synthetic posts; see
// [Server.RunGenerator].
type Generator struct {
	// Rate is the number of posts per second (wall-clock time); required.
	Rate float64
	// Hashtags are drawn from for every post, with or without the leading
	// #; at least one is required.
	Hashtags []string
	// TagsPerPost is how many distinct hashtags each post carries; default
	// 1, at most len(Hashtags).
	TagsPerPost int
	// AuthorIDs are drawn from for every post; default all users at the
	// time the generator starts (there must be some).
	AuthorIDs []string
	// Langs are drawn from for every post; default ["en"].
	Langs []string
	// RetweetRatio is the share of posts that are reposts, 0 to 1.
	RetweetRatio float64
	// Seed makes the stream reproducible; 0 picks a random seed.
	Seed uint64
}

func (s *Server) prepareGenerator(g Generator) (Generator, error) {
	if g.Rate <= 0 {
		return g, errors.New("xsandbox: generator: rate must be positive")
	}
	if len(g.Hashtags) == 0 {
		return g, errors.New("xsandbox: generator: no hashtags")
	}
	tags := make([]string, len(g.Hashtags))
	for i, t := range g.Hashtags {
		tags[i] = strings.TrimPrefix(t, "#")
		// The whole of it must be one hashtag: "go lang" would post #go.
		if got := extractHashtags("#"+tags[i], nil); len(got) != 1 || got[0] != tagKey(tags[i]) {
			return g, fmt.Errorf("xsandbox: generator: invalid hashtag %q", t)
		}
	}
	g.Hashtags = tags
	if g.TagsPerPost <= 0 {
		g.TagsPerPost = 1
	}
	g.TagsPerPost = min(g.TagsPerPost, len(tags))
	if len(g.AuthorIDs) == 0 {
		g.AuthorIDs = s.store.userIDs()
	}
	if len(g.AuthorIDs) == 0 {
		return g, errors.New("xsandbox: generator: no users to post as")
	}
	if len(g.Langs) == 0 {
		g.Langs = []string{"en"}
	}
	if g.Seed == 0 {
		g.Seed = rand.Uint64()
	}
	return g, nil
}

// RunGenerator posts at g.Rate until ctx is done or the server is closed,
// then returns nil. It returns an error at once for an invalid g. The
// caller owns the goroutine that runs it; [Server.StartGenerator] is the
// variant owned by the server.
func (s *Server) RunGenerator(ctx context.Context, g Generator) error {
	g, err := s.prepareGenerator(g)
	if err != nil {
		return err
	}
	return s.runGenerator(ctx, g)
}

func (s *Server) runGenerator(ctx context.Context, g Generator) error {
	rng := rand.New(rand.NewPCG(g.Seed, g.Seed^0x9e3779b97f4a7c15))
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var n int64
	var batch []Post
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.closing:
			return nil
		case <-tick.C:
		}
		due := int64(time.Since(start).Seconds() * g.Rate)
		batch = batch[:0]
		for ; n < due; n++ {
			var b strings.Builder
			fmt.Fprintf(&b, "sandbox post %d", n)
			for _, i := range rng.Perm(len(g.Hashtags))[:g.TagsPerPost] {
				b.WriteString(" #")
				b.WriteString(g.Hashtags[i])
			}
			batch = append(batch, Post{
				AuthorID:  g.AuthorIDs[rng.IntN(len(g.AuthorIDs))],
				Text:      b.String(),
				Lang:      g.Langs[rng.IntN(len(g.Langs))],
				IsRetweet: rng.Float64() < g.RetweetRatio,
			})
		}
		s.PostBatch(batch)
	}
}

// StartGenerator checks g and runs it in a goroutine owned by the server
// until ctx is done or the server is closed. wait blocks until that
// goroutine has returned; [Server.Close] also waits for it.
func (s *Server) StartGenerator(ctx context.Context, g Generator) (wait func(), err error) {
	g, err = s.prepareGenerator(g)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.genWG.Add(1)
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer s.genWG.Done()
		defer close(done)
		_ = s.runGenerator(ctx, g) // only fails validation, done above
	}()
	return func() { <-done }, nil
}
