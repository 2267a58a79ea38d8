#!/usr/bin/env bash
# Hardening checks: what the library does with hostile input, beyond `cargo test`.
#
#   scripts/harden.sh                 everything: fuzz, miri, valgrind
#   scripts/harden.sh fuzz miri       only some parts
#   FUZZ_SECONDS=20 scripts/harden.sh CI-sized (about 10 minutes on 2 cores)
#
# fuzz      builds the cargo-fuzz targets (nightly, libFuzzer, ASan) and runs each for
#           FUZZ_SECONDS (default 60): host_ops (host operations and VCMD values
#           against the reference model), import_guest (migration blobs), ffi_calls
#           (the C ABI), bitmap (the id allocator against a BTreeSet), broker_decode
#           (the broker's frame and message decoder). Seeds:
#           fuzz/corpus/<target> (committed; fuzz/seeds regenerates import_guest's);
#           what a run finds is kept in fuzz/target/corpus/<target> for the next run;
#           crashes go to fuzz/artifacts/<target> (reproduce: cargo +nightly fuzz run
#           <target> FILE).
# miri      runs the core's tests, and the C layer's unit and ABI tests, under Miri (undefined behaviour, leaks), property
#           tests at PROPTEST_CASES=4 (model.rs: 2 under cfg(miri); remap.rs's model test
#           reads it too since 2026-12-02, where its fixed 64 cases took ten minutes), minus the tests
#           listed in MIRI_SKIP below, which only repeat natively-tested logic at
#           sizes Miri would take many minutes over. MIRI_SCOPE=quick (the default
#           when FUZZ_SECONDS <= 30) also leaves out model.rs and migrate.rs: about 4
#           minutes instead of 7.
# valgrind  builds every C test file (ffi/tests/c/*.c), the vIOMMU example and the
#           README's C blocks as scripts/test-c.sh does (static libpasid.a from
#           scripts/install-c.sh, found with pkg-config) and runs each under
#           valgrind: any error or leak fails.
#
# The hostile-guest and out-of-memory tests (core/tests/hostile.rs, core/tests/oom.rs)
# are plain tests and run with `cargo test`. Installs what it needs (setup.sh fuzz).
# The last line is "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."

fuzz_seconds=${FUZZ_SECONDS:-60}
# quick: a CI-sized Miri run (the default when FUZZ_SECONDS <= 30); all: every test.
if [ "$fuzz_seconds" -le 30 ]; then miri_scope=${MIRI_SCOPE:-quick}; else miri_scope=${MIRI_SCOPE:-all}; fi
targets="host_ops import_guest ffi_calls bitmap broker_decode"
passed=0
failed=0
pass() { passed=$((passed + 1)); printf 'ok   %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL %s\n' "$*"; }
step() { printf '\n=== %s\n' "$*"; }

# Tests Miri skips (substring filters of test names), each with why: they repeat
# logic the native run checks, at sizes where Miri (~1000x slower) takes many minutes.
# None of their code is reached only by them.
MIRI_SKIP=(
    # bitmap: fills 2^20- and 2^19-id bitmaps one id at a time.
    fills_in_order_and_reports_full
    # bitmap: model check on ranges up to 262,200 ids against a linear-scan model.
    behaves_like_a_btreeset
    # bitmap: claims all 2^20 ids one at a time.
    first_free_from_crosses_words_and_levels
    # hwtable: walks 5,000 gPASIDs through pre-provisioned tables; property test of
    # walk against translate on full-size guests.
    pre_provisioned_tables_need_no_directory_change_later
    walk_agrees_with_translate
    # migrate: round trip of a guest holding all 4,095 gPASIDs.
    an_empty_guest_and_a_big_one_migrate
    # oom: every allocation of a whole import with devices failing in turn, each on a
    # fresh host clone (natively a second; Miri many minutes). The decode-and-check
    # part of it still runs under Miri (import_guest_with_devices_while_decoding...).
    import_with_devices_fails_cleanly_at_every_allocation
    # vcmd: a property test fixed at 64 cases (ignores PROPTEST_CASES); hostile.rs
    # covers arbitrary commands against bystanders under Miri.
    arbitrary_commands_never_touch_another_guest
)

fuzz() {
    step "fuzz: build"
    if ! cargo +nightly fuzz build >/tmp/harden-fuzz-build.log 2>&1; then
        tail -n 40 /tmp/harden-fuzz-build.log
        fail "cargo fuzz build"
        return
    fi
    pass "cargo fuzz build"
    for t in $targets; do
        step "fuzz: $t for ${fuzz_seconds}s"
        mkdir -p "fuzz/target/corpus/$t"
        local log=fuzz/target/$t.log
        if cargo +nightly fuzz run "$t" "fuzz/target/corpus/$t" "fuzz/corpus/$t" -- \
            -max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 \
            -print_final_stats=1 >"$log" 2>&1; then
            pass "fuzz $t: $(grep -E '^Done [0-9]+ runs' "$log" | tail -n1)"
        else
            grep -A30 -E 'panicked|ERROR|Failing input' "$log" | head -n 60
            fail "fuzz $t (log: $log)"
        fi
    done
}

miri() {
    step "miri: pasid-core tests"
    local skip=()
    for s in "${MIRI_SKIP[@]}"; do skip+=(--skip "$s"); done
    local scope=()
    if [ "$miri_scope" = quick ]; then
        # The lib's unit tests and the integration tests but model.rs
        # and migrate.rs, whose code paths the others reach too (hostile.rs and oom.rs
        # run VCMD, export, decoding and import under Miri); they run natively.
        scope=(--lib --test host --test hostile --test hwtable --test oom --test vcmd)
    fi
    local log=/tmp/harden-miri.log
    MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation}" PROPTEST_CASES=4 \
        cargo +nightly miri test -p pasid-core "${scope[@]}" -- "${skip[@]}" >"$log" 2>&1
    local rc=$?
    grep -E '^test result|^error|FAILED|Undefined Behavior' "$log"
    if [ "$rc" -eq 0 ]; then
        pass "miri: $(grep -c '^test result: ok' "$log") test binaries clean"
    else
        tail -n 60 "$log"
        fail "miri (log: $log)"
    fi

    # The C layer is where the unsafe code is: its unit tests and the ABI called from
    # Rust (handles, buffers, the panic boundary), about 15 s under Miri.
    step "miri: pasid-ffi tests"
    log=/tmp/harden-miri-ffi.log
    MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation}" PROPTEST_CASES=4 \
        cargo +nightly miri test -p pasid-ffi --lib --test abi >"$log" 2>&1
    rc=$?
    grep -E '^test result|^error|FAILED|Undefined Behavior' "$log"
    if [ "$rc" -eq 0 ]; then
        pass "miri: pasid-ffi lib and ABI tests clean"
    else
        tail -n 60 "$log"
        fail "miri ffi (log: $log)"
    fi
}

valgrind_c() {
    step "valgrind: C tests"
    local tmp src t
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064
    [ "${KEEP:-0}" = 1 ] && echo "work dir: $tmp" || trap "rm -rf '$tmp'" RETURN
    if ! scripts/install-c.sh "$tmp/prefix" >"$tmp/install.log" 2>&1; then
        tail -n 30 "$tmp/install.log"
        fail "install-c.sh"
        return
    fi
    export PKG_CONFIG_PATH=$tmp/prefix/lib/pkgconfig
    # The static link of scripts/test-c.sh: the default install has only libpasid.a.
    # test_broker.c starts a real broker process.
    cargo build -q -p pasid-broker --bin pasid-broker
    PASID_BROKER_BIN="$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/pasid-broker"
    export PASID_BROKER_BIN
    for src in ffi/tests/c/*.c; do
        t=$(basename "$src" .c)
        # shellcheck disable=SC2046
        if ! ${CC:-gcc} -std=gnu11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -pedantic -g \
            $(pkg-config --cflags pasid) "$src" $(pkg-config --static --libs pasid) -o "$tmp/$t" \
            >"$tmp/build.log" 2>&1; then
            cat "$tmp/build.log"
            fail "build $t"
            continue
        fi
        if valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=all \
            --show-leak-kinds=all "$tmp/$t" >"$tmp/vg.log" 2>&1; then
            pass "valgrind $t: $(grep -E 'ERROR SUMMARY' "$tmp/vg.log" | sed 's/^==[0-9]*== //'); $(grep -E 'passed|PASSED' "$tmp/vg.log" | tail -n1)"
        else
            tail -n 60 "$tmp/vg.log"
            fail "valgrind $t"
        fi
    done
    # The vIOMMU example and the README's C blocks, as scripts/test-c.sh builds them.
    # shellcheck disable=SC2046
    if ${CC:-gcc} -std=gnu11 -Wall -Wextra -Werror -g $(pkg-config --cflags pasid) \
        examples/c/viommu.c $(pkg-config --static --libs pasid) -o "$tmp/viommu" \
        >"$tmp/build.log" 2>&1 &&
        valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=all \
            "$tmp/viommu" >"$tmp/vg.log" 2>&1; then
        pass "valgrind examples/c/viommu.c: $(grep -E 'ERROR SUMMARY' "$tmp/vg.log" | sed 's/^==[0-9]*== //')"
    else
        tail -n 60 "$tmp/build.log" "$tmp/vg.log"
        fail "valgrind examples/c/viommu.c"
    fi
    if VALGRIND=1 PASID_PREFIX=$tmp/prefix scripts/test-readme.sh c >"$tmp/readme.log" 2>&1; then
        pass "valgrind README.md C blocks: $(tail -n 1 "$tmp/readme.log")"
    else
        cat "$tmp/readme.log"
        fail "valgrind README.md C blocks"
    fi
}

scripts/setup.sh fuzz
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(fuzz miri valgrind)
for p in "${parts[@]}"; do
    case $p in
        fuzz) fuzz ;;
        miri) miri ;;
        valgrind) valgrind_c ;;
        *) echo "unknown part: $p (fuzz, miri, valgrind)" >&2; exit 2 ;;
    esac
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
