//! Calling the C++ shims (src/bert/attention.cpp, src/bert/packed_linear.cpp,
//! src/bert/int8_linear.cpp, src/train/fused_optim.cpp,
//! src/device/upload.cpp): each entry point returns 0, or 1 with the C++
//! exception's message in an `err` buffer (src/shim.h); these turn that into
//! a `Result`.

use std::ffi::{c_char, c_int, CStr};

use anyhow::{bail, Result};
use tch::Tensor;
use torch_sys::C_tensor;

/// Runs one call that writes nothing but `err`; `what` starts the error.
pub(crate) fn call(what: &str, f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<()> {
    let mut err = [0 as c_char; 512];
    if f(err.as_mut_ptr(), err.len()) != 0 {
        bail!("{what}: {}", message(&err));
    }
    Ok(())
}

/// Runs one call that writes a new tensor into its `out` argument.
pub(crate) fn new_tensor(
    what: &str,
    f: impl FnOnce(*mut *mut C_tensor, *mut c_char, usize) -> c_int,
) -> Result<Tensor> {
    let mut out: *mut C_tensor = std::ptr::null_mut();
    let mut err = [0 as c_char; 512];
    if f(&mut out, err.as_mut_ptr(), err.len()) != 0 || out.is_null() {
        bail!("{what}: {}", message(&err));
    }
    // SAFETY: on success `out` is a new tensor whose ownership passes to us.
    Ok(unsafe { Tensor::from_ptr(out) })
}

fn message(err: &[c_char]) -> String {
    // SAFETY: `err` was zeroed and the shims write at most len - 1 bytes, so
    // it holds a NUL-terminated string.
    unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned()
}
