#!/usr/bin/env bash
# Runs every fenced code block of README.md, extracted at test time, so the README
# cannot drift from the code:
#
#   scripts/test-readme.sh        every block (scripts/test-c.sh runs it this way)
#   scripts/test-readme.sh js     only the blocks of the languages given (e.g. for
#                                 scripts/test-web.sh, once it has built web-demo/pkg)
#
# By the block's language:
#   c     a whole program: compiled with QEMU's warning set and -Werror against the
#         installed static library, run, then compiled and run again under ASan+UBSan.
#   sh    run with bash -euo pipefail in a scratch directory that holds the README's
#         C files (see `file`) and a `scripts` link to this repository's scripts.
#   rust  run as doctests: ffi/src/lib.rs includes README.md as the doc of a
#         cfg(doctest) module, so `cargo test -p pasid-ffi --doc` compiles and runs them.
#   js    run with node from web-demo/ (so `./pkg` is web-demo/pkg) when web-demo/pkg
#         is built (scripts/test-web.sh builds it); otherwise skipped, saying so. Then
#         run as a module script of a page served from web-demo/ in headless Chromium
#         (scripts/readme-browser.mjs), which must log what it logged under node.
# Any other language, or a fence without one, fails: every block must be runnable.
#
# Directives: an HTML comment on the line right before the opening fence, invisible on
# the rendered page:
#   <!-- readme-test: skip REASON -->      not run; the reason is printed
#   <!-- readme-test: file NAME -->        (c) also saved as NAME for later sh blocks
#   <!-- readme-test: prefix /usr/local --> (sh) that path means a fresh temporary
#         prefix: replaced in the block, and PKG_CONFIG_PATH / LD_LIBRARY_PATH point
#         into it as they would for /usr/local
#
# Fences may be ``` or ~~~, indented (inside a list item) or not.
#
# Environment: PASID_PREFIX (an install from scripts/install-c.sh, for the C blocks;
# made here if unset), CC, VALGRIND=1 (C blocks run under valgrind too, as
# scripts/harden.sh valgrind does), README_FILE (another Markdown file to check;
# its Rust blocks are not run: the doctests are README.md's). The last line is
# "N passed, M failed, K skipped".
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

cc=${CC:-gcc}
readme=${README_FILE:-README.md}
qemu_cflags="-std=gnu11 -Wall -Wextra -Werror -Wundef -Wwrite-strings -Wmissing-prototypes
 -Wstrict-prototypes -Wredundant-decls -Wold-style-declaration -Wold-style-definition
 -Wtype-limits -Wformat-security -Winit-self -Wignored-qualifiers -Wempty-body
 -Wnested-externs -Wendif-labels -Wimplicit-fallthrough=2 -Wshadow=local -Wvla"
asan="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; rm -f "$repo"/web-demo/.readme-block-*.[mc]js' EXIT
work=$tmp/work
mkdir -p "$work"
ln -s "$repo/scripts" "$work/scripts"
passed=0
failed=0
skipped=0
pass() { passed=$((passed + 1)); printf 'ok   %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL %s\n' "$*"; }
skip() { skipped=$((skipped + 1)); printf 'skip %s\n' "$*"; }
# run LOG COMMAND...: output to LOG, shown on failure.
run() {
    local log=$1
    shift
    "$@" >"$log" 2>&1 || { sed 's/^/    /' "$log" | tail -n 40; return 1; }
}

prefix=${PASID_PREFIX:-}
# A prefix is needed for C and sh blocks only.
if [ -z "$prefix" ] && { [ $# -eq 0 ] || [[ " $* " == *" c "* ]] || [[ " $* " == *" sh "* ]]; }; then
    prefix=$tmp/prefix
    scripts/install-c.sh "$prefix" >"$tmp/install.log" 2>&1 || {
        cat "$tmp/install.log"
        echo "install-c.sh failed"
        exit 1
    }
fi

# Extract: block N goes to $tmp/block.N, and one line "N LANG LINE DIRECTIVE..." to
# $tmp/index.
awk -v dir="$tmp" '
    # A fence: ``` or ~~~, maybe indented (inside a list); its content loses that indent.
    !infence && /^[ \t]*(```|~~~)/ {
        match($0, /^[ \t]*/); indent = RLENGTH
        fence = substr($0, indent + 1, 3)
        lang = substr($0, indent + 4); gsub(/[ \t]/, "", lang)
        n++; infence = 1; start = NR
        file = dir "/block." n; printf "" > file
        d = prev; sub(/^[ \t]*/, "", d)
        if (d !~ /^<!-- readme-test: .* -->$/) d = ""
        sub(/^<!-- readme-test: /, "", d); sub(/ -->$/, "", d)
        print n, (lang == "" ? "-" : lang), start, d > (dir "/index")
        next
    }
    infence && index($0, fence) && $0 ~ /^[ \t]*(```|~~~)[ \t]*$/ {
        infence = 0; close(file); prev = ""; next
    }
    infence {
        line = $0
        for (i = 0; i < indent && substr(line, 1, 1) ~ /[ \t]/; i++) line = substr(line, 2)
        print line > file; next
    }
    { prev = $0 }
    END { if (infence) { print "README.md: unclosed fence at line " start > "/dev/stderr"; exit 1 } }
' "$readme" || exit 1
[ -s "$tmp/index" ] || { echo "README.md has no code blocks?"; exit 1; }

only=" $* "
rust_blocks=""
while read -r n lang line directive; do
    where="${readme##*/}:$line ($lang)"
    src=$tmp/block.$n
    # A named C file is there for later sh blocks even when C blocks are not run.
    case $lang:$directive in c:file*) cp "$src" "$work/${directive#file }" ;; esac
    if [ "$only" != "  " ] && [[ $only != *" $lang "* ]]; then
        continue
    fi
    case $directive in
        skip*)
            skip "$where: ${directive#skip }"
            continue
            ;;
    esac
    case $lang in
        c)
            name=block$n.c
            case $directive in file*) name=${directive#file } ;; esac
            cp "$src" "$work/$name"
            if ! grep -q 'int main(' "$src"; then
                fail "$where: not a whole program (no main): copy-pasted, it would not build"
                continue
            fi
            # shellcheck disable=SC2086
            if run "$tmp/c$n.log" "$cc" $qemu_cflags -I"$prefix/include/pasid" "$work/$name" \
                -L"$prefix/lib" -lpasid $(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --static --libs-only-l pasid | sed 's/-lpasid//') \
                -o "$tmp/c$n" &&
                run "$tmp/c$n.run" "$tmp/c$n" &&
                run "$tmp/c$n-asan.log" "$cc" $qemu_cflags $asan -I"$prefix/include/pasid" "$work/$name" \
                    -L"$prefix/lib" -lpasid $(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --static --libs-only-l pasid | sed 's/-lpasid//') \
                    -o "$tmp/c$n-asan" &&
                run "$tmp/c$n-asan.run" env ASAN_OPTIONS=detect_leaks=1 "$tmp/c$n-asan" &&
                { [ "${VALGRIND:-0}" != 1 ] || run "$tmp/c$n-vg.run" valgrind --error-exitcode=1 \
                    --leak-check=full --errors-for-leak-kinds=all "$tmp/c$n"; }; then
                pass "$where $name: builds with QEMU's warnings, runs plain and under ASan+UBSan${VALGRIND:+ and valgrind}"
            else
                fail "$where $name"
            fi
            ;;
        sh)
            script=$tmp/block$n.sh
            fake=""
            case $directive in prefix*) fake=${directive#prefix } ;; esac
            if [ -n "$fake" ]; then
                sub=$tmp/prefix$n
                sed "s|$fake|$sub|g" "$src" >"$script"
                env_add=(PKG_CONFIG_PATH="$sub/lib/pkgconfig" LD_LIBRARY_PATH="$sub/lib")
            else
                cp "$src" "$script"
                env_add=()
            fi
            if (cd "$work" && run "$tmp/sh$n.log" env "${env_add[@]}" bash -euo pipefail "$script"); then
                pass "$where: ran${fake:+ with $fake a temporary prefix}: $(tail -n 1 "$tmp/sh$n.log")"
            else
                fail "$where"
            fi
            ;;
        rust | rust,no_run)
            rust_blocks="$rust_blocks $line"
            ;;
        js)
            if [ ! -d web-demo/pkg ]; then
                skip "$where: web-demo/pkg is not built (scripts/test-web.sh builds it)"
                continue
            fi
            # An ES module (import, top-level await) unless it only uses require().
            ext=mjs
            if grep -q 'require(' "$src" && ! grep -qE '^[[:space:]]*import[[:space:]]' "$src"; then
                ext=cjs
            fi
            cp "$src" "web-demo/.readme-block-$n.$ext"
            if (cd web-demo && run "$tmp/js$n.log" node ".readme-block-$n.$ext"); then
                pass "$where: ran under node $(node --version) from web-demo/"
            else
                fail "$where"
                continue
            fi
            # The same block as a page's module script, in headless Chromium: it must
            # run there too and log exactly what it logged under Node.
            if [ "$ext" != mjs ]; then
                skip "$where: a CommonJS block does not run in a page"
            elif run "$tmp/js$n-browser.log" node scripts/readme-browser.mjs "web-demo/.readme-block-$n.$ext" &&
                run "$tmp/js$n-diff.log" diff -u "$tmp/js$n.log" "$tmp/js$n-browser.log"; then
                pass "$where: ran in headless Chromium as a page's module script, same output as under node"
            else
                fail "$where: in headless Chromium (scripts/readme-browser.mjs; scripts/setup.sh web installs it)"
            fi
            ;;
        *)
            fail "$where: no runner for language '$lang' (use c, sh, rust or js, or a skip directive)"
            ;;
    esac
done <"$tmp/index"

if [ -n "$rust_blocks" ] && [ "$readme" != README.md ]; then
    skip "${readme##*/}:${rust_blocks# } (rust): only README.md's Rust blocks are doctests"
elif [ -n "$rust_blocks" ]; then
    where="${readme##*/}:${rust_blocks# } (rust)"
    if run "$tmp/rust.log" cargo test -p pasid-ffi --doc --quiet readme; then
        pass "$where: doctests: $(grep -E '^test result' "$tmp/rust.log" | tail -n 1)"
    else
        fail "$where (cargo test -p pasid-ffi --doc readme)"
    fi
fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
