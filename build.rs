//! Links libsonic for the espeak-ng that piper-rs builds: with Debian's libsonic-dev
//! installed, espeak-ng's build uses it (instead of fetching sonic over the network)
//! but does not tell cargo to link it.
fn main() {
    println!("cargo:rustc-link-lib=dylib=sonic");
    // Without this, cargo reruns the script (and rebuilds kefu) after any change
    // anywhere in the package, docs and tests included.
    println!("cargo:rerun-if-changed=build.rs");
}
