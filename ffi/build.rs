//! Gives the shared library a soname the way cargo-c does (`libpasid.so.0.1` for
//! version 0.1.x, `libpasid.so.1` for 1.x), so programs linked against it record the
//! ABI they need. scripts/install-c.sh installs the matching file names.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "android" || os.ends_with("bsd") {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_default();
        let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_default();
        let sover = if major == "0" {
            format!("{major}.{minor}")
        } else {
            major
        };
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libpasid.so.{sover}");
    }
}
