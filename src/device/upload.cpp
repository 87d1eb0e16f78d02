// Host-to-GPU copies that do not stall the host. A copy from ordinary
// (pageable) memory makes libtorch wait for the GPU to drain, so the host
// cannot queue the rest of a training step while the GPU works; through
// pinned memory (from libtorch's caching host allocator, which keeps a block
// until the copy reading it is done) the copy is asynchronous on the current
// stream, as PyTorch's `pin_memory().to(device, non_blocking=True)`.
// `Tensor::pin_memory(device)`, the one tch wraps, warns that its argument is
// deprecated; this calls it without one.

#include <ATen/ATen.h>

#include "../shim.h"

extern "C" {

// `t` (a CPU tensor) on CUDA device `index`, in `*out`. 0 on success.
int hpcml_upload(const at::Tensor* t, int index, at::Tensor** out, char* err, size_t err_len) {
  return hpcml::new_tensor(out, err, err_len, [&] {
    return t->pin_memory().to(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index)), /*non_blocking=*/true);
  });
}

}  // extern "C"
