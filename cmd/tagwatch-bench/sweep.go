package main

func runSweep(args []string, counts, chart string) error { return nil }
