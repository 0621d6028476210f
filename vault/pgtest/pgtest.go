// Package pgtest starts a real, throwaway PostgreSQL cluster for tests, as
// vault/hydratest starts Ory Hydra: initdb into a temporary directory,
// postgres listening on a unix socket only (no TCP), trust authentication
// for the one role it creates, and every byte removed when the test
// binary's cluster stops. Tests get a fresh database each (CreateDB).
//
// The binaries are Debian's (apt-get install postgresql, which .ci/run
// does): TAGWATCH_PG_BIN names their directory, else the newest
// /usr/lib/postgresql/*/bin, else PATH. Without them a test is skipped,
// or fails under CI_STRICT=1. PostgreSQL refuses to run as root: as root,
// initdb and postgres run as the unprivileged user nobody (setpriv,
// util-linux), owning the cluster's directory.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Role is the superuser role the cluster is created with.
const Role = "tagwatch"

// Cluster is one running PostgreSQL cluster.
type Cluster struct {
	bin     string // directory of initdb, pg_ctl, postgres
	dir     string // the cluster's directory: data/, the socket, the log
	asUser  bool   // run the binaries as nobody (we are root)
	options string // postgres -o options
	dbs     atomic.Int64
}

// Bin returns the directory of the PostgreSQL binaries, skipping t (or
// failing it under CI_STRICT=1) when there is none.
func Bin(t testing.TB) string {
	t.Helper()
	if d, err := FindBin(); err == nil {
		return d
	}
	if os.Getenv("CI_STRICT") == "1" {
		t.Fatalf("PostgreSQL not found (.ci/run installs Debian's postgresql; or set TAGWATCH_PG_BIN)")
	}
	t.Skipf("PostgreSQL not found: apt-get install postgresql, or set TAGWATCH_PG_BIN, or run .ci/run")
	return ""
}

// version is the major version in a /usr/lib/postgresql/N/bin/postgres
// path, 0 when there is none.
// FindBin returns the directory of the PostgreSQL binaries (as Bin), or
// an error when there is none.
func FindBin() (string, error) {
	if d := os.Getenv("TAGWATCH_PG_BIN"); d != "" {
		return d, nil
	}
	if ms, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres"); len(ms) > 0 {
		sort.Slice(ms, func(i, j int) bool { return version(ms[i]) > version(ms[j]) })
		return filepath.Dir(ms[0]), nil
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("pgtest: PostgreSQL not found: apt-get install postgresql, or set TAGWATCH_PG_BIN")
}

func version(path string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return n
}

// Start initdbs and starts a cluster that stops, and is removed, when t
// ends. fsync is off: a test that is about durability across a crash of
// the machine cannot be one here anyway (the kill -9 of a daemon is not
// one either: PostgreSQL's own WAL is flushed to the kernel).
func Start(t testing.TB) *Cluster {
	t.Helper()
	bin := Bin(t)
	start := time.Now()
	c, stop, err := Launch(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	t.Logf("pgtest: PostgreSQL (%s) ready in %s, socket in %s", bin, time.Since(start).Round(time.Millisecond), c.dir)
	return c
}

// Launch starts a cluster with the binaries in bin outside a test (the
// benchmark program), as Start does; stop stops it and removes every
// byte of it.
func Launch(bin string) (c *Cluster, stop func(), err error) {
	dir, err := os.MkdirTemp("", "tagwatch-pg-")
	if err != nil {
		return nil, nil, err
	}
	c = &Cluster{bin: bin, dir: dir, asUser: os.Geteuid() == 0,
		options: fmt.Sprintf("-c listen_addresses='' -k %s -c fsync=off -c synchronous_commit=on -c max_connections=200", dir)}
	stop = func() {
		c.stop("immediate")
		os.RemoveAll(dir)
	}
	if c.asUser {
		if err := os.Chown(dir, 65534, 65534); err != nil {
			stop()
			return nil, nil, err
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		stop()
		return nil, nil, err
	}
	if out, err := c.run("initdb", "-D", c.data(), "-A", "trust", "-U", Role, "--no-sync", "-E", "UTF8", "--locale=C"); err != nil {
		stop()
		return nil, nil, fmt.Errorf("pgtest: initdb: %v\n%s", err, out)
	}
	if err := c.Start(); err != nil {
		stop()
		return nil, nil, err
	}
	return c, stop, nil
}

func (c *Cluster) data() string { return filepath.Join(c.dir, "data") }

// run runs one of the binaries, as nobody when we are root.
func (c *Cluster) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	if c.asUser {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd.CombinedOutput()
}

// Start starts the cluster's postgres (again, after Stop) and waits until
// it accepts connections.
func (c *Cluster) Start() error {
	if out, err := c.run("pg_ctl", "-D", c.data(), "-o", c.options, "-l", filepath.Join(c.dir, "log"), "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "log"))
		return fmt.Errorf("pgtest: pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	return nil
}

// Stop stops postgres at once (pg_ctl -m immediate: as a crash, recovered
// from WAL at the next Start); its clients see their connections end.
func (c *Cluster) Stop() error { return c.stop("immediate") }

func (c *Cluster) stop(mode string) error {
	if out, err := c.run("pg_ctl", "-D", c.data(), "-m", mode, "-w", "stop"); err != nil && !strings.Contains(string(out), "PID file") {
		return fmt.Errorf("pgtest: pg_ctl stop: %v\n%s", err, out)
	}
	return nil
}

// DSN returns the connection string of database db on the cluster's
// socket, as the role Role.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("host=%s user=%s dbname=%s sslmode=disable", c.dir, Role, db)
}

// NewDB creates a fresh, empty database and returns its name (CreateDB
// without a test: nothing drops it but the cluster's end).
func (c *Cluster) NewDB(ctx context.Context) (string, error) {
	name := fmt.Sprintf("t%d_%d", os.Getpid(), c.dbs.Add(1))
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return "", fmt.Errorf("pgtest: connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	return name, nil
}

// CreateDB creates a fresh, empty database for t (dropped when t ends)
// and returns its name.
func (c *Cluster) CreateDB(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name, err := c.NewDB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, c.DSN("postgres"))
		if err != nil {
			return // the cluster is gone: its directory goes with it
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	})
	return name
}

// ErrNoCluster is returned by Log when the cluster wrote no log.
var ErrNoCluster = errors.New("pgtest: no server log")

// Log returns the server's log so far, for a failing test to show.
func (c *Cluster) Log() (string, error) {
	b, err := os.ReadFile(filepath.Join(c.dir, "log"))
	if err != nil {
		return "", ErrNoCluster
	}
	return string(b), nil
}

// StartStandby starts a streaming standby of c (pg_basebackup -R into a
// directory of its own, its own socket), stopped and removed when t
// ends, and returns it. The primary's replication is asynchronous until
// the test sets synchronous_standby_names on it (ALTER SYSTEM, then
// pg_reload_conf()); the standby's application_name is name.
func (c *Cluster) StartStandby(t testing.TB, name string) *Cluster {
	t.Helper()
	dir, err := os.MkdirTemp("", "tagwatch-pg-standby-")
	if err != nil {
		t.Fatal(err)
	}
	s := &Cluster{bin: c.bin, dir: dir, asUser: c.asUser,
		options: fmt.Sprintf("-c listen_addresses='' -k %s -c fsync=off -c hot_standby=on -c max_connections=200", dir)}
	t.Cleanup(func() {
		s.stop("immediate")
		os.RemoveAll(dir)
	})
	if s.asUser {
		if err := os.Chown(dir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := s.run("pg_basebackup", "-h", c.dir, "-U", Role, "-D", s.data(), "-R", "-X", "stream", "--no-sync", "--checkpoint=fast",
		"-d", "application_name="+name); err != nil {
		t.Fatalf("pgtest: pg_basebackup: %v\n%s", err, out)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	return s
}
