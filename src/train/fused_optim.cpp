// Multi-tensor optimizer steps: libtorch's `_fused_adam_` and `_fused_sgd_`
// (what torch.optim.Adam(fused=True) and SGD(fused=True) call), which tch
// does not wrap. On a GPU they update every parameter in a handful of kernel
// launches, where one tensor at a time costs about ten launches per
// parameter: for BERT that is over a thousand launches a step, and the step
// waits on the host issuing them.
//
// Every function reports a C++ exception as a message in `err`
// (src/shim.h).

#include <ATen/core/Tensor.h>
#include <ATen/ops/_fused_adam.h>
#include <ATen/ops/_fused_sgd.h>

#include <vector>

#include "../shim.h"

namespace {

std::vector<at::Tensor> list(const at::Tensor* const* ts, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(*ts[i]);
  return out;
}

}  // namespace

extern "C" {

// torch.optim.Adam's update (L2 `weight_decay` added to the gradient, no
// amsgrad) of `n` parameters in place, with their gradients, first and second
// moments, and `steps` (float tensors holding the step number t, already
// counted, on the parameters' device). `lr` is not bias-corrected: the kernel
// does that from `steps`. 0 on success.
int hpcml_fused_adam(const at::Tensor* const* params, const at::Tensor* const* grads, const at::Tensor* const* m,
                     const at::Tensor* const* v, const at::Tensor* const* steps, size_t n, double lr, double beta1,
                     double beta2, double weight_decay, double eps, char* err, size_t err_len) {
  return hpcml::guarded(err, err_len, [&] {
    at::_fused_adam_(list(params, n), list(grads, n), list(m, n), list(v, n), {}, list(steps, n), lr, beta1, beta2,
                     weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false);
  });
}

// SGD with momentum (`buf = momentum * buf + grad + weight_decay * p;
// p -= lr * buf`) of `n` parameters in place. 0 on success.
int hpcml_fused_sgd(const at::Tensor* const* params, const at::Tensor* const* grads, const at::Tensor* const* bufs,
                    size_t n, double weight_decay, double momentum, double lr, char* err, size_t err_len) {
  return hpcml::guarded(err, err_len, [&] {
    at::_fused_sgd_(list(params, n), list(grads, n), list(bufs, n), weight_decay, momentum, lr, /*dampening=*/0.0,
                    /*nesterov=*/false, /*maximize=*/false, /*is_first_step=*/false);
  });
}

}  // extern "C"
