// Error handling shared by the C++ shims (src/bert/packed_linear.cpp,
// src/train/fused_optim.cpp, src/device/upload.cpp): C++ exceptions must not
// cross into Rust, so each entry point runs its body through `guarded`, which
// returns 0, or 1 with the exception's message (without C++ backtrace) in
// `err`.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstddef>
#include <cstring>
#include <exception>

namespace hpcml {

inline void set_error(char* err, size_t len, const char* what) {
  if (err == nullptr || len == 0) return;
  std::strncpy(err, what, len - 1);
  err[len - 1] = '\0';
}

template <typename Body>
int guarded(char* err, size_t err_len, Body body) {
  try {
    body();
    return 0;
  } catch (const c10::Error& e) {
    set_error(err, err_len, e.what_without_backtrace());
  } catch (const std::exception& e) {
    set_error(err, err_len, e.what());
  }
  return 1;
}

// Runs `make`, which returns a new tensor, into `*out` (see `guarded`).
template <typename Make>
int new_tensor(at::Tensor** out, char* err, size_t err_len, Make make) {
  return guarded(err, err_len, [&] { *out = new at::Tensor(make()); });
}

}  // namespace hpcml
