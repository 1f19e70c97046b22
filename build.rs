//! Links the unwinder (libgcc_eh) into the binary instead of loading
//! libgcc_s.so at every start: one shared library fewer for the loader to
//! map and relocate, and no libgcc_s constructor probing the CPU (cpuid
//! traps to the hypervisor in a VM). See docs/benchmarks.md.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.ends_with("-linux-gnu") {
        println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
    }
}
