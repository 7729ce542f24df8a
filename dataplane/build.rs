//! Links Debian's libsrtp2 (2.4 or newer) and compiles the small C probe that
//! lets the tests check our FFI struct layout against the installed header.

fn main() {
    println!("cargo:rerun-if-changed=src/srtp/layout_probe.c");
    let lib = match pkg_config::Config::new()
        .atleast_version("2.4")
        .probe("libsrtp2")
    {
        Ok(lib) => lib,
        Err(e) => panic!(
            "\n\npbxlink needs libsrtp2 2.4 or newer with its headers ({e}).\n\
             On Debian/Ubuntu: apt-get install -y --no-install-recommends libsrtp2-dev pkg-config\n\
             (./demo and ./tests/run install it for you).\n\n"
        ),
    };
    let mut probe = cc::Build::new();
    probe.file("src/srtp/layout_probe.c");
    for dir in &lib.include_paths {
        probe.include(dir);
    }
    probe.compile("pbxlink_srtp_layout_probe");
}
