// Package browsertest drives headless Chromium for the tests that look at
// pages as people do: tagwatch's consent pages (vault/enroll), the X
// sandbox's consent and control pages (worker/xapi/xsandbox), and the
// service walk-through that goes through both (cmd/tagwatchd). It starts
// the browser, saves full-page screenshots at a phone's and a desktop's
// size, and fails a test whose page does not fit its screen's width.
//
// Only tests import it: it is how chromedp stays out of the binaries. Its
// functions are safe for concurrent use by different tests; one browsing
// context is for one goroutine at a time.
package browsertest

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Chromium returns the path of Debian's Chromium: $TAGWATCH_CHROMIUM,
// else /usr/bin/chromium. Under CI_STRICT=1 (set by .ci/run) a missing
// browser fails the test; otherwise the test is skipped with a message.
func Chromium(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("TAGWATCH_CHROMIUM")
	if bin == "" {
		bin = "/usr/bin/chromium"
	}
	if _, err := exec.LookPath(bin); err != nil {
		if os.Getenv("CI_STRICT") == "1" {
			t.Fatalf("chromium not found at %s (.ci/run installs Debian's chromium): %v", bin, err)
		}
		t.Skipf("chromium not found at %s: apt-get install chromium chromium-driver, or run .ci/run", bin)
	}
	return bin
}

// New starts headless Chromium (Chromium) for the test, with a fresh
// profile and a 1280x900 window, and returns its browsing context, which
// ends after timeout; the browser is stopped when the test ends.
//
// Scrollbars are hidden, as on a phone, where they overlay the page: a
// classic scrollbar takes 15 px of a tall page's width, and a full-page
// screenshot of such a page is cut to the width left beside it while the
// page is laid out again without it, so the screenshot loses the page's
// right edge.
func New(t testing.TB, timeout time.Duration) context.Context {
	t.Helper()
	bin := Chromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	return bctx
}

// Screen is a screen pages are looked at on: W by H CSS pixels, at Scale
// device pixels per CSS pixel.
type Screen struct {
	Name  string
	W, H  int64
	Scale float64
}

// Phone and Desktop are the screens Shoot saves.
var (
	Phone   = Screen{"phone", 390, 844, 2}
	Desktop = Screen{"desktop", 1280, 900, 1}
)

// Use makes bctx's viewport the screen s.
func Use(bctx context.Context, s Screen) error {
	return chromedp.Do(bctx, chromedp.EmulateViewport(s.W, s.H, chromedp.EmulateScale(s.Scale)))
}

// Dir is where screenshots go: $TAGWATCH_ARTIFACTS/screenshots, else
// artifacts/screenshots at the root of the module the test runs in; it is
// created if needed.
func Dir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("TAGWATCH_ARTIFACTS")
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		root := wd
		for {
			if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
				break
			}
			up := filepath.Dir(root)
			if up == root {
				t.Fatalf("no go.mod above %s: set TAGWATCH_ARTIFACTS", wd)
			}
			root = up
		}
		dir = filepath.Join(root, "artifacts")
	}
	dir = filepath.Join(dir, "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Shoot saves the page in bctx as Dir/name-phone.png and
// Dir/name-desktop.png, full-page screenshots on the Phone and the
// Desktop. At each size the test fails if the page does not fit the
// screen's width (FitsWidth) or the screenshot is narrower than the
// screen. The viewport is left on the Desktop.
func Shoot(t testing.TB, bctx context.Context, name string) {
	t.Helper()
	dir := Dir(t)
	for _, s := range []Screen{Phone, Desktop} {
		if err := Use(bctx, s); err != nil {
			t.Fatalf("viewport %s: %v", s.Name, err)
		}
		FitsWidth(t, bctx, name+"-"+s.Name)
		b, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s-%s: %v", name, s.Name, err)
		}
		cfg, err := png.DecodeConfig(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("screenshot %s-%s is not a PNG (%d bytes): %v", name, s.Name, len(b), err)
		}
		if want := int(float64(s.W) * s.Scale); cfg.Width != want {
			t.Errorf("screenshot %s-%s is %d pixels wide, want %d (%d CSS px at %gx): it cuts the page off",
				name, s.Name, cfg.Width, want, s.W, s.Scale)
		}
		path := filepath.Join(dir, name+"-"+s.Name+".png")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s", path)
	}
}

// overflowJS lists what sticks out of the viewport's width, or out of
// the page's card (its main element): the document when it scrolls
// sideways, and each element of the card whose box ends right of the
// card's content edge or whose content is wider than its box.
const overflowJS = `(() => {
	const out = [], vw = document.documentElement.clientWidth, main = document.querySelector("main");
	if (document.documentElement.scrollWidth > vw) out.push("document " + document.documentElement.scrollWidth + " > viewport " + vw);
	if (!main) return out;
	const m = main.getBoundingClientRect(), edge = m.right - parseFloat(getComputedStyle(main).paddingRight) + 0.5;
	if (m.right > vw + 0.5) out.push("main ends at " + m.right + " > viewport " + vw);
	for (const e of main.querySelectorAll("*")) {
		const r = e.getBoundingClientRect();
		if (r.right > edge || e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX === "visible")
			out.push(e.tagName.toLowerCase() + (e.className ? "." + e.className : "") + " (" + Math.round(r.right) + " > " +
				Math.round(edge) + "): " + e.textContent.trim().slice(0, 60));
	}
	return out;
})()`

// FitsWidth fails the test (what names the page) when anything on the
// page in bctx sticks out of the viewport's width or out of its card.
func FitsWidth(t testing.TB, bctx context.Context, what string) {
	t.Helper()
	over, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](overflowJS))
	if err != nil {
		t.Fatalf("measure %s: %v", what, err)
	}
	if len(over) > 0 {
		t.Errorf("%s does not fit its width:\n%s", what, strings.Join(over, "\n"))
	}
}
