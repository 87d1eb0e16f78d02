// Binaries must run with no environment set, on CPU and GPU machines alike:
// - an rpath to the libtorch we were built against (no LD_LIBRARY_PATH);
// - `libtorch` linked with --no-as-needed, so the linker keeps `libtorch_cuda`
//   (nothing references it by symbol; without it CUDA is never found at run time,
//   tch-rs issues #907 and #980).
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if std::env::var_os("CARGO_FEATURE_TORCH").is_none() {
        return;
    }
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os != "linux" {
        return;
    }
    if let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
        let lib = std::path::PathBuf::from(lib);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
        // libtorch from a PyPI wheel lives in site-packages/torch/lib: the same
        // site-packages holds the offline model and data (see src/assets.rs).
        if let Some(site) = lib.parent().and_then(|t| t.parent()) {
            println!("cargo:rustc-env=HPCML_BUILD_SITE_PACKAGES={}", site.display());
        }
    }
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch");
    compile_shims();
}

// The C++ shims (attention.cpp, packed_linear.cpp, int8_linear.cpp,
// fused_optim.cpp, upload.cpp) reach libtorch operators tch does not wrap, or
// calls it wraps only with a warning, or run kernels of their own. They are
// compiled against the headers of the libtorch torch-sys found (its `include`
// beside `lib`), with the C++ ABI torch-sys uses (1 unless LIBTORCH_CXX11_ABI
// says otherwise).
fn compile_shims() {
    const SHIMS: [&str; 5] = [
        "src/bert/attention.cpp",
        "src/bert/packed_linear.cpp",
        "src/bert/int8_linear.cpp",
        "src/train/fused_optim.cpp",
        "src/device/upload.cpp",
    ];
    for f in SHIMS.iter().chain(&["src/shim.h"]) {
        println!("cargo:rerun-if-changed={f}");
    }
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") else {
        panic!("torch-sys did not say where libtorch is (DEP_TCH_LIBTORCH_LIB)");
    };
    let include = std::path::PathBuf::from(lib).join("..").join("include");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(asmjit_names())
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        // at::parallel_for is OpenMP in libtorch's headers: without the flag
        // its loops run on one thread. The runtime is the libgomp.so.1 that
        // libtorch loads (its own, found first beside it), so the shims share
        // libtorch's thread pool.
        .flag("-fopenmp")
        .files(SHIMS)
        .compile("hpcml_shims");
    println!("cargo:rustc-link-arg=-l:libgomp.so.1");
}

// int8_linear.cpp reads fbgemm's packed weights through libtorch's
// fbgemm_utils.h, whose headers name asmjit's register types (in type aliases
// of fbgemm's code generator, which the shim never uses) but which the wheel
// does not ship. These two headers give the names and nothing else; every
// fbgemm function the shim calls is libtorch's own.
fn asmjit_names() -> std::path::PathBuf {
    let Some(out) = std::env::var_os("OUT_DIR") else {
        panic!("cargo did not set OUT_DIR");
    };
    let dir = std::path::PathBuf::from(out).join("asmjit-names");
    let headers = [
        (
            "core.h",
            "#pragma once\n#define ASMJIT_LIBRARY_MAKE_VERSION(major, minor, patch) (((major) << 16) | ((minor) << 8) | (patch))\n#define ASMJIT_LIBRARY_VERSION ASMJIT_LIBRARY_MAKE_VERSION(1, 0, 0)\n",
        ),
        ("x86.h", "#pragma once\nnamespace asmjit { namespace x86 { struct Xmm {}; struct Ymm {}; struct Zmm {}; } }\n"),
    ];
    for (name, text) in headers {
        let path = dir.join("asmjit").join(name);
        if let Err(e) = std::fs::create_dir_all(dir.join("asmjit")).and_then(|()| std::fs::write(&path, text)) {
            panic!("writing {}: {e}", path.display());
        }
    }
    dir
}
