package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"

	"tagwatch/cmd/internal/config"
)

// newLogger builds the daemon's logger from the configuration.
func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Daemon.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Daemon.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// runDaemon loads the configuration, opens the vault (checking the master
// key first) and runs until SIGTERM or SIGINT.
func runDaemon(cfgPath string, stderr io.Writer) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return &exitError{2, err}
	}
	logger := newLogger(cfg, stderr)
	db, err := openVault(cfg, logger)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger.Info("tagwatchd started", "version", Version(), "vault", db.Path())
	// READY only now: the master key opened the vault.
	if _, err := sddaemon.SdNotify(false, sddaemon.SdNotifyReady); err != nil {
		logger.Warn("sd_notify failed", "err", err)
	}
	<-ctx.Done()
	logger.Info("tagwatchd stopping")
	_, _ = sddaemon.SdNotify(false, sddaemon.SdNotifyStopping)
	if err := db.Close(); err != nil {
		return fmt.Errorf("close vault: %w", err)
	}
	return nil
}
