# Sluice: stateful stream processing on Kubernetes, and its simulated twin.
# `make help` lists the targets.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO            ?= go
BIN           := $(CURDIR)/bin
CONTROLLER_GEN := $(BIN)/controller-gen
CONTROLLER_TOOLS_VERSION ?= v0.17.2
NAME          ?=
BACKEND       ?= sim
ARGS          ?=
IMAGE_TAG     ?= dev
# REGISTRY prefixes both images, e.g. REGISTRY=ghcr.io/you/ (with the slash).
REGISTRY      ?=
IMG           ?= $(REGISTRY)sluice-operator:$(IMAGE_TAG)
PE_IMG        ?= $(REGISTRY)sluice-pe:$(IMAGE_TAG)
KUBECTL       ?= $(shell command -v kubectl 2>/dev/null || echo /var/cache/offline-k8s/v1.32.2/bin/kubectl)
GO_TEST_FLAGS ?=

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target> [NAME=experiment] [BACKEND=sim|kind|kind-baseline]\n"} \
	/^[a-zA-Z0-9_-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } \
	/^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code from the API markers.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./platform/api/...

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs and RBAC under config/ from markers.
	$(CONTROLLER_GEN) crd paths=./platform/api/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=sluice-operator paths=./platform/operator/... output:rbac:artifacts:config=config/rbac

.PHONY: build
build: ## Build the operator, PE runtime and experiment runner into bin/.
	$(GO) build -o $(BIN)/ ./cmd/...

.PHONY: vet
vet: ## go vet every package.
	$(GO) vet ./...

.PHONY: tidy-check
tidy-check: ## Fail when go.mod or go.sum is not tidy.
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy and commit"; exit 1; }

.PHONY: test
test: manifests generate vet tidy-check ## Run every test; envtest gets a real kube-apiserver and etcd (see hack/envtest-assets.sh).
	@assets=$$(hack/envtest-assets.sh) && echo "envtest assets: $$assets" && \
	KUBEBUILDER_ASSETS=$$assets SLUICE_REQUIRE_ENVTEST=1 $(GO) test $(GO_TEST_FLAGS) ./...
	@git diff --exit-code --stat -- config platform/api || { echo "generated files are stale: run make generate manifests and commit"; exit 1; }

.PHONY: bench
bench: build ## Benchmarks: platform writes and CPU per PE, PE-to-PE link throughput/latency/memory, simulator engine.
	$(GO) test -run '^$$' -bench Submit1000PEs -benchtime 3x ./platform/wiring/
	$(BIN)/pe bench
	$(GO) test -run '^$$' -bench . -benchtime 2000000x -cpu 1 ./sim/engine/

.PHONY: e2e
e2e: ## End-to-end tests on a real kind cluster (made and removed here; skips without Docker).
	hack/kind-e2e.sh

##@ Experiments

.PHONY: experiment
experiment: ## Run one experiment: make experiment NAME=recovery [BACKEND=sim|kind|kind-baseline] [ARGS="-baseline -points pes=8 -reps 5"]; writes results/ and plots/.
	@test -n "$(NAME)" || { echo "usage: make experiment NAME=<submission|oversubscription|latency|gc|recovery|checkpoint> [BACKEND=sim|kind|kind-baseline] [ARGS=...]"; exit 2; }
	@if [ "$(BACKEND)" != sim ]; then $(MAKE) image; fi
	$(GO) run ./cmd/experiment -name $(NAME) -backend $(BACKEND) -out results -plots plots $(ARGS)

.PHONY: experiments
experiments: ## Run all six experiments on BACKEND (default sim).
	$(GO) run ./cmd/experiment -all -backend $(BACKEND) -out results -plots plots

.PHONY: plots
plots: ## Redraw every figure under plots/ from results/, and results/COMPARISON.md (sim vs measured).
	$(GO) run ./cmd/experiment -all -plots-only -out results -plots plots -compare results/COMPARISON.md

##@ Images

.PHONY: image
image: ## Build the operator and PE images FROM scratch, tagged IMG and PE_IMG (default REGISTRY + sluice-{operator,pe}:IMAGE_TAG; nothing is pulled).
	mkdir -p $(BIN)/linux
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -ldflags "-s -w" -o $(BIN)/linux/ ./cmd/operator ./cmd/pe
	docker build -f build/Dockerfile --build-arg BIN=operator -t $(IMG) $(BIN)/linux
	docker build -f build/Dockerfile --build-arg BIN=pe -t $(PE_IMG) $(BIN)/linux

.PHONY: push
push: ## Push IMG and PE_IMG to their registry (make image push REGISTRY=you.registry/path/ IMAGE_TAG=v1).
	docker push $(IMG)
	docker push $(PE_IMG)

##@ Install on a cluster (the current kubeconfig context)

.PHONY: install
install: ## Install the CRDs (config/crd).
	$(GO) run ./cmd/manifests -crds | $(KUBECTL) apply --server-side -f -

.PHONY: uninstall
uninstall: ## Remove the CRDs, and with them every Sluice object.
	$(GO) run ./cmd/manifests -crds | $(KUBECTL) delete --ignore-not-found -f -

.PHONY: deploy
deploy: ## Deploy Sluice (config/default: CRDs, RBAC, operator, metrics Service): make deploy IMG=... PE_IMG=...
	$(GO) run ./cmd/manifests -img $(IMG) -pe-img $(PE_IMG) | $(KUBECTL) apply --server-side -f -
	$(KUBECTL) -n sluice-system rollout status deployment/sluice-operator --timeout=3m

.PHONY: undeploy
undeploy: ## Remove what deploy installed (the CRDs too: every Job goes with them).
	$(GO) run ./cmd/manifests -img $(IMG) -pe-img $(PE_IMG) | $(KUBECTL) delete --ignore-not-found -f -

$(CONTROLLER_GEN):
	GOBIN=$(BIN) $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
