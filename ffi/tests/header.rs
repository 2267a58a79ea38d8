//! `include/pasid.h` is what the pinned cbindgen makes of this crate, byte for byte,
//! with the result codes (`pasid_result`) written in from their tables.
//!
//! `cargo test -p pasid-ffi --test header` fails when the committed header is stale;
//! `PASID_BLESS=1 cargo test -p pasid-ffi --test header` rewrites it.

use std::path::PathBuf;

use pasid::FfiCode;
use pasid_core::ErrorCode;

/// The doc comment of `pasid_result` in the header.
const RESULT_DOC: &str = "\
What every fallible function returns: 0 (`PASID_RESULT_OK`) on success, otherwise
a code below. Codes 1..999 are the core's stable error codes (the same numbers the
wasm layer reports); codes from 1000 on come from the C layer itself.

Functions return these as `int`. A code this header does not list (from a newer
library) is still an error: `pasid_strerror` names it \"unknown error code\".";

/// What a C caller needs to know beyond a core code's doc: the C function or rule that
/// goes with it.
const C_NOTES: &[(ErrorCode, &str)] = &[
    (
        ErrorCode::BufferTooSmall,
        "Functions that fill a buffer also store the size they need in `*out_n` (see\n\
         \"Buffers\" in the header's introduction).",
    ),
    (
        ErrorCode::Draining,
        "Confirm the teardown with `pasid_complete_teardown`.",
    ),
    (
        ErrorCode::ChangeLogFull,
        "Drain it with `pasid_drain_translation_changes`.",
    ),
];

/// `text` as a doxygen comment of cbindgen's shape, indented by `indent`.
fn doc_comment(text: &str, indent: &str) -> String {
    let mut out = format!("{indent}/**\n");
    for line in text.lines() {
        match line {
            "" => out.push_str(&format!("{indent} *\n")),
            line => out.push_str(&format!("{indent} * {line}\n")),
        }
    }
    out + &format!("{indent} */\n")
}

/// A code's C name: `QuotaExceeded` is `PASID_RESULT_QUOTA_EXCEEDED`, as cbindgen's
/// `prefix_with_name` and `ScreamingSnakeCase` would spell it.
fn c_name(name: &str) -> String {
    let mut out = String::from("PASID_RESULT");
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The `pasid_result` enum, laid out as cbindgen lays out the other enums: the C
/// layer's codes and the core's, in ascending order, each with its doc comment.
fn result_enum() -> String {
    let strip = |doc: &'static str| -> String {
        let lines: Vec<&str> = doc
            .lines()
            .map(|l| l.strip_prefix(' ').unwrap_or(l))
            .collect();
        lines.join("\n")
    };
    let mut codes: Vec<(u32, &str, String)> = ErrorCode::ALL
        .iter()
        .map(|c| {
            let mut doc = strip(c.doc());
            if let Some((_, note)) = C_NOTES.iter().find(|(n, _)| n == c) {
                doc = format!("{doc}\n{note}");
            }
            (c.number(), c.name(), doc)
        })
        .chain(
            FfiCode::ALL
                .iter()
                .map(|c| (c.number(), c.name(), strip(c.doc()))),
        )
        .collect();
    codes.sort_by_key(|(number, _, _)| *number);

    let mut out = doc_comment(RESULT_DOC, "");
    out.push_str(
        "enum pasid_result\n\
         #if defined(__cplusplus) || __STDC_VERSION__ >= 202311L\n  : uint32_t\n\
         #endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L\n {\n",
    );
    for (number, name, doc) in &codes {
        out.push_str(&doc_comment(doc, "  "));
        out.push_str(&format!("  {} = {number},\n", c_name(name)));
    }
    out.push_str(
        "};\n\
         #ifndef __cplusplus\n\
         #if __STDC_VERSION__ >= 202311L\n\
         typedef enum pasid_result pasid_result;\n\
         #else\n\
         typedef uint32_t pasid_result;\n\
         #endif // __STDC_VERSION__ >= 202311L\n\
         #endif // __cplusplus",
    );
    // C cannot walk an enum: an X-macro lists every code, so a program (a test, a
    // table of trace-event names) can cover each one without a list of its own.
    out.push_str(
        "\n\n/**\n * Every `pasid_result` code, for an X-macro: `PASID_RESULT_CODES(X)` expands \
         to\n * `X(PASID_RESULT_OK) X(PASID_RESULT_INVALID_WIDTH) ...`, in ascending order.\n \
         */\n#define PASID_RESULT_CODES(X)",
    );
    for (_, name, _) in &codes {
        out.push_str(&format!(" \\\n  X({})", c_name(name)));
    }
    out
}

#[test]
fn header_is_up_to_date() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let header = crate_dir.join("../include/pasid.h");
    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("read ffi/cbindgen.toml");
    let includes = config.after_includes.take().unwrap_or_default();
    config.after_includes = Some(format!("{includes}\n\n{}", result_enum()));
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let generated = String::from_utf8(generated).expect("header is UTF-8");

    if std::env::var_os("PASID_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&header, &generated).expect("write include/pasid.h");
        return;
    }
    let committed = std::fs::read_to_string(&header).unwrap_or_default();
    if committed != generated {
        let first = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(committed.lines().count().min(generated.lines().count()));
        panic!(
            "include/pasid.h is stale (first difference at line {}).\n\
             Regenerate it with: PASID_BLESS=1 cargo test -p pasid-ffi --test header",
            first + 1
        );
    }
}

#[test]
fn c_names_are_cbindgen_spellings() {
    assert_eq!(c_name("QuotaExceeded"), "PASID_RESULT_QUOTA_EXCEEDED");
    assert_eq!(c_name("Ok"), "PASID_RESULT_OK");
    // A digit or an acronym (two capitals in a row) would need cbindgen's full rule:
    // no name has one.
    let names = ErrorCode::ALL.iter().map(|c| c.name());
    for name in names.chain(FfiCode::ALL.iter().map(|c| c.name())) {
        assert!(name.chars().all(|c| c.is_ascii_alphabetic()), "{name}");
        assert!(
            !name
                .as_bytes()
                .windows(2)
                .any(|w| w[0].is_ascii_uppercase() && w[1].is_ascii_uppercase()),
            "{name}"
        );
    }
}
