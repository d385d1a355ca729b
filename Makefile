# astcti: two commands on a fresh Debian 12 machine, as root:
#   make lab    set everything up and run the lab (Asterisk + astcti + phones)
#   make test   set everything up and run the whole suite, lab included
SHELL := /bin/bash
PYTHON ?= /usr/bin/python3
VENV ?= .venv
PY := $(VENV)/bin/python
PHONES ?= auto
PBXS ?= 1
FLAVOUR ?= asterisk
PYTEST_ARGS ?=

.PHONY: help sysdeps venv lab lab-down lab-status test bench bench-deps scaling soak clean deb repo \
	requirements delivery-deps lint-delivery test-delivery

help:
	@echo "make lab [PHONES=auto|none] [FLAVOUR=asterisk|freepbx]"
	@echo "                             start Asterisk + astcti + SIPp phones (make lab-down stops them);"
	@echo "                             FLAVOUR=freepbx: FreePBX 17's dialplan, astcti's blocks in *_custom.conf"
	@echo "                             PBXS=2: a second Asterisk (agents 2XX) linked as acti_tlink_02"
	@echo "make test                    run every test, the real-Asterisk lab included"
	@echo "make bench                   measure astcti against raw ARI, write docs/benchmarks.md"
	@echo "make scaling                 push one box to its limits, simulate NATS scale-out (docs/scaling.md)"
	@echo "make deb                     build dist/astcti_<version>_<arch>.deb (dh-virtualenv) + lintian"
	@echo "make repo                    a signed apt repository of it in dist/repo (ASTCTI_REPO_KEY=fingerprint)"
	@echo "make test-delivery           .deb, Ansible roles, Vagrantfile: built, linted, installed for real"

# System packages the project needs (installed only when missing, so repeat runs are quick).
sysdeps:
	@missing=""; \
	for pair in mmdebstrap:mmdebstrap sipp:sip-tester unshare:util-linux tmux:tmux; do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	$(PYTHON) -c 'import venv, ensurepip' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.stamp: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

venv: sysdeps $(VENV)/.stamp

lab: venv
	$(PY) -m tests.lab up --phones $(PHONES) --flavour $(FLAVOUR) --pbxs $(PBXS)

lab-down:
	@if [ -x $(PY) ]; then $(PY) -m tests.lab down; else echo "no lab was running"; fi

lab-status: venv
	$(PY) -m tests.lab status

test: venv
	$(PY) -m pytest $(PYTEST_ARGS) --ignore=tests/delivery
	$(MAKE) test-delivery

# -- delivery: .deb, Ansible, Vagrant ----------------------------------------------------------
# Debian 12 packages used to build and check the delivery (installed only when missing).
DELIVERY_DEBS := dh-virtualenv debhelper python3-dev python3-venv build-essential lintian \
	ansible ansible-lint yamllint vagrant ruby apt-utils gnupg

delivery-deps: sysdeps
	@missing=""; \
	for pkg in $(DELIVERY_DEBS); do \
	  dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq $$missing >/dev/null; \
	fi

# The pinned requirements the .deb's virtualenv is built from (what pip resolves here).
requirements:
	packaging/gen-requirements.sh 2>/dev/null

deb: delivery-deps
	packaging/build-deb.sh

repo: deb
	packaging/build-repo.sh

# The linters alone (tests/delivery/test_static.py runs them too).
lint-delivery: venv delivery-deps
	$(PY) -m pytest -q tests/delivery/test_static.py

test-delivery: venv repo
	$(PY) -m pytest tests/delivery $(PYTEST_ARGS)

# valgrind: the bench counts instructions per call (callgrind); nats-server: the scale-out
# simulation (docs/scaling.md)
bench-deps: sysdeps
	@missing=""; \
	for pair in valgrind:valgrind nats-server:nats-server; do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

bench: venv bench-deps
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) -m tests.bench

# the limits of one box and the NATS scale-out simulation (figures for docs/scaling.md)
scaling: venv bench-deps
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) -m tests.perf.limits
	$(PY) -m tests.perf.scaleout

clean: lab-down
	rm -rf $(VENV) .lab build dist *.egg-info

soak: venv
	$(PY) -m tests.soak
