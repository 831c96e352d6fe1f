# c10mprobe: see README.md. Root is needed for `test` to run its root tier
# (real sockets, sysctls); without root those tests skip and say why.

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
BIN      := c10mprobe
PREFIX   ?= /usr/local

TESTJSON ?= $(or $(TMPDIR),/tmp)/c10mprobe-test.json

.PHONY: help build install test race bench bench-matrix lint generate check-generated cross vmtest clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## build ./c10mprobe and, beside it, the lean worker it starts for each worker process
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/c10mprobe
	$(GO) build -o $(BIN)-worker ./cmd/c10mprobe-worker

install: build ## put c10mprobe and c10mprobe-worker side by side in $(PREFIX)/bin (root's PATH)
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BIN) $(BIN)-worker $(DESTDIR)$(PREFIX)/bin/

test: lint race ## vet, gofmt, the race detector, then every test (root tier as root), every skip listed with its reason; -p 1: the root tests share sysctls and slab counts
	$(GO) tool gotestsum --format pkgname --jsonfile $(TESTJSON) -- -count=1 -p 1 -timeout 20m ./...
	$(GO) run ./internal/testenv/skipreport $(TESTJSON)

race: ## the packages with goroutines and no eBPF under the race detector (the runner's in-process runs included)
	$(GO) test -race -count=1 -p 1 -timeout 10m ./runner ./record ./analysis ./internal/...

bench: ## benchmarks: rates and bytes per connection as ratios against baselines, then the prediction matrix (root)
	$(GO) test -run '^$$' -bench . -skip PredictionMatrix -benchtime 1x -timeout 30m ./bpf/ ./cmd/c10mprobe/
	$(MAKE) bench-matrix

bench-matrix: ## --machine-mem's predictions against runs on 2, 4 and 8 GiB machines (root; ≤ 90 min, resumes by cell from runs/prediction-matrix; writes docs/prediction-matrix.md)
	$(GO) test -run '^$$' -bench PredictionMatrix -benchtime 1x -timeout 100m ./cmd/c10mprobe/

lint: ## go vet, gofmt, every skip through testenv (a listed reason), and the sizes that keep the tree readable (internal/sizecheck)
	$(GO) vet ./...
	$(GO) run ./internal/sizecheck
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@out=$$(grep -rnE '\b(t|b|tb)\.(Skip|Skipf|SkipNow)\(' --include='*_test.go' . | grep -v '^./internal/testenv/'); \
	if [ -n "$$out" ]; then echo "skip through testenv.Skip, with a listed reason:"; echo "$$out"; exit 1; fi

cross: ## build every package for arm64 too (the bpf2go objects of both architectures)
	GOARCH=arm64 $(GO) build ./...
	GOARCH=arm64 $(GO) vet ./bpf

vmtest: ## boot Debian's stock 6.1 and 6.12 kernels under qemu and run the root tests and scenarios in them (root; VMTEST_FLAGS=--table docs/vmtest.md records the table)
	$(GO) run ./internal/vmtest $(VMTEST_FLAGS)

generate: ## rebuild the eBPF objects and Go bindings (needs clang, bpftool, libbpf-dev)
	cd bpf && $(GO) generate ./...

vmlinux: ## regenerate bpf/vmlinux.h from the running kernel's BTF
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > bpf/vmlinux.h

check-generated: generate ## fail if the committed bpf2go output differs from a fresh build
	@git diff --exit-code --stat -- bpf/probes_x86_bpfel.go bpf/probes_x86_bpfel.o bpf/probes_arm64_bpfel.go bpf/probes_arm64_bpfel.o || { echo "bpf/: the committed bpf2go output is stale; run make generate and commit"; exit 1; }

clean: ## remove the binary and local run directories
	rm -rf $(BIN) $(BIN)-worker runs
