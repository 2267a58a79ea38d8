#!/usr/bin/env bash
# Tests the C face of pasid the way a C project consumes it:
#
#   scripts/test-c.sh
#
# 1. installs lib, header and pasid.pc into a temporary prefix (scripts/install-c.sh)
#    and finds them with pkg-config from there on;
# 2. compiles pasid.h alone as C99, C11, C++11 and C++17 with -Wall -Wextra -Werror
#    -pedantic;
# 3. checks that the C tests (ffi/tests/c/*.c) call every function the header declares;
# 4. builds ffi/tests/c/test_pasid.c against the installed header and static library
#    and runs it, once plain and once under AddressSanitizer + UBSan; runs it once more
#    against the shared library;
# 5. checks the exported symbols: only pasid_* from libpasid.a and libpasid.so;
# 6. links libpasid.a into one program with a second Rust staticlib (as QEMU's own
#    Rust code would be) and runs it;
# 7. builds and runs the vIOMMU example (examples/c/viommu.c).
#
# Exits non-zero on any failure; the last line is "N passed, M failed".
# Environment: PROFILE (release | debug, passed to install-c.sh), CC, CXX, KEEP=1
# (keep the temporary directory).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

cc=${CC:-gcc}
cxx=${CXX:-g++}
tmp=$(mktemp -d)
if [ "${KEEP:-0}" = 1 ]; then echo "work dir: $tmp"; else trap 'rm -rf "$tmp"' EXIT; fi
prefix=$tmp/prefix
passed=0
failed=0

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
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}

echo "=== install into $prefix"
if ! scripts/install-c.sh "$prefix" >"$tmp/install.log" 2>&1; then
    tail -n 40 "$tmp/install.log"
    fail "install-c.sh"
    finish
fi
pass "install-c.sh"
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
libdir=$(pkg-config --variable=libdir pasid)
cflags=$(pkg-config --cflags pasid)
# Static: libpasid.a by name (the .so sits next to it), then Libs.private.
static_libs="$(pkg-config --libs-only-L pasid) -Wl,-Bstatic -lpasid -Wl,-Bdynamic $(pkg-config --static --libs-only-l pasid | sed 's/-lpasid//')"
warn="-Wall -Wextra -Werror -pedantic"
header=$prefix/include/pasid/pasid.h

echo "=== header"
step "pkg-config finds pasid $(pkg-config --modversion pasid)" \
    test "$(pkg-config --modversion pasid)" = "$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
step "installed header is include/pasid.h" cmp "$header" include/pasid.h
cat >"$tmp/hdr.c" <<'EOF'
#include <pasid.h>
#include <pasid.h> /* the include guard holds */
int main(void) {
    pasid_layout l = {20, 1, 4096, 4096, 1u << 19};
    return pasid_layout_check(&l) == PASID_RESULT_OK ? 0 : (int)PASID_RESULT_PANIC;
}
EOF
for std in c99 c11 c17; do
    step "header compiles as $std $warn" \
        "$cc" -std=$std $warn $cflags -c "$tmp/hdr.c" -o "$tmp/hdr-$std.o"
done
cp "$tmp/hdr.c" "$tmp/hdr.cc"
for std in c++11 c++17; do
    step "header compiles as $std $warn" \
        "$cxx" -std=$std $warn $cflags -c "$tmp/hdr.cc" -o "$tmp/hdr-$std.o"
done
step "C++ program links and runs (extern \"C\")" \
    sh -c "'$cxx' -std=c++17 $warn $cflags '$tmp/hdr.cc' $static_libs -o '$tmp/hdr-cxx' && '$tmp/hdr-cxx'"

functions=$(grep -oE '\bpasid_[a-z0-9_]+\(' "$header" | tr -d '(' | sort -u)
missing=""
for f in $functions; do
    grep -q "\b$f(" ffi/tests/c/*.c || missing="$missing $f"
done
step "the C tests call all $(echo "$functions" | wc -l) functions of pasid.h" test -z "$missing"
[ -z "$missing" ] || echo "    not called:$missing"

echo "=== C tests"
tests_src=ffi/tests/c/test_pasid.c
tcflags="-std=c11 -D_POSIX_C_SOURCE=200809L $warn -g"
step "build tests (static)" sh -c "'$cc' $tcflags $cflags $tests_src $static_libs -o '$tmp/t-static'"
step "run tests (static)" "$tmp/t-static"
sed 's/^/    /' "$tmp/log.$((passed + failed - 1))" | tail -n 1
step "build tests (static, ASan+UBSan)" \
    sh -c "'$cc' $tcflags -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all $cflags $tests_src $static_libs -o '$tmp/t-asan'"
step "run tests (static, ASan+UBSan)" \
    env ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 "$tmp/t-asan"
sed 's/^/    /' "$tmp/log.$((passed + failed - 1))" | tail -n 1
step "build tests (shared)" \
    sh -c "'$cc' $tcflags $cflags $tests_src $(pkg-config --libs pasid) -lpthread -Wl,-rpath,'$libdir' -o '$tmp/t-shared'"
step "run tests (shared)" "$tmp/t-shared"
step "tests use libpasid.so.0.x" sh -c "ldd '$tmp/t-shared' | grep -q 'libpasid.so'"
step "build change-stream tests (static, ASan+UBSan)" \
    sh -c "'$cc' $tcflags -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all $cflags ffi/tests/c/test_changes.c $static_libs -o '$tmp/t-changes'"
step "run change-stream tests (static, ASan+UBSan)" \
    env ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 "$tmp/t-changes"
sed 's/^/    /' "$tmp/log.$((passed + failed - 1))" | tail -n 1

echo "=== symbols"
nm -g --defined-only "$libdir/libpasid.a" 2>/dev/null | awk 'NF == 3 { print $3 }' | sort -u >"$tmp/a.syms"
nm -D --defined-only "$libdir/libpasid.so" | awk 'NF == 3 { print $3 }' | sort -u >"$tmp/so.syms"
echo "$functions" >"$tmp/h.syms"
step "libpasid.a exports exactly the header's functions ($(wc -l <"$tmp/a.syms") symbols)" \
    cmp "$tmp/a.syms" "$tmp/h.syms"
step "libpasid.so exports exactly the header's functions ($(wc -l <"$tmp/so.syms") symbols)" \
    cmp "$tmp/so.syms" "$tmp/h.syms"
step "libpasid.so has soname libpasid.so.0.x" \
    sh -c "readelf -d '$libdir/libpasid.so' | grep -q 'SONAME.*libpasid.so.0'"

echo "=== next to a second Rust staticlib"
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
    pasid_layout l = {20, 1, 4096, 4096, 1u << 19};
    pasid_host *h = NULL;
    int rc = pasid_host_new(&l, PASID_PLATFORM_P2, &h);
    pasid_host_free(h);
    printf("%d %llu\n", rc, (unsigned long long)other_rust_sum(10));
    return rc == 0 && other_rust_sum(10) == 45 ? 0 : 1;
}
EOF
step "build a second Rust staticlib" \
    rustc --edition 2021 --crate-type staticlib -O "$tmp/other.rs" -o "$tmp/libother.a"
step "link libpasid.a (whole archive) with it, and run" sh -c "
    '$cc' $warn $cflags '$tmp/two.c' $(pkg-config --libs-only-L pasid) -Wl,--whole-archive -Wl,-Bstatic -lpasid -Wl,-Bdynamic -Wl,--no-whole-archive '$tmp/libother.a' $(pkg-config --static --libs-only-l pasid | sed 's/-lpasid//') -o '$tmp/two-a' && '$tmp/two-a'"
step "link it before libpasid.a, and run" sh -c "
    '$cc' $warn $cflags '$tmp/two.c' '$tmp/libother.a' $static_libs -o '$tmp/two-b' && '$tmp/two-b'"

echo "=== example"
step "build examples/c/viommu.c (pkg-config, static)" \
    sh -c "'$cc' -std=c11 $warn $cflags examples/c/viommu.c $static_libs -o '$tmp/viommu'"
step "run the vIOMMU example" "$tmp/viommu"
sed 's/^/    /' "$tmp/log.$((passed + failed - 1))"

cd "$root"
finish
