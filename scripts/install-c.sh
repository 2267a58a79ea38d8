#!/usr/bin/env bash
# Builds the C library and installs it into a prefix, the way cargo-c lays it out:
#
#   scripts/install-c.sh PREFIX            static library only (what QEMU links)
#   SHARED=1 scripts/install-c.sh PREFIX   the shared library too
#
#   PREFIX/include/pasid/pasid.h
#   PREFIX/lib/libpasid.a                 static library, only pasid_* symbols global,
#                                         no debug info (KEEP_DEBUG=1 keeps it)
#   PREFIX/lib/pkgconfig/pasid.pc         Libs.private = rustc's native-static-libs,
#                                         minus -lgcc_s (see below)
#   with SHARED=1 also:
#   PREFIX/lib/libpasid.so.0.1.0          shared library (soname libpasid.so.0.1),
#   PREFIX/lib/libpasid.so.0.1 -> ...     with its two symlinks
#   PREFIX/lib/libpasid.so -> ...
#
# Environment: LIBDIR (default PREFIX/lib), PROFILE (release | debug, default
# release), CARGO (default cargo), DESTDIR (staged installs, as in make), SHARED=1,
# KEEP_DEBUG=1.
#
# Why the shared library is opt-in: pkg-config has one Libs line for both kinds of
# link, so with libpasid.so next to libpasid.a a plain
# `cc app.c $(pkg-config --static --libs pasid)` takes the .so (the linker prefers
# it) and the program then needs it at run time. Installing the .a alone makes that
# line, `-static`, and meson's `dependency('pasid', static: true)` all link the
# static library. With SHARED=1, `-lpasid` means the .so (as with any distribution's
# -dev package) and a static link needs `-static`, meson's `static: true` (meson
# resolves -lpasid to the .a itself) or -Wl,-Bstatic around -lpasid.
#
# Why -lgcc_s is dropped from Libs.private: it is the shared unwinder, which does not
# exist for `-static` links (`cannot find -lgcc_s`). gcc and clang already link the
# unwinder themselves: libgcc_s (as needed) in a dynamic link, libgcc_eh in a static
# one, so no link needs the flag.
#
# Why this script and not cargo-c (`cargo cinstall`, the ecosystem's tool, which makes
# the header, the .pc and both libraries): it cannot do the pre-link below, and it
# installs the .a and .so side by side (the plain `pkg-config --static` trap above);
# and it is not cheap to get here: Debian's cargo-c 0.9.14 (cargo 0.66) cannot read
# this workspace's version-4 lock file, the current crates.io release (0.10.26) needs
# rustc 1.97, and building 0.10.24 from crates.io on a 2-core CI machine had not
# finished after 9 minutes (207 crates compiled) - more than the rest of the C suite.
# The layout here is cargo-c's (include/pasid/, libpasid.so.0.1 soname, pasid.pc),
# so a later switch changes nothing for consumers.
#
# About libpasid.a: a Rust staticlib carries its own copy of the Rust standard
# library with every symbol global (__rust_alloc, rust_eh_personality's DW.ref, std's
# mangled functions, compiler-builtins). Linked next to another Rust staticlib (QEMU's
# own Rust code) those can collide. So the installed archive is one pre-linked object
# (ld -r of what the pasid_* functions reach, with section groups resolved) in which
# every symbol but pasid_* is made local, and without the embedded LLVM bitcode sections (which make binutils' LLVM
# plugin abort when it reads the merged object). scripts/test-c.sh links it next to a
# second Rust staticlib to check this.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

if [ $# -ne 1 ]; then
    echo "usage: $0 PREFIX" >&2
    exit 2
fi
prefix=$1
case $prefix in /*) ;; *) prefix=$PWD/$prefix ;; esac
libdir=${LIBDIR:-$prefix/lib}
includedir=$prefix/include
profile=${PROFILE:-release}
cargo=${CARGO:-cargo}
dest=${DESTDIR:-}
shared=${SHARED:-0}
keep_debug=${KEEP_DEBUG:-0}

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
major=${version%%.*}
rest=${version#*.}
minor=${rest%%.*}
if [ "$major" = 0 ]; then sover=$major.$minor; else sover=$major; fi

if [ "$profile" = release ]; then
    "$cargo" build -p pasid-ffi --release
else
    "$cargo" build -p pasid-ffi --profile "$profile"
fi
target_dir=$("$cargo" metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
case $profile in dev | debug) out=$target_dir/debug ;; *) out=$target_dir/$profile ;; esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The system libraries a static link needs: what rustc says for a staticlib.
libs_private=$(rustc --crate-type staticlib --crate-name pasid_nsl --edition 2021 \
    --print native-static-libs -o "$work/libpasid_nsl.a" - </dev/null 2>&1 |
    sed -n 's/.*native-static-libs: //p')
[ -n "$libs_private" ] || { echo "rustc did not print native-static-libs" >&2; exit 1; }
libs_private=$(echo " $libs_private " | sed -e 's/ -lgcc_s / /g' -e 's/^ *//' -e 's/ *$//')

# binutils ar/nm load every plugin in bfd-plugins; LLVM's may abort on Rust objects.
ar=$(command -v gcc-ar || command -v ar)
# The exported API: every pasid_* function the archive defines.
nm -g --defined-only "$out/libpasid.a" 2>/dev/null |
    awk 'NF == 3 && $2 == "T" && $3 ~ /^pasid_/ { print $3 }' | sort -u >"$work/pasid.syms"
[ -s "$work/pasid.syms" ] || { echo "no pasid_* symbols in $out/libpasid.a" >&2; exit 1; }

# Weak references of std (to glibc functions it probes for) must stay weak: a relocatable
# link with --gc-sections loses that binding, so it is put back.
readelf -sW "$out/libpasid.a" 2>/dev/null |
    awk '$7 == "UND" && $5 == "WEAK" && $8 != "" { print $8 }' | sort -u >"$work/weak.syms"
ld -r --gc-sections --force-group-allocation $(sed 's/^/-u /' "$work/pasid.syms") \
    --whole-archive "$out/libpasid.a" --no-whole-archive -o "$work/pasid-all.o"
# Debug info is mostly the standard library's (about 7 MB of the 9.3 MB archive) and
# would land in every unstripped binary that links us.
strip_debug=--strip-debug
[ "$keep_debug" = 1 ] && strip_debug=
objcopy --remove-section=.llvmbc --remove-section=.llvmcmd $strip_debug \
    --keep-global-symbols="$work/pasid.syms" --weaken-symbols="$work/weak.syms" \
    "$work/pasid-all.o" "$work/pasid.o"
"$ar" crs "$work/libpasid.a" "$work/pasid.o"

install -d "$dest$libdir/pkgconfig" "$dest$includedir/pasid"
install -m 644 include/pasid.h "$dest$includedir/pasid/pasid.h"
install -m 644 "$work/libpasid.a" "$dest$libdir/libpasid.a"
rm -f "$dest$libdir/libpasid.so" "$dest$libdir/libpasid.so.$sover" "$dest$libdir/libpasid.so.$version"
if [ "$shared" = 1 ]; then
    install -m 755 "$out/libpasid.so" "$dest$libdir/libpasid.so.$version"
    [ "$keep_debug" = 1 ] || strip --strip-debug "$dest$libdir/libpasid.so.$version"
    ln -sf "libpasid.so.$version" "$dest$libdir/libpasid.so.$sover"
    ln -sf "libpasid.so.$sover" "$dest$libdir/libpasid.so"
fi
sed -e "s|@PREFIX@|$prefix|" -e "s|@LIBDIR@|$libdir|" -e "s|@INCLUDEDIR@|$includedir|" \
    -e "s|@VERSION@|$version|" -e "s|@LIBS_PRIVATE@|$libs_private|" \
    include/pasid.pc.in >"$dest$libdir/pkgconfig/pasid.pc"

kinds=static
[ "$shared" = 1 ] && kinds="static + shared"
echo "installed pasid $version ($profile, $kinds) into $dest$prefix: libpasid.a $(wc -c <"$dest$libdir/libpasid.a") bytes"
