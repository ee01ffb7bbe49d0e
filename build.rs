//! Links libsonic for the espeak-ng that piper-rs builds: with Debian's libsonic-dev
//! installed, espeak-ng's build uses it (instead of fetching sonic over the network)
//! but does not tell cargo to link it.
fn main() {
    println!("cargo:rustc-link-lib=dylib=sonic");
}
