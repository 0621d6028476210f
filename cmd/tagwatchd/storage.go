package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"tagwatch/cmd/internal/config"
	"tagwatch/vault/kv"
	"tagwatch/vault/kv/pgkv"
	"tagwatch/vault/seal"
)

// openEngine opens the storage engine [storage] names for vault.Open: nil
// for bbolt (vault.Open opens daemon.database itself), else the
// PostgreSQL engine, with the password read from its secret file or
// credential, the schema brought up to date, and the server's
// replication checked: a standby that does not confirm commits is
// logged as a warning, or refused (exit 78) under storage.synchronous =
// "refuse". The caller closes the engine (vault.DB.Close does).
func openEngine(ctx context.Context, cfg *config.Config, logger *slog.Logger) (kv.Engine, error) {
	st := cfg.Storage
	if st.Engine != "postgres" {
		return nil, nil
	}
	var password string
	if src, key := cfg.StoragePassword(); !src.IsZero() {
		b, err := seal.ReadSecretFile(src)
		if err != nil {
			return nil, &exitError{exitConfig, cfg.KeyError(key, err)}
		}
		password = strings.TrimRight(string(b), "\r\n")
		clear(b)
	}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	e, err := pgkv.Open(octx, pgkv.Options{DSN: st.DSN, Password: password})
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	r, err := e.ReadReplication(octx)
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("storage: %w", err)
	}
	if risk := r.Risk(); risk != "" {
		if st.Synchronous == "refuse" {
			e.Close()
			return nil, &exitError{exitConfig, cfg.KeyError("storage.synchronous", errors.New("refused: "+risk))}
		}
		logger.Warn("storage: commits are not safe from a failover", "risk", risk,
			"synchronous_commit", r.SynchronousCommit, "synchronous_standby_names", r.SynchronousStandbyNames,
			"standbys", r.Standbys, "sync_standbys", r.SyncStandbys)
	}
	return e, nil
}

// vaultPath is vault.Options.Path: the bbolt file, "" for another engine.
func vaultPath(cfg *config.Config) string {
	if cfg.Storage.Engine == "postgres" {
		return ""
	}
	return cfg.DatabasePath()
}

// vaultName names the vault for people: the bbolt file, or the
// PostgreSQL database (its connection string, which holds no password:
// config.CheckDSN).
func vaultName(cfg *config.Config) string {
	if cfg.Storage.Engine == "postgres" {
		return "in PostgreSQL (" + cfg.Storage.DSN + ")"
	}
	return cfg.DatabasePath()
}
