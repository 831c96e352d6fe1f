package bpf

//go:generate go tool bpf2go -tags linux -cc clang -cflags "-O2 -g -mcpu=v3 -Wall -Werror" -target amd64,arm64 -type counters -type cache_stats -type cache_name -type sock_mem -type stack_key -type site_stats -type cpu_key probes c10m.bpf.c
