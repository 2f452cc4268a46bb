"""Benchmarks: measurement only. Each writes JSON under bench/results/ and prints a table;
nothing imports bench/ but the CLI's `bench` command."""
