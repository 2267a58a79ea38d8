//! `include/pasid.h` is what the pinned cbindgen makes of this crate, byte for byte.
//!
//! `cargo test -p pasid-ffi --test header` fails when the committed header is stale;
//! `PASID_BLESS=1 cargo test -p pasid-ffi --test header` rewrites it.

use std::path::PathBuf;

#[test]
fn header_is_up_to_date() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let header = crate_dir.join("../include/pasid.h");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("read ffi/cbindgen.toml");
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
