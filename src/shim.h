// What the C++ shims (src/bert/attention.cpp, src/bert/packed_linear.cpp,
// src/bert/int8_linear.cpp, src/train/fused_optim.cpp, src/device/upload.cpp)
// share. C++ exceptions must not cross into Rust, so each entry point runs
// its body through `guarded`, which returns 0, or 1 with the exception's
// message (without C++ backtrace) in `err`.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>

#include <cstddef>
#include <cstring>
#include <exception>
#include <initializer_list>

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

// 1 when libtorch's operator registry holds every operator named, else 0. The
// shims reach oneDNN's and fbgemm's operators through the dispatcher, and a
// libtorch built without one of them has none of its operators.
inline int has_ops(std::initializer_list<const char*> names) {
  try {
    auto& dispatcher = c10::Dispatcher::singleton();
    for (const char* name : names) {
      if (!dispatcher.findSchema({name, ""}).has_value()) return 0;
    }
    return 1;
  } catch (...) {
    return 0;
  }
}

}  // namespace hpcml
