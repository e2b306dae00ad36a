# sinkhole: build, run, test, benchmark.
GO       ?= go
BIN      := bin/sinkhole
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)
DATE     ?= $(shell git log -1 --format=%cI 2>/dev/null)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
# make run: serve on 127.0.0.1:5353 with the shipped lists, upstreams from /etc/resolv.conf.
RUN_ARGS ?= --listen 127.0.0.1:5353 --lists ./lists

.PHONY: all build run test test-short interop vet fmt bench bench-deps bench-scale profile fuzz clean static deb image release

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/sinkhole

run: build
	./$(BIN) serve $(RUN_ARGS)

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

# The full suite, with the race detector. Integration tests start real
# servers on loopback ports; dig is used where installed. The longest
# package (blocklist: the delta, merge and parser property tests) takes
# about 7 minutes under -race on a quiet 2-core machine; the timeout
# leaves room for a slower one.
test: vet alerts
	$(GO) test -race -count=1 -timeout 20m ./...

.PHONY: alerts
# The Prometheus alert rules: syntax (promtool check rules) and behaviour
# (promtool test rules). promtool ships with Debian's prometheus package;
# CI installs it, elsewhere a missing promtool is skipped with a note.
alerts:
	@if command -v promtool >/dev/null 2>&1; then \
		promtool check rules docs/prometheus-alerts.yml && \
		cd docs && promtool test rules prometheus-alerts.test.yml; \
	elif [ -n "$$CI" ]; then echo "make alerts: promtool not installed (Debian package prometheus)"; exit 1; \
	else echo "make alerts: promtool not installed (Debian package prometheus); alert rules not checked"; fi

test-short:
	$(GO) test -count=1 ./...

# RPZ distribution: BIND and Knot primaries feeding sinkhole, Unbound
# pulling sinkhole's export, one primary and ten secondaries (prints the
# propagation time). Needs bind9, knot and unbound (see .ci/run); each test
# skips when its daemon is missing.
interop:
	$(GO) test -count=1 -v -run 'TestInterop|TestRPZScaleOut' ./cmd/sinkhole/

# Go native fuzzing: each target runs for FUZZTIME (go test -fuzz runs one
# target at a time). New interesting inputs are minimized for at most
# FUZZMINIMIZE so that short runs keep fuzzing. A crasher is written to the
# package's testdata/fuzz/<Target>/ and fails the run. Go's fuzzer can end
# a run with "context deadline exceeded" and no failing input when the time
# runs out mid-minimization (seen here on FuzzSet): that target runs once
# more, and fails the run if it fails again.
FUZZTIME     ?= 30s
FUZZMINIMIZE ?= 2s
FUZZ_TARGETS := ./blocklist:FuzzParseList ./blocklist:FuzzNormalizeName ./blocklist:FuzzRPZStreamMatchesGeneral \
                ./resolver:FuzzServerAnswer ./resolver/acl:FuzzSet ./resolver/rpz:FuzzMerkle3 \
                ./resolver/ratelimit:FuzzResponseKey ./resolver/scrub:FuzzMessage \
                ./cmd/sinkhole:FuzzConfig ./cmd/sinkhole:FuzzAdminQuery

fuzz:
	@found=$$(grep -rhoE '^func Fuzz[A-Za-z0-9_]+' --include='*_test.go' . | wc -l); \
	 test "$$found" -eq $(words $(FUZZ_TARGETS)) || \
	 { echo "make fuzz: $$found fuzz targets in the tree, $(words $(FUZZ_TARGETS)) in FUZZ_TARGETS"; exit 1; }
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "== $$name ($$pkg), $(FUZZTIME)"; \
	  out=$$(mktemp); rc=0; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) $$pkg >$$out 2>&1 || rc=$$?; \
	  cat $$out; \
	  if [ $$rc -ne 0 ]; then \
	    if grep -q 'context deadline exceeded' $$out && ! grep -q 'Failing input written' $$out; then \
	      echo "== $$name: the fuzzer's own end-of-time error, no failing input: once more"; \
	      $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) $$pkg; \
	    else rm -f $$out; exit $$rc; fi; \
	  fi; rm -f $$out; \
	done

# make bench: sinkhole, Unbound (the list as RPZ) and dnsmasq side by side
# with dnsperf; writes its section of docs/benchmarks.md. About 6 minutes
# with the defaults on a quiet machine (at most 5 more waiting for quiet and
# rerunning noisy workloads). Quick run:
#   make bench BENCH_DOMAINS=10000 BENCH_DURATION=2 BENCH_OUT=
BENCH_DOMAINS  ?= 1000000
BENCH_DURATION ?= 10
BENCH_RATE     ?= 5000
BENCH_SERVERS  ?= sinkhole,unbound,dnsmasq
BENCH_OUT      ?= docs/benchmarks.md
BENCH_FLAGS    ?=
# BENCH_NAME_LEN=28 lists names of about 28 characters (0: 3-18 character labels).
BENCH_NAME_LEN ?= 0
PROFILE_DIR    ?= bin/profiles

bench: build bench-deps
	$(GO) build -o bin/benchupstream ./cmd/benchupstream
	$(GO) build -o bin/benchrun ./cmd/benchrun
	./bin/benchrun -domains $(BENCH_DOMAINS) -duration $(BENCH_DURATION)s -rate $(BENCH_RATE) \
		-servers $(BENCH_SERVERS) -name-len $(BENCH_NAME_LEN) -out '$(BENCH_OUT)' $(BENCH_FLAGS)

# make profile: sinkhole alone under make bench's workloads, a CPU profile
# of each max-throughput run in $(PROFILE_DIR)/ and its top functions
# printed (go tool pprof -top). Look further with
#   go tool pprof -http 127.0.0.1:8080 bin/sinkhole $(PROFILE_DIR)/sinkhole-cached.pprof
profile: build bench-deps
	$(GO) build -o bin/benchupstream ./cmd/benchupstream
	$(GO) build -o bin/benchrun ./cmd/benchrun
	./bin/benchrun -domains $(BENCH_DOMAINS) -duration $(BENCH_DURATION)s -rate $(BENCH_RATE) \
		-servers sinkhole -name-len $(BENCH_NAME_LEN) -profile $(PROFILE_DIR) -out '' $(BENCH_FLAGS)

# Installs dnsperf, unbound and dnsmasq from Debian when missing (dnsmasq-base:
# the binary without the system service), and stops system unbound/dnsmasq
# services if they run.
bench-deps:
	@missing=""; \
	command -v taskset >/dev/null 2>&1 || missing="$$missing util-linux"; \
	command -v dnsperf >/dev/null 2>&1 || missing="$$missing dnsperf"; \
	test -x /usr/sbin/unbound || command -v unbound >/dev/null 2>&1 || missing="$$missing unbound"; \
	test -x /usr/sbin/dnsmasq || command -v dnsmasq >/dev/null 2>&1 || missing="$$missing dnsmasq-base"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "make bench needs:$$missing (apt-get install as root)"; exit 1; fi; \
		echo "installing$$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing || exit 1; \
	fi; \
	for s in unbound dnsmasq; do \
		if [ -x /etc/init.d/$$s ] && /etc/init.d/$$s status >/dev/null 2>&1; then \
			echo "stopping the system $$s service"; /etc/init.d/$$s stop; \
		fi; \
	done

# A static binary (no cgo) for the package and the container image.
static:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/sinkhole-static ./cmd/sinkhole

# make deb: dist/sinkhole_<version>_<arch>.deb, built with nfpm (pinned in
# tools/go.mod, fetched from the Go module proxy): the binary, the systemd
# unit, /etc/sinkhole/sinkhole.yaml and /etc/sinkhole/lists/ as conffiles,
# the man page and the completions (packaging/nfpm.yaml).
DIST        ?= dist
DEB_ARCH    ?= $(shell $(GO) env GOARCH)
# v0.2.0 -> 0.2.0; v0.2.0-3-gabc1234 -> 0.2.0+git3.abc1234; no tag -> 0~git<commit>
DEB_VERSION ?= $(shell d=$$(git describe --tags --match 'v[0-9]*' 2>/dev/null | sed -E 's/^v//; s/-([0-9]+)-g([0-9a-f]+)$$/+git\1.\2/'); echo "$${d:-0~git$$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}")

bin/nfpm: tools/go.mod tools/go.sum
	cd tools && $(GO) build -o ../bin/nfpm github.com/goreleaser/nfpm/v2/cmd/nfpm

deb: static bin/nfpm
	rm -rf build/deb && mkdir -p build/deb $(DIST)
	./bin/sinkhole-static man | gzip -9n > build/deb/sinkhole.8.gz
	./bin/sinkhole-static completion bash > build/deb/sinkhole.bash
	./bin/sinkhole-static completion zsh > build/deb/_sinkhole
	./bin/sinkhole-static completion fish > build/deb/sinkhole.fish
	DEB_ARCH=$(DEB_ARCH) DEB_VERSION=$(DEB_VERSION) ./bin/nfpm package --packager deb --config packaging/nfpm.yaml --target $(DIST)/

# make image: the container image sinkhole:<version> (and :latest) from
# Containerfile: the static binary on scratch, no base image to download.
# PODMAN_FLAGS: e.g. --storage-driver vfs where overlay is not available.
PODMAN       ?= podman
PODMAN_FLAGS ?=
IMAGE        ?= localhost/sinkhole
IMAGE_TAG    ?= $(shell echo '$(VERSION)' | tr -c 'A-Za-z0-9_.\n-' '-')

image: static
	rm -rf build/image && mkdir -p build/image/etc/sinkhole/lists build/image/etc/ssl/certs build/image/var/lib/sinkhole
	cp bin/sinkhole-static build/image/sinkhole
	cp lists/*.txt build/image/etc/sinkhole/lists/
	cp packaging/container.yaml build/image/etc/sinkhole/sinkhole.yaml
	if [ -f /etc/ssl/certs/ca-certificates.crt ]; then cp /etc/ssl/certs/ca-certificates.crt build/image/etc/ssl/certs/; fi
	$(PODMAN) $(PODMAN_FLAGS) build --network=none -f Containerfile -t $(IMAGE):$(IMAGE_TAG) -t $(IMAGE):latest build/image

# make release: tag the commit v$(RELEASE) (annotated, from CHANGELOG.md's
# section), then build the package and the image of that tag. Nothing is
# pushed: push the tag and upload dist/ yourself.
RELEASE ?= 0.2.0
release:
	@test -z "$$(git status --porcelain)" || { echo "make release: the work tree has changes"; exit 1; }
	@grep -q '^## \[$(RELEASE)\]' CHANGELOG.md || { echo "make release: CHANGELOG.md has no section [$(RELEASE)]"; exit 1; }
	git tag -a --cleanup=verbatim v$(RELEASE) -m "sinkhole $(RELEASE)" -m "$$(awk '/^## \[$(RELEASE)\]/{f=1;next} /^## \[/{f=0} f' CHANGELOG.md)"
	$(MAKE) deb VERSION=v$(RELEASE)

clean:
	rm -rf bin build dist

# make bench-scale: what regulator-scale lists cost (1M and 10M names,
# native and RPZ: cold load, a one-line change, 40 reloads; peak and
# steady RSS, CPU time) and what feeds cost (first AXFR of a 1M-name
# zone; a one-name change until 10 sinkhole secondaries of a sinkhole
# primary (with and without ZONEMD) and of a BIND primary block it, from
# the edit and from the primary's reload), with real bin/sinkhole and
# named processes on loopback; writes its section of docs/benchmarks.md.
# About 11 minutes on the quiet 2-core VM with all three primaries (15 at
# load average 7 to 15 with two). BENCH_SCALE_FLAGS: more bin/benchscale flags
# (bin/benchscale -h), e.g. -names 100000 -runs 1 for a quick run, or
# -modes axfr,ixfr -primaries bind -secondaries 3.
BENCH_SCALE_OUT   ?= docs/benchmarks.md
BENCH_SCALE_FLAGS ?=
bench-scale: build
	$(GO) build -o bin/benchscale ./cmd/benchscale
	./bin/benchscale -out '$(BENCH_SCALE_OUT)' $(BENCH_SCALE_FLAGS)
