#!/usr/bin/env bash
# Tests the C face of pasid the way C projects consume it:
#
#   scripts/test-c.sh
#
# 1. installs header, lib and pasid.pc into two temporary prefixes with
#    scripts/install-c.sh: the default (static library only) and SHARED=1 (both), and
#    finds them with pkg-config;
# 2. compiles pasid.h alone as C99, C11, C17, C++11 and C++17 with -Wall -Wextra
#    -Werror -pedantic, and as gnu11 with QEMU's warning set; checks that every
#    function returning a result is PASID_MUST_USE and that ignoring one fails -Werror;
# 3. checks that the C tests (ffi/tests/c/*.c and the helpers they share) call every
#    function the header declares;
# 4. builds every ffi/tests/c/*.c (one program per area) against the installed static
#    library and runs it, plain and under AddressSanitizer + UBSan, and once more
#    against the shared one;
# 5. links every way a C project links, and runs the result: plain
#    `pkg-config --static`, `-static`, meson's dependency('pasid', static: true)
#    (examples/c/meson.build, against both prefixes), shared, -Wl,-Bstatic, and next
#    to a second Rust staticlib built by another toolchain (nightly when installed),
#    in both orders;
# 6. checks the exported symbols (only pasid_* from libpasid.a and libpasid.so) and
#    that libpasid.a carries no debug info;
# 7. runs every code block of README.md (scripts/test-readme.sh);
# 8. builds and runs the vIOMMU example (examples/c/viommu.c) with QEMU's warnings,
#    plain and under ASan+UBSan, in-process and on leases of a real broker (there also
#    under valgrind).
#
# Exits non-zero on any failure; the last line is "N passed, M failed".
# Environment: PROFILE (release | debug, passed to install-c.sh), CC, CXX, KEEP=1
# (keep the temporary directory).
set -uo pipefail
cd "$(dirname "$0")/.."

cc=${CC:-gcc}
cxx=${CXX:-g++}
tmp=$(mktemp -d)
if [ "${KEEP:-0}" = 1 ]; then echo "work dir: $tmp"; else trap 'rm -rf "$tmp"' EXIT; fi
prefix=$tmp/prefix
prefix_so=$tmp/prefix-so
passed=0
failed=0

# QEMU's warning set (its meson.build), with -Werror: what the README's C blocks and
# the example are built with. scripts/test-readme.sh has the same list.
QEMU_CFLAGS="-std=gnu11 -Wall -Wextra -Werror -Wundef -Wwrite-strings -Wmissing-prototypes
 -Wstrict-prototypes -Wredundant-decls -Wold-style-declaration -Wold-style-definition
 -Wtype-limits -Wformat-security -Winit-self -Wignored-qualifiers -Wempty-body
 -Wnested-externs -Wendif-labels -Wimplicit-fallthrough=2 -Wshadow=local -Wvla"
QEMU_CFLAGS=$(echo $QEMU_CFLAGS)

pass() { passed=$((passed + 1)); printf 'ok   %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL %s\n' "$*"; }
# step NAME COMMAND...: runs a command, output to a log shown on failure.
step() {
    local name=$1 log
    shift
    log=$tmp/log.$((passed + failed))
    if "$@" >"$log" 2>&1; then
        pass "$name"
    else
        fail "$name"
        sed 's/^/    /' "$log" | tail -n 60
    fi
}
# The log of the step just run.
last_log() { echo "$tmp/log.$((passed + failed - 1))"; }
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}

echo "=== install into $prefix (static) and $prefix_so (SHARED=1)"
if ! scripts/install-c.sh "$prefix" >"$tmp/install.log" 2>&1 ||
    ! SHARED=1 scripts/install-c.sh "$prefix_so" >>"$tmp/install.log" 2>&1; then
    tail -n 40 "$tmp/install.log"
    fail "install-c.sh"
    finish
fi
pass "install-c.sh ($(grep -o 'libpasid.a [0-9]* bytes' "$tmp/install.log" | head -n1))"
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
libdir=$(pkg-config --variable=libdir pasid)
libdir_so=$prefix_so/lib
cflags=$(pkg-config --cflags pasid)
# The static link, as plain as it gets: the default prefix has no libpasid.so.
static_libs=$(pkg-config --static --libs pasid)
shared_libs="$(PKG_CONFIG_PATH=$libdir_so/pkgconfig pkg-config --libs pasid) -Wl,-rpath,$libdir_so"
warn="-Wall -Wextra -Werror -pedantic"
header=$prefix/include/pasid/pasid.h

echo "=== header"
step "pkg-config finds pasid $(pkg-config --modversion pasid)" \
    test "$(pkg-config --modversion pasid)" = "$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
step "installed header is include/pasid.h" cmp "$header" include/pasid.h
step "Libs.private has no -lgcc_s (no such library in a -static link)" \
    sh -c "! pkg-config --static --libs pasid | grep -q -- -lgcc_s"
cat >"$tmp/hdr.c" <<'EOF'
#include <pasid.h>
#include <pasid.h> /* the include guard holds */
int main(void) {
    pasid_layout l = {sizeof(pasid_layout), 20, 1, 4096, 4096, 1u << 19};
    return pasid_layout_check(&l) == PASID_RESULT_OK ? 0 : (int)PASID_RESULT_PANIC;
}
EOF
for std in c99 c11 c17; do
    step "header compiles as $std $warn" \
        "$cc" -std=$std $warn $cflags -c "$tmp/hdr.c" -o "$tmp/hdr-$std.o"
done
step "header compiles with QEMU's warnings" \
    "$cc" $QEMU_CFLAGS $cflags -c "$tmp/hdr.c" -o "$tmp/hdr-qemu.o"
cp "$tmp/hdr.c" "$tmp/hdr.cc"
for std in c++11 c++17; do
    step "header compiles as $std $warn" \
        "$cxx" -std=$std $warn $cflags -c "$tmp/hdr.cc" -o "$tmp/hdr-$std.o"
done
step "C++ program links and runs (extern \"C\")" \
    sh -c "'$cxx' -std=c++17 $warn $cflags '$tmp/hdr.cc' $static_libs -o '$tmp/hdr-cxx' && '$tmp/hdr-cxx'"

# warn_unused_result on every int function but the two that only report.
unmarked=$(awk '/^int pasid_[a-z0-9_]+\(/ && prev != "PASID_MUST_USE" { print }
    { prev = $0 }' "$header" | grep -vE '^int (pasid_last_error_code|pasid_last_error_message)\(' || true)
step "every function returning a result is PASID_MUST_USE" test -z "$unmarked"
[ -z "$unmarked" ] || echo "$unmarked" | sed 's/^/    not marked: /'
cat >"$tmp/unused.c" <<'EOF'
#include <pasid.h>
int main(void) {
    pasid_layout_check(NULL); /* result ignored: must not compile with -Werror */
    return 0;
}
EOF
step "ignoring a result fails to compile (-Werror=unused-result)" \
    sh -c "! '$cc' -std=gnu11 -Wall -Werror $cflags -c '$tmp/unused.c' -o '$tmp/unused.o'"

# One program per file, one area each; the headers beside them are their shared
# harness (check.h) and fixtures (fixtures.h).
c_tests=$(ls ffi/tests/c/*.c)
functions=$(grep -oE '\bpasid_[a-z0-9_]+\(' "$header" | tr -d '(' | sort -u)
missing=""
for f in $functions; do
    grep -q "\b$f(" $c_tests ffi/tests/c/*.h || missing="$missing $f"
done
step "the C tests call all $(echo "$functions" | wc -l) functions of pasid.h" test -z "$missing"
[ -z "$missing" ] || echo "    not called:$missing"

echo "=== C tests"
# test_broker.c starts a real broker process: build it, and say where it is.
if cargo build -q -p pasid-broker --bin pasid-broker 2>"$tmp/broker-build.log"; then
    PASID_BROKER_BIN="$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/pasid-broker"
    export PASID_BROKER_BIN
else
    tail -n 20 "$tmp/broker-build.log"
fi
tcflags="-std=gnu11 -D_POSIX_C_SOURCE=200809L $warn -g"
asan="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
for src in $c_tests; do
    t=$(basename "$src" .c)
    step "build $t (static)" sh -c "'$cc' $tcflags $cflags $src $static_libs -o '$tmp/$t-static'"
    step "run $t (static)" "$tmp/$t-static"
    sed 's/^/    /' "$(last_log)" | tail -n 1
    step "build $t (static, ASan+UBSan)" \
        sh -c "'$cc' $tcflags $asan $cflags $src $static_libs -o '$tmp/$t-asan'"
    step "run $t (static, ASan+UBSan)" \
        env ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 "$tmp/$t-asan"
    sed 's/^/    /' "$(last_log)" | tail -n 1
    step "build $t (shared)" sh -c "'$cc' $tcflags $cflags $src $shared_libs -o '$tmp/$t-shared'"
    step "run $t (shared, libpasid.so.0.x)" \
        sh -c "'$tmp/$t-shared' && ldd '$tmp/$t-shared' | grep -q 'libpasid.so.0'"
done

echo "=== link variants (each program is built and run)"
cat >"$tmp/app.c" <<'EOF'
#include <pasid.h>
#include <stdio.h>
int main(void) {
    pasid_layout l = {.size = sizeof(l), .width = 20, .local_start = 1, .local_end = 4096,
                      .shared_start = 4096, .shared_end = 1u << 19};
    pasid_host *h = NULL;
    int rc = pasid_host_new(&l, PASID_PLATFORM_P2, &h);
    pasid_host_free(h);
    printf("pasid %s: %s\n", pasid_version(), pasid_strerror(rc));
    return rc;
}
EOF
step "static: cc app.c \$(pkg-config --static --cflags --libs pasid)" sh -c "
    '$cc' $QEMU_CFLAGS '$tmp/app.c' $(pkg-config --static --cflags --libs pasid) -o '$tmp/app-static' &&
    '$tmp/app-static' && ! ldd '$tmp/app-static' | grep -q libpasid"
step "fully static: cc -static app.c \$(pkg-config --static --cflags --libs pasid)" sh -c "
    '$cc' -static $QEMU_CFLAGS '$tmp/app.c' $(pkg-config --static --cflags --libs pasid) -o '$tmp/app-full' &&
    '$tmp/app-full' && ! readelf -l '$tmp/app-full' | grep -q INTERP"
step "shared: cc app.c \$(pkg-config --cflags --libs pasid) (SHARED=1 prefix)" sh -c "
    '$cc' $QEMU_CFLAGS '$tmp/app.c' $cflags $shared_libs -o '$tmp/app-shared' &&
    '$tmp/app-shared' && ldd '$tmp/app-shared' | grep -q 'libpasid.so.0'"
step "static from the SHARED=1 prefix: -Wl,-Bstatic -lpasid -Wl,-Bdynamic" sh -c "
    '$cc' $QEMU_CFLAGS '$tmp/app.c' $cflags -L'$libdir_so' -Wl,-Bstatic -lpasid -Wl,-Bdynamic \
        $(pkg-config --static --libs-only-l pasid | sed 's/-lpasid//') -o '$tmp/app-bstatic' &&
    '$tmp/app-bstatic' && ! ldd '$tmp/app-bstatic' | grep -q libpasid"
if command -v meson >/dev/null && command -v ninja >/dev/null; then
    for p in "$prefix" "$prefix_so"; do
        b=$tmp/meson-$(basename "$p")
        step "meson: dependency('pasid', static: true) from $(basename "$p"): build, run, no .so" sh -c "
            PKG_CONFIG_PATH='$p/lib/pkgconfig' meson setup '$b' examples/c &&
            ninja -C '$b' && '$b/viommu' >/dev/null && ! ldd '$b/viommu' | grep libpasid"
    done
else
    fail "meson: meson and ninja are not installed (scripts/setup.sh c)"
fi

cat >"$tmp/other.rs" <<'EOF'
#[no_mangle]
pub extern "C" fn other_rust_sum(n: u32) -> u64 {
    let v: Vec<u64> = (0..u64::from(n)).collect();
    std::panic::catch_unwind(|| v.iter().sum()).unwrap_or(0)
}
EOF
cat >"$tmp/two.c" <<'EOF'
#include <pasid.h>
#include <stdint.h>
#include <stdio.h>
uint64_t other_rust_sum(uint32_t n);
int main(void) {
    pasid_layout l = {.size = sizeof(l), .width = 20, .local_start = 1, .local_end = 4096,
                      .shared_start = 4096, .shared_end = 1u << 19};
    pasid_host *h = NULL;
    int rc = pasid_host_new(&l, PASID_PLATFORM_P2, &h);
    pasid_host_free(h);
    printf("%d %llu\n", rc, (unsigned long long)other_rust_sum(10));
    return rc == 0 && other_rust_sum(10) == 45 ? 0 : 1;
}
EOF
# Another toolchain than ours, as QEMU's Rust code may be built with: nightly if
# installed (scripts/setup.sh fuzz), else the default one.
other_rustc="rustc +nightly"
$other_rustc --version >/dev/null 2>&1 || other_rustc=rustc
step "build a second Rust staticlib ($($other_rustc --version | cut -d' ' -f1-2))" \
    $other_rustc --edition 2021 --crate-type staticlib -O "$tmp/other.rs" -o "$tmp/libother.a"
step "link libpasid.a (whole archive) before it, and run" sh -c "
    '$cc' $warn $cflags '$tmp/two.c' -L'$libdir' -Wl,--whole-archive -lpasid -Wl,--no-whole-archive \
        '$tmp/libother.a' $static_libs -o '$tmp/two-a' && '$tmp/two-a'"
step "link it before libpasid.a, and run" sh -c "
    '$cc' $warn $cflags '$tmp/two.c' '$tmp/libother.a' $static_libs -o '$tmp/two-b' && '$tmp/two-b'"

echo "=== symbols"
nm -g --defined-only "$libdir/libpasid.a" 2>/dev/null | awk 'NF == 3 { print $3 }' | sort -u >"$tmp/a.syms"
nm -D --defined-only "$libdir_so/libpasid.so" | awk 'NF == 3 { print $3 }' | sort -u >"$tmp/so.syms"
echo "$functions" >"$tmp/h.syms"
step "libpasid.a exports exactly the header's functions ($(wc -l <"$tmp/a.syms") symbols)" \
    cmp "$tmp/a.syms" "$tmp/h.syms"
step "libpasid.so exports exactly the header's functions ($(wc -l <"$tmp/so.syms") symbols)" \
    cmp "$tmp/so.syms" "$tmp/h.syms"
step "libpasid.so has soname libpasid.so.0.x" \
    sh -c "readelf -d '$libdir_so/libpasid.so' | grep -q 'SONAME.*libpasid.so.0'"
step "libpasid.a has no debug info ($(wc -c <"$libdir/libpasid.a") bytes; KEEP_DEBUG=1 keeps it)" \
    sh -c "! readelf -S '$libdir/libpasid.a' | grep -q '\.debug_info'"
# The README gives the sizes: they must stay true (within 15%), so a change that makes
# the library much bigger or smaller updates the README, and debug info cannot come
# back unnoticed.
readme_mb() { sed -n "s/.*\`$1\` is \([0-9.]*\) MB.*/\1/p" README.md | head -n1; }
for lib in "$libdir/libpasid.a" "$libdir_so/libpasid.so"; do
    name=$(basename "$lib")
    mb=$(readme_mb "$name")
    bytes=$(wc -c <"$(readlink -f "$lib")")
    step "$name is $bytes bytes, as README.md says (${mb:-no size given} MB)" python3 -c '
import sys
size, said = int(sys.argv[1]), float(sys.argv[2] or 0) * 1e6
sys.exit(not said or abs(size - said) > 0.15 * said)' "$bytes" "$mb"
done

echo "=== README.md code blocks"
step "every code block of README.md (scripts/test-readme.sh)" \
    env PASID_PREFIX="$prefix" PASID_PREFIX_SO="$prefix_so" CC="$cc" scripts/test-readme.sh
sed 's/^/    /' "$(last_log)"

echo "=== example"
step "build examples/c/viommu.c (QEMU's warnings, pkg-config --static)" \
    sh -c "'$cc' $QEMU_CFLAGS $cflags examples/c/viommu.c $static_libs -o '$tmp/viommu'"
step "run the vIOMMU example" "$tmp/viommu"
sed 's/^/    /' "$(last_log)"
step "build examples/c/viommu.c (ASan+UBSan)" \
    sh -c "'$cc' $QEMU_CFLAGS $asan $cflags examples/c/viommu.c $static_libs -o '$tmp/viommu-asan'"
step "run the vIOMMU example (ASan+UBSan)" \
    env ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 "$tmp/viommu-asan"
# Once more with its host PASIDs leased from a real broker (x-pasid-broker), as a
# QEMU on a machine with several VMMs runs; and refusing to start without it.
if [ -n "${PASID_BROKER_BIN:-}" ]; then
    bdir=$tmp/broker
    mkdir -p "$bdir"
    printf '[layout]\nwidth = 20\nlocal = [1, 4096]\nshared = [4096, 524288]\n' >"$bdir/broker.toml"
    "$PASID_BROKER_BIN" --socket "$bdir/broker.sock" --state "$bdir/state.db" \
        --config "$bdir/broker.toml" >"$bdir/broker.log" 2>&1 &
    broker_pid=$!
    for _ in $(seq 150); do [ -S "$bdir/broker.sock" ] && break; sleep 0.1; done
    step "run the vIOMMU example on a broker's leases (PASID_BROKER_SOCKET), plain and ASan+UBSan" sh -c "
        PASID_BROKER_SOCKET='$bdir/broker.sock' '$tmp/viommu' >'$bdir/out' &&
        grep -q 'leased from the broker' '$bdir/out' &&
        PASID_BROKER_SOCKET='$bdir/broker.sock' ASAN_OPTIONS=detect_leaks=1 '$tmp/viommu-asan' >/dev/null"
    # The plain binary on the broker's leases once more under valgrind, with the flags of
    # scripts/harden.sh's valgrind runs: any error, or a leak of any kind, fails it.
    if command -v valgrind >/dev/null; then
        step "run the vIOMMU example on a broker's leases under valgrind" sh -c "
            PASID_BROKER_SOCKET='$bdir/broker.sock' valgrind --error-exitcode=1 --leak-check=full \
                --errors-for-leak-kinds=all '$tmp/viommu' >'$bdir/out-vg' &&
            grep -q 'leased from the broker' '$bdir/out-vg'"
        grep -E 'ERROR SUMMARY' "$(last_log)" | sed 's/^==[0-9]*== /    /'
    else
        fail "vIOMMU example on a broker under valgrind: valgrind is not installed (scripts/setup.sh c)"
    fi
    kill "$broker_pid"
    wait "$broker_pid" 2>/dev/null
    step "the vIOMMU example refuses to start when its broker is gone" \
        sh -c "! PASID_BROKER_SOCKET='$bdir/broker.sock' '$tmp/viommu' >'$bdir/out-gone' 2>&1 &&
            grep -q 'no PASID host at broker' '$bdir/out-gone'"
else
    fail "vIOMMU example on a broker: PASID_BROKER_BIN is not set (the broker did not build)"
fi

finish
